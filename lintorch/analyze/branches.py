"""Which branches of ``if``/``try`` statements a node sits in.

Syntax-only helpers for rules that must not pair two calls that never run in
the same pass (``if flag: scheduler.step() else: optimizer.step()``).
"""

from typing import Dict, List, Tuple

import libcst as cst

from lintorch.index import child_nodes


def branch_paths(root: cst.CSTNode, targets) -> Dict[int, Tuple[Tuple[int, int], ...]]:
    """For each target node under ``root``: the branches it sits in, as
    (id of the ``if``/``try``, branch number) pairs, outermost first."""
    wanted = {id(t) for t in targets}
    found: Dict[int, Tuple[Tuple[int, int], ...]] = {}
    stack: List[Tuple[cst.CSTNode, Tuple[Tuple[int, int], ...]]] = [(root, ())]
    while stack and len(found) < len(wanted):
        node, path = stack.pop()
        if id(node) in wanted:
            found[id(node)] = path
        if isinstance(node, cst.If):
            stack.append((node.test, path))
            stack.append((node.body, path + ((id(node), 0),)))
            if node.orelse is not None:
                stack.append((node.orelse, path + ((id(node), 1),)))
            continue
        if isinstance(node, cst.Try):
            stack.append((node.body, path + ((id(node), 0),)))
            for i, handler in enumerate(node.handlers):
                stack.append((handler, path + ((id(node), i + 1),)))
            for extra in (node.orelse, node.finalbody):
                if extra is not None:
                    stack.append((extra, path))
            continue
        stack.extend((child, path) for child in child_nodes(node))
    return found


def exclusive_branches(root: cst.CSTNode, nodes) -> bool:
    """Whether any two of ``nodes`` (under ``root``) are in different
    branches of the same ``if``/``try``, so they never both run in one pass."""
    paths = branch_paths(root, nodes)
    if len(paths) < len({id(n) for n in nodes}):
        return True  # not all found: be safe
    items = list(paths.values())
    for i, a in enumerate(items):
        branches_a = dict(a)
        for b in items[i + 1:]:
            for key, branch in b:
                if key in branches_a and branches_a[key] != branch:
                    return True
    return False


def enclosing_if_tests(root: cst.CSTNode, target: cst.CSTNode) -> List[cst.BaseExpression]:
    """The tests of the ``if`` statements under ``root`` that enclose ``target``."""
    stack: List[Tuple[cst.CSTNode, Tuple[cst.BaseExpression, ...]]] = [(root, ())]
    while stack:
        node, tests = stack.pop()
        if node is target:
            return list(tests)
        if isinstance(node, cst.If):
            stack.append((node.body, tests + (node.test,)))
            if node.orelse is not None:
                stack.append((node.orelse, tests + (node.test,)))
            continue
        stack.extend((child, tests) for child in child_nodes(node))
    return []

