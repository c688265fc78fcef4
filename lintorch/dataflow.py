"""Intra-module value tracing over a :class:`~lintorch.index.ModuleIndex`.

The questions rules ask are of the form "what produced the value of this
expression?": ``criterion`` comes from ``nn.CrossEntropyLoss()``, ``out``
comes from ``model(x)`` and ``model`` is an ``nn.Sequential`` ending in
``nn.Softmax``. Names are followed through assignments, ``self.<attr>``
assignments in the class, and function parameters through the module's own
call sites. Everything is bounded (depth and cycle guards) and memoised per
index, so rules can ask freely.
"""

from typing import Dict, FrozenSet, Iterator, List, NamedTuple, Optional, Set, Tuple

import libcst as cst

from lintorch import torchapi as api
from lintorch.index import Binding, CallSite, ClassInfo, FunctionInfo, ModuleIndex, Scope, call_arg, int_value

MAX_DEPTH = 12


class Value(NamedTuple):
    """An expression together with where it is evaluated."""

    expr: cst.BaseExpression
    scope: Scope
    order: int


class Activation(NamedTuple):
    kind: str  # softmax | sigmoid | log_softmax
    node: cst.CSTNode  # where the activation is applied or constructed
    via: str  # human description: "torch.softmax(...)", "the last layer of nn.Sequential", ...


class Dataflow:
    def __init__(self, index: ModuleIndex):
        self.index = index
        self._callers: Optional[Dict[FunctionInfo, List[CallSite]]] = None

    # -- following names ------------------------------------------------

    def definitions(self, expr: cst.BaseExpression, scope: Scope, order: int, _depth: int = 0) -> List[Value]:
        """The expressions whose value ``expr`` may hold.

        Names and ``self.<attr>`` are followed; any other expression is its
        own definition. Unknowable values (loop targets, ``*args``) yield
        nothing, so callers treat "no definitions" as "unknown".
        """
        if _depth > MAX_DEPTH:
            return []
        if isinstance(expr, cst.Name):
            out: List[Value] = []
            for binding in self.index.lookup(expr.value, scope, order):
                out.extend(self._binding_values(binding, _depth + 1))
            return out or ([Value(expr, scope, order)] if not self.index.lookup(expr.value, scope, order) else [])
        if isinstance(expr, cst.Attribute) and isinstance(expr.value, cst.Name) and expr.value.value == "self":
            klass = self._class_of_scope(scope)
            if klass is not None:
                out = []
                for assign in self.self_attr_assigns(klass, expr.attr.value):
                    if assign.value is not None:
                        out.extend(self.definitions(assign.value, assign.scope, assign.order, _depth + 1))
                return out
        return [Value(expr, scope, order)]

    def _binding_values(self, binding: Binding, depth: int) -> List[Value]:
        if binding.kind in ("assign", "annassign", "walrus") and binding.value is not None:
            value = binding.value
            for index in binding.unpack:
                if isinstance(value, (cst.Tuple, cst.List)) and index < len(value.elements):
                    value = value.elements[index].value
                else:
                    return []
            return self.definitions(value, binding.scope, binding.order, depth)
        if binding.kind == "param":
            return self._parameter_values(binding, depth)
        if binding.kind in ("import", "def", "class"):
            return [Value(cst.Name(binding.name), binding.scope, binding.order)]
        return []

    def _parameter_values(self, binding: Binding, depth: int) -> List[Value]:
        function = binding.scope.function
        if function is None:
            return []
        out: List[Value] = []
        positional = [name for name, _ in function.positional_params()]
        param_kind = next((kind for name, _, kind in function.params if name == binding.name), "pos")
        if param_kind in ("star", "starstar"):
            return []
        position = positional.index(binding.name) if binding.name in positional else None
        for call in self.callers(function):
            arg = call_arg(call.node, position, binding.name)
            if arg is not None:
                out.extend(self.definitions(arg, call.scope, call.order, depth))
        if not out and isinstance(binding.node, cst.Param) and binding.node.default is not None:
            parent = binding.scope.parent or binding.scope
            out.extend(self.definitions(binding.node.default, parent, binding.order, depth))
        return out

    def callers(self, function: FunctionInfo) -> List[CallSite]:
        """Call sites in this module that call ``function`` by name."""
        if self._callers is None:
            self._callers = {}
            for call in self.index.calls:
                target = self.local_callee(call)
                if target is not None:
                    self._callers.setdefault(target, []).append(call)
        return self._callers.get(function, [])

    def local_callee(self, call: CallSite) -> Optional[FunctionInfo]:
        """The function of this module that ``call`` invokes, if visible."""
        func = call.node.func
        if isinstance(func, cst.Name):
            return self.index.function_named(func.value, call.scope, call.order)
        if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value == "self":
            klass = self._class_of_scope(call.scope)
            if klass is not None:
                return self.method_of(klass, func.attr.value)
        return None

    def _class_of_scope(self, scope: Scope) -> Optional[ClassInfo]:
        function = self.index.enclosing_function(scope)
        return function.klass if function is not None else None

    # -- classes ----------------------------------------------------------

    def local_bases(self, klass: ClassInfo, _seen: Optional[Set[int]] = None) -> Iterator[ClassInfo]:
        """``klass`` and its base classes defined in this module, MRO-ish."""
        seen = _seen if _seen is not None else set()
        if id(klass) in seen:
            return
        seen.add(id(klass))
        yield klass
        for base in klass.bases:
            if isinstance(base, cst.Name):
                parent = self.index.class_named(base.value, klass.scope.parent or self.index.module_scope)
                if parent is not None:
                    yield from self.local_bases(parent, seen)

    def method_of(self, klass: ClassInfo, name: str) -> Optional[FunctionInfo]:
        for cls in self.local_bases(klass):
            if name in cls.methods:
                return cls.methods[name]
        return None

    def self_attr_assigns(self, klass: ClassInfo, attr: str):
        for cls in self.local_bases(klass):
            yield from cls.self_attrs.get(attr, ())

    def is_torch_module_class(self, klass: ClassInfo) -> bool:
        for cls in self.local_bases(klass):
            for base in cls.bases:
                qualname = self.index.qualname_of(base, cls.scope.parent or self.index.module_scope)
                if qualname is not None and qualname.startswith("torch.nn."):
                    return True
        return False

    # -- what a callee is -------------------------------------------------

    def constructor(self, value: Value) -> Tuple[Optional[str], Optional[ClassInfo]]:
        """For ``Net(...)``/``nn.Linear(...)``: the torch qualname or local class."""
        expr = value.expr
        if not isinstance(expr, cst.Call):
            return None, None
        qualname = self.index.qualname_of(expr.func, value.scope, value.order)
        if qualname is not None:
            return qualname, None
        if isinstance(expr.func, cst.Name):
            return None, self.index.class_named(expr.func.value, value.scope, value.order)
        return None, None

    def instance_qualnames(self, expr: cst.BaseExpression, scope: Scope, order: int) -> Set[str]:
        """Qualified class names ``expr`` may be an instance of (``criterion``
        -> ``{"torch.nn.CrossEntropyLoss"}``). Looks through ``.to(device)``."""
        out: Set[str] = set()
        for value in self.definitions(expr, scope, order):
            value = self.strip_value_preserving(value)
            qualname, _ = self.constructor(value)
            if qualname is not None:
                out.add(qualname)
        return out

    def strip_value_preserving(self, value: Value) -> Value:
        """``x.float().to(dev)`` -> ``x`` (definitions of the receiver)."""
        for _ in range(MAX_DEPTH):
            expr = value.expr
            if (
                isinstance(expr, cst.Call)
                and isinstance(expr.func, cst.Attribute)
                and expr.func.attr.value in api.VALUE_PRESERVING_METHODS
                and self.index.qualname_of(expr.func, value.scope, value.order) is None
            ):
                inner = self.definitions(expr.func.value, value.scope, value.order)
                if len(inner) != 1:
                    return Value(expr.func.value, value.scope, value.order)
                value = inner[0]
                continue
            return value
        return value

    # -- integers ---------------------------------------------------------

    def int_values(self, expr: Optional[cst.BaseExpression], scope: Scope, order: int) -> List[int]:
        """Every integer literal ``expr`` may be; empty when unknown."""
        if expr is None:
            return []
        out = []
        for value in self.definitions(expr, scope, order):
            number = int_value(value.expr)
            if number is None:
                return []
            out.append(number)
        return out

    # -- output activations ---------------------------------------------

    def activation(self, expr: cst.BaseExpression, scope: Scope, order: int) -> Optional[Activation]:
        """The output activation applied last to the value of ``expr``.

        ``torch.softmax(x, 1)``, ``x.sigmoid()``, ``nn.Softmax(dim=1)(x)``,
        ``model(x)`` where ``model`` is an ``nn.Sequential`` ending in an
        activation, or an instance of a local module class whose ``forward``
        returns one, all through assignments and value-preserving methods.
        """
        return self._activation(expr, scope, order, set())

    def _activation(self, expr, scope, order, visiting: Set[int]) -> Optional[Activation]:
        found: Optional[Activation] = None
        values = self.definitions(expr, scope, order)
        if not values:
            return None
        for value in values:
            result = self._activation_of_value(value, visiting)
            if result is None:
                return None  # one path without an activation: not certain
            found = found or result
        return found

    def _activation_of_value(self, value: Value, visiting: Set[int]) -> Optional[Activation]:
        expr = value.expr
        if not isinstance(expr, cst.Call) or id(expr) in visiting:
            return None
        visiting = visiting | {id(expr)}
        func = expr.func
        qualname = self.index.qualname_of(func, value.scope, value.order)
        if qualname is not None:
            for kind, names in (
                ("softmax", api.SOFTMAX_FUNCS),
                ("sigmoid", api.SIGMOID_FUNCS),
                ("log_softmax", api.LOG_SOFTMAX_FUNCS),
            ):
                if qualname in names:
                    return Activation(kind, expr, f"{qualname.rsplit('.', 1)[-1]}(...)")
            return self._module_call_activation(func, value, visiting)
        if isinstance(func, cst.Attribute):
            receiver = func.value
            is_self_attr = isinstance(receiver, cst.Name) and receiver.value == "self"
            method = func.attr.value
            if not is_self_attr and method in api.ACTIVATION_METHODS:
                return Activation(api.ACTIVATION_METHODS[method], expr, f".{method}(...)")
            if method in api.VALUE_PRESERVING_METHODS and not is_self_attr:
                return self._activation(receiver, value.scope, value.order, visiting)
        return self._module_call_activation(func, value, visiting)

    def _module_call_activation(self, callee, value: Value, visiting: Set[int]) -> Optional[Activation]:
        """``callee(x)`` where callee is a module instance (or a constructor
        call, as in ``nn.Softmax(dim=1)(x)``)."""
        if isinstance(callee, cst.Call):
            return self.module_output_activation(Value(callee, value.scope, value.order), visiting)
        definitions = self.definitions(callee, value.scope, value.order)
        if not definitions:
            return None
        found = None
        for definition in definitions:
            result = self.module_output_activation(self.strip_value_preserving(definition), visiting)
            if result is None:
                return None
            found = found or result
        return found

    def module_output_activation(self, ctor: Value, visiting: Optional[Set[int]] = None) -> Optional[Activation]:
        """The activation a module built by ``ctor`` applies to its output."""
        visiting = visiting if visiting is not None else set()
        expr = ctor.expr
        if not isinstance(expr, cst.Call) or id(expr) in visiting:
            return None
        visiting = visiting | {id(expr)}
        qualname, klass = self.constructor(ctor)
        if qualname is not None:
            for kind, names in (
                ("softmax", api.SOFTMAX_MODULES),
                ("sigmoid", api.SIGMOID_MODULES),
                ("log_softmax", api.LOG_SOFTMAX_MODULES),
            ):
                if qualname in names:
                    return Activation(kind, expr, f"nn.{qualname.rsplit('.', 1)[-1]}()")
            if qualname in api.SEQUENTIAL:
                last = self._sequential_last_layer(expr)
                if last is None:
                    return None
                for definition in self.definitions(last, ctor.scope, ctor.order):
                    inner = self.module_output_activation(definition, visiting)
                    if inner is not None:
                        return Activation(inner.kind, inner.node, f"{inner.via} as the last layer of nn.Sequential")
            return None
        if klass is not None:
            return self.forward_activation(klass, visiting)
        return None

    @staticmethod
    def _sequential_last_layer(call: cst.Call) -> Optional[cst.BaseExpression]:
        positional = [a for a in call.args if a.keyword is None]
        if not positional or positional[-1].star:
            return None
        last = positional[-1].value
        # nn.Sequential(OrderedDict([(name, layer), ...]))
        if len(positional) == 1 and isinstance(last, cst.Call) and last.args:
            inner = last.args[0].value
            if isinstance(inner, (cst.List, cst.Tuple)) and inner.elements:
                pair = inner.elements[-1].value
                if isinstance(pair, cst.Tuple) and len(pair.elements) == 2:
                    return pair.elements[1].value
        return last

    def forward_activation(self, klass: ClassInfo, visiting: Set[int]) -> Optional[Activation]:
        forward = self.method_of(klass, "forward")
        if forward is None or not forward.returns:
            return None
        found = None
        for ret, order in forward.returns:
            if ret.value is None:
                return None
            result = self._activation(ret.value, forward.scope, order, visiting)
            if result is None:
                return None
            found = found or result
        if found is None:
            return None
        return Activation(found.kind, found.node, f"{found.via} returned by {klass.name}.forward")

    # -- losses -----------------------------------------------------------

    def loss_calls(self, modules: FrozenSet[str], functions: FrozenSet[str]) -> Iterator["LossCall"]:
        """Calls computing one of the given losses, in either spelling:
        ``criterion(out, y)`` with ``criterion = nn.CrossEntropyLoss()``
        (also ``self.criterion``, parameters, ``nn.CrossEntropyLoss()(out, y)``)
        or ``F.cross_entropy(out, y)``."""
        for call in self.index.calls:
            if not call.node.args:
                continue
            qualname = call.qualname
            if qualname is not None:
                if qualname in functions:
                    yield LossCall(call, qualname, call.arg(0, "input"), call.arg(1, "target"))
                continue
            func = call.node.func
            if isinstance(func, cst.Call):
                ctor_qualname, _ = self.constructor(Value(func, call.scope, call.order))
                found = {ctor_qualname} if ctor_qualname else set()
            elif isinstance(func, (cst.Name, cst.Attribute)) and call.method not in _NON_LOSS_METHODS:
                found = self.instance_qualnames(func, call.scope, call.order)
            else:
                continue
            matched = found & modules
            if matched:
                yield LossCall(call, min(matched), call.arg(0, "input"), call.arg(1, "target"))


class LossCall(NamedTuple):
    call: CallSite
    loss: str  # qualified name of the loss class or function
    input: Optional[cst.BaseExpression]
    target: Optional[cst.BaseExpression]

    @property
    def short_name(self) -> str:
        return self.loss.rsplit(".", 1)[-1]


# Method names that are never a loss module being called (``x.view(...)``).
_NON_LOSS_METHODS = frozenset({"append", "view", "reshape", "to", "item", "backward", "step", "zero_grad"})


# -- loss and model-output recognition (LT2xx) --------------------------------

_LOSS_NAME_WORDS = ("criterion", "loss_fn", "loss_func", "lossfn", "loss_function", "criteria")


def looks_like_loss_call(flow: Dataflow, call: CallSite) -> bool:
    """``criterion(out, y)``, ``nn.MSELoss()(out, y)``, ``F.mse_loss(out, y)``,
    ``self.loss_fn(out, y)``: a call computing a loss from (input, target)."""
    if len(call.node.args) < 2:
        return False
    qualname = call.qualname
    if qualname is not None:
        short = qualname.rsplit(".", 1)[-1]
        return qualname.startswith("torch.nn.functional.") and (
            short.endswith("loss") or short in _FUNCTIONAL_LOSSES
        )
    func = call.node.func
    if isinstance(func, cst.Call):
        ctor, _ = flow.constructor(Value(func, call.scope, call.order))
        return ctor is not None and ctor.startswith("torch.nn.") and ctor.endswith("Loss")
    if isinstance(func, (cst.Name, cst.Attribute)) and call.method not in _NON_LOSS_METHODS:
        qualnames = flow.instance_qualnames(func, call.scope, call.order)
        if any(q.startswith("torch.nn.") and q.endswith("Loss") for q in qualnames):
            return True
        last = (call.dotted or "").rsplit(".", 1)[-1].lower()
        return any(word in last for word in _LOSS_NAME_WORDS)
    return False


_FUNCTIONAL_LOSSES = frozenset(
    {"cross_entropy", "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div", "cosine_embedding_loss"}
)
_MODEL_NAME_WORDS = ("model", "net", "classifier", "encoder", "decoder", "generator", "discriminator")


def is_model_call(flow: Dataflow, call: CallSite) -> bool:
    """``model(x)``, ``self.net(x)``, ``model.forward(x)``: a call running a
    network (an ``nn`` module instance, a local ``nn.Module`` subclass, or a
    name that says so) rather than a function or a loss."""
    func = call.node.func
    if isinstance(func, cst.Attribute) and func.attr.value == "forward":
        func = func.value
    if not isinstance(func, (cst.Name, cst.Attribute)):
        return False
    if call.qualname is not None:
        return False
    if isinstance(func, cst.Attribute) and call.method in _NON_LOSS_METHODS:
        return False
    for value in flow.definitions(func, call.scope, call.order):
        value = flow.strip_value_preserving(value)
        qualname, klass = flow.constructor(value)
        if klass is not None and flow.is_torch_module_class(klass):
            return True
        if qualname is not None and qualname.startswith("torch.nn.") and not qualname.endswith("Loss"):
            return qualname.rsplit(".", 1)[-1][:1].isupper()
    last = (dotted_name_of(func) or "").rsplit(".", 1)[-1].lower()
    return any(word in last for word in _MODEL_NAME_WORDS) and "loss" not in last


def dotted_name_of(node):
    from lintorch.index import dotted_name

    return dotted_name(node)
