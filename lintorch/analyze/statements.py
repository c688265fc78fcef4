"""Statements: what the statements of one scope do with the calls in them.

One walk per scope, memoised and made only for the scopes a domain asks
about (nested functions and classes are not entered), records for every
call the innermost comprehension and the conditional-expression arms around
it, the plain names its statement assigns and whether its value is thrown
away or read later, and where the scope reads each name. The index does not record these:
only the evaluation-pass and mode domains need them.
"""

from typing import Dict, FrozenSet, List, NamedTuple, Optional, Set, Tuple

import libcst as cst

from lintorch.index import CallSite, LoopInfo, ModuleIndex, Scope, child_nodes, iter_nodes

COMPREHENSIONS = (cst.ListComp, cst.SetComp, cst.GeneratorExp, cst.DictComp)


class StatementFacts(NamedTuple):
    """What the statements of one scope do with its calls (see the module docstring)."""

    comprehension: Dict[int, cst.BaseComp]  # call -> innermost comprehension around it
    arms: Dict[int, Tuple[Tuple[int, int], ...]]  # call -> (IfExp, arm) pairs around it
    discarded: FrozenSet[int]  # calls whose value is thrown away (an expression statement)
    #: call -> (the plain names its statement assigns, [the position where it
    #: writes them], the (start, end) positions of the loops around it)
    assigned: Dict[int, Tuple[FrozenSet[str], List[int], Tuple[Tuple[int, int], ...]]]
    reads: Dict[str, List[int]]  # name -> positions where the scope reads it
    writes: Dict[str, List[int]]  # name -> positions of plain assignments to it

    def value_used(self, call: cst.Call) -> bool:
        """Whether the value of ``call`` can be used: not thrown away, and
        when its statement only binds plain names, one of them is read after
        it (or anywhere in a loop around it, by the next iteration)."""
        if id(call) in self.discarded:
            return False
        found = self.assigned.get(id(call))
        if found is None:
            return True
        names, box, loops = found
        position = box[0]  # where the statement writes its names: after its value
        for name in names:
            later = [w for w in self.writes.get(name, ()) if w > position]
            for read in self.reads.get(name, ()):
                if any(start <= read <= end for start, end in loops):
                    return True  # the next iteration may read it
                if read > position and not any(position < w < read for w in later):
                    return True  # read before anything assigns the name again
        return False


class Statements:
    def __init__(self, index: ModuleIndex):
        self.index = index
        self._facts: Dict[Scope, StatementFacts] = {}

    def of(self, scope: Scope) -> StatementFacts:
        """The facts of one scope: one walk in source order, memoised
        (nested functions and classes are not entered)."""
        cache = self._facts
        if scope in cache:
            return cache[scope]
        comprehension: Dict[int, cst.BaseComp] = {}
        arms: Dict[int, Tuple[Tuple[int, int], ...]] = {}
        assigned: Dict[int, Tuple[FrozenSet[str], List[int], Tuple[Tuple[int, int], ...]]] = {}
        pending_loops: Dict[int, List[int]] = {}  # loop start -> calls assigned in it, waiting for its end
        discarded: Set[int] = set()
        reads: Dict[str, List[int]] = {}
        writes: Dict[str, List[int]] = {}
        root = scope.node
        body = root.body if isinstance(root, cst.Module) else getattr(getattr(root, "body", None), "body", ())
        # (node, comprehension, IfExp arms, (names, position) of the enclosing plain assignment);
        # a None node closes the innermost open loop, a (names, box) pair marks them written.
        stack: List[tuple] = [(s, None, (), None) for s in reversed(body)]
        open_loops: List[int] = []
        position = 0
        while stack:
            node, comp, chain, targets = stack.pop()
            position += 1
            if isinstance(node, tuple):  # the assignment's value is done: its names are written now
                written, box = node
                box[0] = position
                for name in written:
                    writes.setdefault(name, []).append(position)
                continue
            if node is None:
                start = open_loops.pop()
                for key in pending_loops.pop(start, ()):
                    names, at, loops = assigned[key]
                    assigned[key] = (names, at, tuple((s, position) if s == start else (s, e) for s, e in loops))
                continue
            if isinstance(node, (cst.FunctionDef, cst.ClassDef, cst.Lambda)):
                continue
            if isinstance(node, cst.Name):
                reads.setdefault(node.value, []).append(position)
                continue
            if isinstance(node, cst.Call):
                if comp is not None:
                    comprehension[id(node)] = comp
                if chain:
                    arms[id(node)] = chain
                if targets:
                    assigned[id(node)] = (targets[0], targets[1], tuple((s, -1) for s in open_loops))
                    for start in open_loops:
                        pending_loops.setdefault(start, []).append(id(node))
            elif isinstance(node, cst.Expr) and isinstance(node.value, cst.Call):
                discarded.add(id(node.value))
            children: List[tuple] = []
            if isinstance(node, (cst.Assign, cst.AnnAssign)) and plain_targets(node) is not None:
                written, box = plain_targets(node), [position]
                if node.value is not None:
                    children.append((node.value, comp, chain, (written, box)))
                children.append(((written, box), comp, chain, None))
            elif isinstance(node, (cst.For, cst.While)):
                open_loops.append(position)
                stack.append((None, comp, chain, None))
                parts = (node.iter, node.body) if isinstance(node, cst.For) else (node.test, node.body)
                children.extend((child, comp, chain, targets) for child in parts)
                if node.orelse is not None:
                    children.append((node.orelse, comp, chain, targets))
            elif isinstance(node, cst.IfExp):
                children.append((node.test, comp, chain, targets))
                children.append((node.body, comp, chain + ((id(node), 0),), targets))
                children.append((node.orelse, comp, chain + ((id(node), 1),), targets))
            else:
                inner = node if isinstance(node, COMPREHENSIONS) else comp
                children.extend((child, inner, chain, targets) for child in child_nodes(node))
            stack.extend(reversed(children))
        result = cache[scope] = StatementFacts(comprehension, arms, frozenset(discarded), assigned, reads, writes)
        return result


def plain_targets(node) -> Optional[FrozenSet[str]]:
    """The names an assignment binds when every target is a plain name
    (``out = ...``, ``a, b = ...``); None when it stores into an attribute
    or subscript (which keeps the value)."""
    targets = [t.target for t in node.targets] if isinstance(node, cst.Assign) else [node.target]
    out: Set[str] = set()
    while targets:
        target = targets.pop()
        if isinstance(target, cst.Name):
            out.add(target.value)
        elif isinstance(target, (cst.Tuple, cst.List)):
            targets.extend(e.value for e in target.elements)
        elif isinstance(target, cst.StarredElement):
            targets.append(target.value)
        else:
            return None
    return frozenset(out)



def loops_around(call: CallSite) -> List[LoopInfo]:
    """Loops around the call in its own scope, innermost first."""
    out = []
    loop = call.loop
    while loop is not None and loop.scope is call.scope:
        out.append(loop)
        loop = loop.parent
    return out


def names_in_args(call: CallSite) -> Set[str]:
    """Names read by a call's arguments (and a method call's receiver chain root)."""
    out = {n.value for a in call.node.args for n in iter_nodes(a.value) if isinstance(n, cst.Name)}
    return out

