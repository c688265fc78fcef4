"""Containers: what a list or a ``torch.nn`` container holds, built step by step.

Models are often assembled: ``layers = []`` grown with ``append``/``extend``
/``+=`` in a loop or by a helper returning a list, then
``nn.Sequential(*layers)``; ``nn.Sequential()`` grown with ``add_module``;
``self.blocks = nn.ModuleList()`` grown in ``__init__``. These are values
facts (what was put in, in which order, and whether only on some paths);
which module each item is belongs to the models domain.
"""

from typing import List, NamedTuple, Optional

import libcst as cst

from lintorch import torchapi as api
from lintorch.analyze.values import MAX_DEPTH, Value, Values
from lintorch.index import CallSite, dotted_name

#: Container methods that add items, and those that remove or reorder them.
_ADDING_METHODS = frozenset({"append", "extend", "add_module", "register_module"})
_REMOVING_METHODS = frozenset({"insert", "pop", "remove", "clear", "reverse", "sort"})


class Item(NamedTuple):
    """An element of a list or container, in order."""

    value: Value  # the expression added (a layer's constructor call, a name)
    #: Added only on some paths (under an ``if``/``try``, or in a method
    #: other than the one that builds the container): may be absent.
    conditional: bool = False


class Containers:
    def __init__(self, values: Values):
        self.values = values
        self.index = values.index

    def container_items(self, ctor: Value) -> Optional[List[Item]]:
        """The items of the ``torch.nn`` container ``ctor`` builds
        (``nn.Sequential``, ``nn.ModuleList``, ``nn.ModuleDict``), in the
        order they run: its arguments (``nn.Sequential(a, b)``,
        ``nn.Sequential(OrderedDict([(name, layer), ...]))``,
        ``nn.Sequential(*layers)`` and ``nn.ModuleList(layers)`` over a list
        built visibly, ``nn.ModuleList([... for ...])``), then those added
        to it afterwards (``add_module``, ``append``, ``extend`` on the name
        or ``self.<attr>`` it is bound to). None when part of it is not
        visible (``*args``, ``insert``)."""
        expr = ctor.expr
        qualname, _ = self.values.constructor(ctor)
        if qualname not in api.MODULE_CONTAINERS or not isinstance(expr, cst.Call):
            return None
        items: List[Item] = []
        for arg in expr.args:
            if arg.keyword is not None:
                continue
            value = Value(arg.value, ctor.scope, ctor.order)
            if arg.star == "*":
                inner = self.items(value, ctor.order, 0)
            elif arg.star:
                return None
            elif qualname in api.SEQUENTIAL and not _is_ordered_dict(arg.value):
                inner = [Item(value)]
            else:
                inner = self.items(value, ctor.order, 0)  # ModuleList([...]), OrderedDict(...)
            if inner is None:
                return None
            items.extend(inner)
        added = self.additions(ctor, None, 0)
        if added is None:
            return None
        return items + added

    def items(self, value: Value, until: int, depth: int = 0) -> Optional[List[Item]]:
        """The items a list-like value holds, in order: a list/tuple
        literal (with ``*inner``), a comprehension's element, an
        ``OrderedDict``/dict literal's values, a name bound to one of these
        plus what is added to it before ``until``, ``a + b``, and what a
        local function returns."""
        if depth > MAX_DEPTH:
            return None
        expr = value.expr
        if isinstance(expr, (cst.List, cst.Tuple, cst.Set)):
            out: List[Item] = []
            for element in expr.elements:
                element_value = Value(element.value, value.scope, value.order)
                if isinstance(element, cst.StarredElement):
                    inner = self.items(element_value, until, depth + 1)
                    if inner is None:
                        return None
                    out.extend(inner)
                elif _is_pair(element.value):
                    out.append(Item(Value(element.value.elements[1].value, value.scope, value.order)))
                else:
                    out.append(Item(element_value))
            return out
        if isinstance(expr, (cst.ListComp, cst.GeneratorExp)):
            conditional = any(clause.ifs for clause in _for_clauses(expr.for_in))
            return [Item(Value(expr.elt, value.scope, value.order), conditional)]
        if isinstance(expr, cst.Dict):
            if not all(isinstance(e, cst.DictElement) for e in expr.elements):
                return None
            return [Item(Value(e.value, value.scope, value.order)) for e in expr.elements]
        if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.Add):
            left = self.items(Value(expr.left, value.scope, value.order), until, depth + 1)
            right = self.items(Value(expr.right, value.scope, value.order), until, depth + 1)
            return left + right if left is not None and right is not None else None
        if isinstance(expr, cst.Call):
            if _is_ordered_dict(expr) and expr.args:
                return self.items(Value(expr.args[0].value, value.scope, value.order), until, depth + 1)
            function = self.values.local_function(value)  # a helper returning a list of layers
            if function is not None and len(function.returns) == 1 and function.returns[0][0].value is not None:
                ret, order = function.returns[0]
                return self.items(Value(ret.value, function.scope, order), order + 1, depth + 1)
            return None
        if isinstance(expr, cst.Name):
            return self._name_items(expr, value, until, depth)
        if isinstance(expr, cst.Attribute):
            definitions = self.values.definitions(expr, value.scope, value.order)
            if len(definitions) == 1 and definitions[0].expr is not expr:
                return self.items(definitions[0], until, depth + 1)
        return None

    def _name_items(self, name: cst.Name, value: Value, until: int, depth: int) -> Optional[List[Item]]:
        """``layers`` bound to a list and grown (``append``, ``extend``,
        ``+=``) before ``until`` in the same scope."""
        bindings = self.index.lookup(name.value, value.scope, value.order)
        if len(bindings) != 1:
            return None
        scope = bindings[0].scope
        every = [b for b in scope.bindings.get(name.value, []) if b.order < until or scope is not value.scope]
        assigns = [b for b in every if b.kind in ("assign", "annassign")]
        if not assigns or assigns[-1].unpack or assigns[-1].value is None:
            return None
        start = assigns[-1]
        out = self.items(Value(start.value, scope, start.order), until, depth + 1)
        if out is None:
            return None
        end = until if scope is value.scope else None
        for binding in every:
            if binding.kind == "augassign" and binding.order > start.order and binding.value is not None:
                inner = self.items(Value(binding.value, scope, binding.order), until, depth + 1)
                if inner is None:
                    return None
                out = out + inner
        added = self.additions(Value(start.value, scope, start.order), end, depth + 1)
        if added is None:
            return None
        return sorted(out + added, key=lambda layer: layer.value.order) if added else out

    def additions(self, container: Value, until: Optional[int], depth: int = 0) -> Optional[List[Item]]:
        """Layers added after ``container`` is bound to a name (calls in
        the same scope) or to ``self.<attr>`` (calls in the class's
        methods): ``add_module``, ``append``, ``extend``, before ``until``
        when given. None when it is modified in a way not followed
        (``insert``, ``pop``)."""
        scope = container.scope
        receivers = [  # (what the container is called, where it may grow, the binding statement)
            (name, [scope], binding.node)
            for name, bindings in scope.bindings.items()
            for binding in bindings
            if binding.value is container.expr and not binding.unpack
        ]
        klass = self.values.enclosing_class(scope)
        for assign in self.index.attr_assigns_in(scope):
            if assign.value is container.expr and dotted_name(assign.target.value) == "self" and klass is not None:
                methods = [m.scope for cls in self.values.local_bases(klass) for m in cls.methods.values()]
                receivers.append((f"self.{assign.attr}", methods, assign.node))
        calls = [
            (call, statement)
            for receiver, scopes, statement in receivers
            for other in scopes
            for call in other.calls
            if call.method in _ADDING_METHODS | _REMOVING_METHODS
            and dotted_name(call.receiver) == receiver
            and (other is not scope or call.order > container.order)
            and (until is None or other is not scope or call.order < until)
        ]
        out: List[Item] = []
        for call, statement in sorted(calls, key=lambda pair: pair[0].order):
            if call.method in _REMOVING_METHODS:
                return None
            conditional = call.scope is not scope or self._conditional(call, statement)
            arg = call.arg(1, "module") if call.method in ("add_module", "register_module") else call.arg(0)
            if arg is None:
                return None
            value = Value(arg, call.scope, call.order)
            items = self.items(value, call.order, depth + 1) if call.method == "extend" else [Item(value)]
            if items is None:
                return None
            out.extend(Item(item.value, conditional or item.conditional) for item in items)
        return out

    def _conditional(self, call: CallSite, statement: cst.CSTNode) -> bool:
        """The call sits under an ``if``/``try``/``while`` that does not
        also enclose ``statement`` (where the container is bound)."""
        around = {id(node) for node, _ in self.values.blocks_around(statement, call.scope)}
        return any(
            isinstance(node, (cst.If, cst.Try, cst.While)) and id(node) not in around
            for node, _ in self.values.enclosing_blocks(call)
        )


def _is_ordered_dict(expr) -> bool:
    """``OrderedDict([...])``/``collections.OrderedDict({...})``/``dict(...)``."""
    return isinstance(expr, cst.Call) and (dotted_name(expr.func) or "").rsplit(".", 1)[-1] in ("OrderedDict", "dict")


def _is_pair(expr) -> bool:
    """``("name", layer)`` in an ``OrderedDict([...])``."""
    return (
        isinstance(expr, cst.Tuple)
        and len(expr.elements) == 2
        and isinstance(expr.elements[0].value, (cst.SimpleString, cst.FormattedString, cst.ConcatenatedString))
    )


def _for_clauses(clause):
    while clause is not None:
        yield clause
        clause = clause.inner_for_in
