"""Which branches of ``if``/``try`` statements a node sits in.

Syntax-only helpers for rules that must not pair two calls that never run in
the same pass (``if flag: scheduler.step() else: optimizer.step()``), and
that tell a condition fixed for a whole loop (a configuration flag) from one
that changes between iterations.
"""

from typing import Dict, List, Optional, Tuple

import libcst as cst

from lintorch.index import LoopInfo, ModuleIndex, child_nodes, iter_nodes


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


def separating_if(root: cst.CSTNode, a: cst.CSTNode, b: cst.CSTNode) -> Optional[cst.If]:
    """The ``if`` statement under ``root`` with ``a`` and ``b`` in different
    branches (``if flag: a else: b``), or None."""
    paths = branch_paths(root, [a, b])
    if id(a) not in paths or id(b) not in paths:
        return None
    branches_b = dict(paths[id(b)])
    for key, branch in paths[id(a)]:
        if key in branches_b and branches_b[key] != branch:
            for node in iter_nodes(root):
                if id(node) == key:
                    return node if isinstance(node, cst.If) else None
    return None


#: Calls in a condition that do not make it vary between iterations.
_PURE_TEST_CALLS = frozenset({"isinstance", "hasattr", "getattr", "callable", "len"})


def fixed_across(index: ModuleIndex, loop: LoopInfo, test: cst.BaseExpression) -> bool:
    """Whether the condition ``test`` has the same value in every iteration
    of ``loop``: no name in it is bound inside the loop (by the loop, an
    assignment, a nested loop) and it calls nothing but ``isinstance`` and
    the like (``if args.use_scheduler:``, ``if scheduler is not None:``)."""
    names = set()
    for node in iter_nodes(test):
        if isinstance(node, cst.Call):
            if not (isinstance(node.func, cst.Name) and node.func.value in _PURE_TEST_CALLS):
                return False
        elif isinstance(node, cst.Name):
            names.add(node.value)
    for name in names:
        for binding in loop.scope.bindings.get(name, ()):
            if index.loop_contains(loop, binding.node) or binding.node is loop.node:
                return False
    return True


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

