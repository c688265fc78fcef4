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
from lintorch.index import (
    Binding,
    CallSite,
    ClassInfo,
    FunctionInfo,
    ModuleIndex,
    Scope,
    call_arg,
    dotted_name,
    int_value,
    iter_nodes,
    number_value,
)

MAX_DEPTH = 12


class Value(NamedTuple):
    """An expression together with where it is evaluated."""

    expr: cst.BaseExpression
    scope: Scope
    order: int


class Activation(NamedTuple):
    kind: str  # softmax | sigmoid | log_softmax | tanh
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
        # Memoised per parameter, and a parameter already being resolved
        # contributes nothing: a recursive function whose call sites pass
        # its own parameters on (torch's collate()) otherwise costs
        # callers**MAX_DEPTH.
        cache = self.__dict__.setdefault("_parameter_cache", {})
        key = id(binding)
        if key in cache:
            return cache[key] or []
        cache[key] = None
        out = self._parameter_values_uncached(binding, depth)
        cache[key] = out
        return out

    def _parameter_values_uncached(self, binding: Binding, depth: int) -> List[Value]:
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
            function = self.index.function_named(func.value, call.scope, call.order)
            if function is None:
                # ``Trainer(model)`` runs ``Trainer.__init__(self, model)``
                klass = self.index.class_named(func.value, call.scope, call.order)
                if klass is not None:
                    function = self.method_of(klass, "__init__")
            return function
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
                ("tanh", api.TANH_FUNCS),
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
                ("tanh", api.TANH_MODULES),
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

    def activated_loss_inputs(
        self, modules: FrozenSet[str], functions: FrozenSet[str], kinds: FrozenSet[str]
    ) -> Iterator["ActivatedLoss"]:
        """Loss calls whose input last went through an activation of one of
        ``kinds`` (LT102/LT103/LT104: probabilities fed to a loss that wants
        logits or log-probabilities)."""
        for loss in self.loss_calls(modules, functions):
            if loss.input is None:
                continue
            activation = self.activation(loss.input, loss.call.scope, loss.call.order)
            if activation is None or activation.kind not in kinds:
                continue
            inline = any(node is activation.node for node in iter_nodes(loss.input))
            yield ActivatedLoss(loss, activation, inline)

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

    # -- modules (added for LT106, LT107, LT601, LT602) ---------------------

    def module_instance(self, expr: cst.BaseExpression, scope: Scope, order: int) -> Optional[Value]:
        """The constructor call of the module ``expr`` certainly is (every
        definition is a torch.nn layer/container, a local ``nn.Module``
        subclass or a model factory such as ``torchvision.models.resnet18()``),
        or None. Looks through ``.to(device)``, ``.cuda()``, ``.train()``..."""
        found: Optional[Value] = None
        values = self.definitions(expr, scope, order)
        if not values:
            return None
        for value in values:
            for _ in range(MAX_DEPTH):
                call = value.expr
                if (
                    isinstance(call, cst.Call)
                    and isinstance(call.func, cst.Attribute)
                    and call.func.attr.value in _MODULE_RETURNING_METHODS
                    and self.index.qualname_of(call.func, value.scope, value.order) is None
                ):
                    inner = self.definitions(call.func.value, value.scope, value.order)
                    if len(inner) != 1:
                        return None
                    value = inner[0]
                    continue
                break
            if not self.is_module_constructor(value):
                return None
            found = found or value
        return found

    def is_module_constructor(self, value: Value) -> bool:
        """``nn.Linear(...)``, ``Net(...)`` (local nn.Module subclass),
        ``torchvision.models.resnet18(...)``."""
        qualname, klass = self.constructor(value)
        if qualname is not None:
            if qualname.startswith(_MODULE_FACTORY_PREFIXES):
                return True
            head, _, last = qualname.rpartition(".")
            return (
                head in ("torch.nn", "torch.nn.parallel")
                and last[:1].isupper()
                and last not in ("Parameter", "Buffer", "UninitializedParameter", "Module")
            )
        return klass is not None and self.is_torch_module_class(klass)

    def enclosing_class(self, scope: Scope) -> Optional[ClassInfo]:
        """The class whose method (or a function nested in one) ``scope`` is."""
        return self._class_of_scope(scope)


    def batch_source(self, expr: cst.BaseExpression, scope: Scope, order: int) -> Optional[cst.CSTNode]:
        """Where ``expr`` visibly gets a batch of samples (a leading batch
        dimension) from: a loop over a ``DataLoader`` (or a ``*loader*``
        name, through ``enumerate``/``tqdm``), or a tensor factory such as
        ``torch.randn(64, 10)`` with at least two dimensions, the first > 1.
        None when that is not visible."""
        for value in self.definitions(expr, scope, order) or [Value(expr, scope, order)]:
            value = self.strip_value_preserving(value)
            node = value.expr
            if isinstance(node, cst.Name):
                for binding in self.index.lookup(node.value, value.scope, value.order):
                    if binding.kind == "for" and binding.value is not None:
                        if self._is_loader_iterable(binding.value, binding.scope, binding.order):
                            return binding.node
            elif isinstance(node, cst.Call):
                qualname = self.index.qualname_of(node.func, value.scope, value.order)
                if qualname in _BATCH_FACTORIES:
                    sizes = [a.value for a in node.args if a.keyword is None]
                    if len(sizes) == 1 and isinstance(sizes[0], (cst.Tuple, cst.List)):
                        sizes = [e.value for e in sizes[0].elements]
                    if len(sizes) >= 2:
                        first = self.int_values(sizes[0], value.scope, value.order)
                        if first and all(n > 1 for n in first):
                            return node
        return None

    def _is_loader_iterable(self, iterable: cst.BaseExpression, scope: Scope, order: int) -> bool:
        from lintorch.index import dotted_name

        for _ in range(3):
            if isinstance(iterable, cst.Call) and iterable.args:
                name = dotted_name(iterable.func) or ""
                if name in ("enumerate", "iter") or name.rsplit(".", 1)[-1] == "tqdm":
                    iterable = iterable.args[0].value
                    continue
            break
        name = dotted_name(iterable)
        if name is not None and "loader" in name.rsplit(".", 1)[-1].lower():
            return True
        for value in self.definitions(iterable, scope, order):
            qualname, _ = self.constructor(value)
            if qualname in api.TORCH_DATALOADER:
                return True
        return False


    # -- model structure (added for LT601) --------------------------------

    def sequential_layers(self, ctor: Value) -> Optional[List[Value]]:
        """The layers of ``nn.Sequential(a, b, ...)`` (also the
        ``OrderedDict([(name, layer), ...])`` spelling), each as the value
        of its constructor where visible; None when ``*args`` or unknown."""
        expr = ctor.expr
        if not isinstance(expr, cst.Call):
            return None
        positional = [a for a in expr.args if a.keyword is None]
        if any(a.star for a in positional):
            return None
        items = [a.value for a in positional]
        if len(items) == 1 and isinstance(items[0], cst.Call) and items[0].args:
            inner = items[0].args[0].value
            if isinstance(inner, (cst.List, cst.Tuple)):
                pairs = [e.value for e in inner.elements]
                if pairs and all(isinstance(p, cst.Tuple) and len(p.elements) == 2 for p in pairs):
                    items = [p.elements[1].value for p in pairs]
        out = []
        for item in items:
            values = self.definitions(item, ctor.scope, ctor.order)
            out.append(self.strip_value_preserving(values[0]) if len(values) == 1 else Value(item, ctor.scope, ctor.order))
        return out

    def weight_layer_count(self, ctor: Value, _depth: int = 0, kinds: FrozenSet[str] = api.WEIGHT_LAYERS) -> int:
        """A lower bound on the number of weight layers (``torch.nn.Linear``,
        convolutions: ``api.WEIGHT_LAYERS``) in the module built by ``ctor``:
        through ``nn.Sequential``, ``nn.ModuleList([...])`` and the
        ``self.<attr>`` layers of local module classes."""
        if _depth > 4:
            return 0
        qualname, klass = self.constructor(ctor)
        if qualname is not None:
            if qualname in kinds:
                return 1
            if qualname in api.SEQUENTIAL:
                layers = self.sequential_layers(ctor) or []
                return sum(self.weight_layer_count(layer, _depth + 1, kinds) for layer in layers)
            if qualname == "torch.nn.ModuleList" and isinstance(ctor.expr, cst.Call) and ctor.expr.args:
                items = ctor.expr.args[0].value
                if isinstance(items, (cst.List, cst.Tuple)):
                    return sum(
                        self.weight_layer_count(Value(e.value, ctor.scope, ctor.order), _depth + 1, kinds)
                        for e in items.elements
                    )
            return 0
        if klass is not None and self.is_torch_module_class(klass):
            return self.class_weight_layer_count(klass, _depth, kinds)
        return 0

    def class_weight_layer_count(self, klass: ClassInfo, _depth: int = 0, kinds: FrozenSet[str] = api.WEIGHT_LAYERS) -> int:
        total = 0
        seen: Set[str] = set()
        for cls in self.local_bases(klass):
            for attr, assigns in cls.self_attrs.items():
                if attr in seen or not assigns or assigns[-1].value is None:
                    continue
                seen.add(attr)
                assign = assigns[-1]
                values = self.definitions(assign.value, assign.scope, assign.order)
                if len(values) == 1:
                    total += self.weight_layer_count(self.strip_value_preserving(values[0]), _depth + 1, kinds)
        return total

    def final_layer_attrs(self, klass: ClassInfo) -> Optional[Set[str]]:
        """Names of the ``self.<attr>`` layers whose output reaches the value
        ``forward`` returns without passing through another layer with
        weights: the output layer, and residual projections (``x +
        self.proj(h)``). Activations, dropout and pooling modules are looked
        through. None when ``forward`` (or part of what it returns) is not
        visible."""
        forward = self.method_of(klass, "forward")
        if forward is None or not forward.returns:
            return None
        finals: Set[str] = set()
        budget = [200]
        for ret, order in forward.returns:
            if ret.value is None:
                return None
            if not self._collect_finals(ret.value, forward.scope, order, finals, set(), budget):
                return None
        return finals

    def _collect_finals(self, expr, scope: Scope, order: int, finals: Set[str], active: Set[int], budget) -> bool:
        budget[0] -= 1
        if budget[0] < 0 or id(expr) in active:
            return budget[0] >= 0
        active = active | {id(expr)}
        if isinstance(expr, (cst.Integer, cst.Float, cst.SimpleString)) or (
            isinstance(expr, cst.Name) and expr.value in ("None", "True", "False")
        ):
            return True
        if isinstance(expr, cst.Name):
            bindings = self.index.lookup(expr.value, scope, order)
            if bindings and all(b.kind == "param" for b in bindings):
                return True  # the module's input
            values = self.definitions(expr, scope, order)
            if not values or any(v.expr is expr for v in values):
                return False  # a loop variable, a global, a builtin: not visible
            return all(self._collect_finals(v.expr, v.scope, v.order, finals, active, budget) for v in values)
        if isinstance(expr, cst.BinaryOperation):
            return self._collect_finals(expr.left, scope, order, finals, active, budget) and self._collect_finals(
                expr.right, scope, order, finals, active, budget
            )
        if isinstance(expr, cst.UnaryOperation):
            return self._collect_finals(expr.expression, scope, order, finals, active, budget)
        if isinstance(expr, (cst.Tuple, cst.List)):
            return all(self._collect_finals(e.value, scope, order, finals, active, budget) for e in expr.elements)
        if isinstance(expr, cst.Subscript):
            return self._collect_finals(expr.value, scope, order, finals, active, budget)
        if isinstance(expr, cst.Attribute):
            return isinstance(expr.value, cst.Name) and expr.value.value == "self"  # a parameter or buffer
        if not isinstance(expr, cst.Call):
            return False
        func = expr.func
        args = [a.value for a in expr.args if a.keyword is None and not a.star]
        if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value == "self":
            attr = func.attr.value
            klass = self._class_of_scope(scope)
            method = self.method_of(klass, attr) if klass is not None else None
            if method is not None:
                if not method.returns:
                    return False
                return all(
                    ret.value is not None and self._collect_finals(ret.value, method.scope, o, finals, active, budget)
                    for ret, o in method.returns
                )
            layer = self.definitions(func, scope, order)
            qualname = None
            if len(layer) == 1:
                qualname, _ = self.constructor(self.strip_value_preserving(layer[0]))
            if qualname in api.PASS_THROUGH_MODULES:
                return all(self._collect_finals(a, scope, order, finals, active, budget) for a in args)
            finals.add(attr)
            return True
        qualname = self.index.qualname_of(func, scope, order)
        if qualname is not None and qualname.startswith("torch."):
            return all(self._collect_finals(a, scope, order, finals, active, budget) for a in args)
        if isinstance(func, cst.Attribute) and qualname is None:
            # x.view(...), x.mean(1), h.transpose(1, 2): a tensor method
            return self._collect_finals(func.value, scope, order, finals, active, budget)
        return False

    def enclosing_blocks(self, call: CallSite) -> Tuple[Tuple[cst.CSTNode, str], ...]:
        """The compound statements around ``call`` in its own scope,
        outermost first, each with the branch the call is in (``body`` or
        ``orelse``): ``((For, "body"), (If, "orelse"))``. Walks only the
        scope's own statements, once per scope."""
        cache = self.__dict__.setdefault("_blocks_cache", {})
        key = id(call.scope)
        if key not in cache:
            table: Dict[int, Tuple[Tuple[cst.CSTNode, str], ...]] = {}
            node = call.scope.node
            body = node.body if isinstance(node, cst.Module) else getattr(getattr(node, "body", None), "body", ())
            for statement in body:
                _record_blocks(statement, (), table)
            cache[key] = table
        return cache[key].get(id(call.node), ())


    # -- value ranges (added for LT106) -------------------------------------

    def value_range(self, expr: cst.BaseExpression, scope: Scope, order: int, _depth: int = 0) -> Optional[Tuple[float, float]]:
        """The typical range ``(low, high)`` of the values of a tensor
        expression, when the script shows where they come from: literals,
        ``torch.tensor([[...]])``, ``torch.rand`` ([0, 1]), ``torch.randn``
        (one standard deviation: [-1, 1]), ``randint``, ``linspace``,
        ``arange``, ``sin``, ``sigmoid``, ``MinMaxScaler``..., combined with
        ``+ - * /`` and integer powers, through names, indexing, value-
        preserving methods and batches of a ``DataLoader(TensorDataset(...))``.
        None when unknown (data loaded from files, division by a statistic,
        in-place changes, anything else): callers must treat None as
        "could be in any range"."""
        if _depth > MAX_DEPTH:
            return None
        depth = _depth + 1
        number = _number(expr)
        if number is not None:
            return number, number
        if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Minus):
            inner = self.value_range(expr.expression, scope, order, depth)
            return (-inner[1], -inner[0]) if inner is not None else None
        if isinstance(expr, cst.BinaryOperation):
            try:
                return self._binary_range(expr, scope, order, depth)
            except (OverflowError, ValueError):
                return None
        if isinstance(expr, cst.Subscript):
            return self.value_range(expr.value, scope, order, depth)
        if isinstance(expr, (cst.List, cst.Tuple)):
            return _literal_range(expr)
        if isinstance(expr, cst.Name) or (
            isinstance(expr, cst.Attribute) and isinstance(expr.value, cst.Name) and expr.value.value == "self"
        ):
            if isinstance(expr, cst.Name) and _mutated_in_place(self.index, expr.value):
                return None
            values = self.definitions(expr, scope, order)
            if not values and isinstance(expr, cst.Name):
                source = self._batch_item_source(expr, scope, order)
                return self.value_range(source.expr, source.scope, source.order, depth) if source else None
            if not values or any(v.expr is expr for v in values):
                return None
            out = None
            for value in values:
                found = self.value_range(value.expr, value.scope, value.order, depth)
                if found is None:
                    return None
                out = found if out is None else (min(out[0], found[0]), max(out[1], found[1]))
            return out
        if isinstance(expr, cst.Call):
            return self._call_range(expr, scope, order, depth)
        return None

    def _binary_range(self, expr: cst.BinaryOperation, scope: Scope, order: int, depth: int):
        left = self.value_range(expr.left, scope, order, depth)
        op = expr.operator
        if isinstance(op, cst.Power):
            exponent = _number(expr.right)
            if left is None or exponent is None or exponent != int(exponent) or exponent < 0:
                return None
            n = int(exponent)
            ends = (left[0] ** n, left[1] ** n)
            if n % 2 == 0 and left[0] <= 0 <= left[1]:
                return 0.0, max(ends)
            return min(ends), max(ends)
        right = self.value_range(expr.right, scope, order, depth)
        if left is None or right is None:
            return None
        if isinstance(op, cst.Add):
            return left[0] + right[0], left[1] + right[1]
        if isinstance(op, cst.Subtract):
            return left[0] - right[1], left[1] - right[0]
        if isinstance(op, cst.Multiply):
            products = [a * b for a in left for b in right]
            return min(products), max(products)
        if isinstance(op, cst.Divide) and (right[0] > 0 or right[1] < 0):
            quotients = [a / b for a in left for b in right]
            return min(quotients), max(quotients)
        return None

    def _call_range(self, call: cst.Call, scope: Scope, order: int, depth: int):
        func = call.func
        qualname = self.index.qualname_of(func, scope, order)
        args = [a.value for a in call.args if a.keyword is None and not a.star]
        if qualname is None and isinstance(func, cst.Attribute):
            method = func.attr.value
            if method in api.VALUE_PRESERVING_METHODS or method in ("numpy", "tolist"):
                return self.value_range(func.value, scope, order, depth)
            if method == "uniform_":
                low, high = _number(_kw(call, 0, "from")), _number(_kw(call, 1, "to"))
                return (0.0 if low is None else low, 1.0 if high is None else high)
            if method in ("fit_transform", "transform") and args:
                return self._scaler_range(func.value, scope, order)
            qualname = _TENSOR_METHOD_FUNCS.get(method)
            if qualname is not None:
                args = [func.value] + args
        if qualname is None:
            return None
        short = qualname.rsplit(".", 1)[-1]
        if qualname in _STANDARD_NORMAL:
            return -1.0, 1.0
        if qualname in _UNIFORM_01:
            return 0.0, 1.0
        if qualname in ("numpy.random.uniform",):
            low, high = _number(_kw(call, 0, "low")), _number(_kw(call, 1, "high"))
            return (0.0 if low is None else low, 1.0 if high is None else high)
        if qualname in ("torch.normal", "numpy.random.normal"):
            numpy = qualname.startswith("numpy")
            mean_arg, std_arg = _kw(call, 0, "loc" if numpy else "mean"), _kw(call, 1, "scale" if numpy else "std")
            mean = 0.0 if numpy and mean_arg is None else _number(mean_arg)
            std = 1.0 if numpy and std_arg is None else _number(std_arg)
            return (mean - abs(std), mean + abs(std)) if mean is not None and std is not None else None
        if qualname in ("torch.randint", "numpy.random.randint"):
            numbers = [_number(a) for a in args]
            low, high = _kw(call, None, "low"), _kw(call, None, "high")
            if low is not None or high is not None:
                bounds = (_number(low) if low is not None else 0.0, _number(high))
            elif qualname == "torch.randint":
                bounds = (numbers[0], numbers[1]) if len(numbers) >= 3 else (0.0, numbers[0] if numbers else None)
            else:
                bounds = (numbers[0], numbers[1]) if len(numbers) >= 2 else (0.0, numbers[0] if numbers else None)
            if bounds[0] is None or bounds[1] is None:
                return None
            return bounds[0], bounds[1] - 1
        if short in ("zeros", "zeros_like", "empty_like") and qualname.split(".")[0] in ("torch", "numpy"):
            return (0.0, 0.0) if short != "empty_like" else None
        if short in ("ones", "ones_like") and qualname.split(".")[0] in ("torch", "numpy"):
            return 1.0, 1.0
        if qualname in ("torch.full", "numpy.full"):
            value = _number(_kw(call, 1, "fill_value"))
            return (value, value) if value is not None else None
        if qualname in ("torch.linspace", "numpy.linspace"):
            low, high = _number(_kw(call, 0, "start")), _number(_kw(call, 1, "end" if qualname[0] == "t" else "stop"))
            return (min(low, high), max(low, high)) if low is not None and high is not None else None
        if qualname in ("torch.arange", "numpy.arange"):
            numbers = [_number(a) for a in args[:2]]
            if len(numbers) == 1 and numbers[0] is not None:
                return 0.0, numbers[0] - 1
            if len(numbers) == 2 and None not in numbers:
                return numbers[0], numbers[1] - 1
            return None
        if qualname in _TENSOR_WRAPPERS:
            return self.value_range(args[0], scope, order, depth) if args else None
        if qualname in _BOUNDED_FUNCS:
            return _BOUNDED_FUNCS[qualname]
        if qualname in ("torch.exp", "numpy.exp") and args:
            import math

            inner = self.value_range(args[0], scope, order, depth)
            return (math.exp(min(inner[0], 50)), math.exp(min(inner[1], 50))) if inner is not None else None
        if qualname in ("torch.abs", "numpy.abs") and args:
            inner = self.value_range(args[0], scope, order, depth)
            if inner is None:
                return None
            return (0.0 if inner[0] <= 0 <= inner[1] else min(abs(inner[0]), abs(inner[1]))), max(abs(inner[0]), abs(inner[1]))
        return None

    def _scaler_range(self, scaler: cst.BaseExpression, scope: Scope, order: int):
        for value in self.definitions(scaler, scope, order):
            if not isinstance(value.expr, cst.Call):
                return None
            qualname = self.index.qualname_of(value.expr.func, value.scope, value.order) or ""
            if qualname.rsplit(".", 1)[-1] != "MinMaxScaler":
                return None
            feature_range = _kw(value.expr, 0, "feature_range")
            if feature_range is None:
                return 0.0, 1.0
            return _literal_range(feature_range)
        return None

    def _batch_item_source(self, name: cst.Name, scope: Scope, order: int) -> Optional[Value]:
        """``for xb, yb in DataLoader(TensorDataset(X, y))``: ``yb`` -> ``y``."""
        bindings = self.index.lookup(name.value, scope, order)
        if len(bindings) != 1 or bindings[0].kind != "for" or bindings[0].value is None:
            return None
        binding = bindings[0]
        iterable, path = binding.value, binding.unpack
        if (
            isinstance(iterable, cst.Call)
            and isinstance(iterable.func, cst.Name)
            and iterable.func.value == "enumerate"
            and iterable.args
        ):
            if not path or path[0] != 1:
                return None
            iterable, path = iterable.args[0].value, path[1:]
        if len(path) != 1:
            return None
        for loader in self.definitions(iterable, binding.scope, binding.order):
            if self.constructor(loader)[0] not in api.TORCH_DATALOADER:
                continue
            dataset = call_arg(loader.expr, 0, "dataset")
            for data in self.definitions(dataset, loader.scope, loader.order) if dataset is not None else ():
                if self.constructor(data)[0] == "torch.utils.data.TensorDataset":
                    tensor = call_arg(data.expr, path[0])
                    if tensor is not None:
                        return Value(tensor, data.scope, data.order)
        return None


    # -- train/eval-dependent layers and data loaders (LT3xx, LT5xx) -------

    def mode_layers(self, expr: cst.BaseExpression, scope: Scope, order: int) -> Optional[bool]:
        """Whether the module ``expr`` evaluates to contains layers that act
        differently in ``train()`` and ``eval()`` mode (dropout, batch norm):
        True, False (visibly none: every layer is known) or None (unknown).
        Follows ``nn.Sequential``/``ModuleList`` contents, the layers a local
        module class assigns to ``self`` (and its local bases), functional
        dropout in its methods, and model zoos (torchvision, timm,
        transformers, ``from_pretrained``), whose models have them."""
        values = self.definitions(expr, scope, order)
        if not values:
            return None
        return _combine_layers(self._value_mode_layers(self.strip_value_preserving(v), set()) for v in values)

    def _value_mode_layers(self, value: Value, visiting: Set[int]) -> Optional[bool]:
        expr = value.expr
        if not isinstance(expr, cst.Call) or id(expr) in visiting:
            return None
        visiting = visiting | {id(expr)}
        qualname, klass = self.constructor(value)
        if qualname is not None:
            if qualname in api.MODE_DEPENDENT_LAYERS:
                return True
            if qualname in api.DROPOUT_ARGUMENT_LAYERS:
                dropout = call_arg(expr, None, "dropout")
                if dropout is None:
                    return False if not any(a.star for a in expr.args) else None
                numbers = [_number(v.expr) for v in self.definitions(dropout, value.scope, value.order)]
                if numbers and all(n is not None for n in numbers):
                    return any(n > 0 for n in numbers)
                return None
            if qualname in api.MODULE_CONTAINERS:
                return self._container_mode_layers(expr, value, visiting)
            if qualname.startswith(api.MODEL_ZOO_PREFIXES) or qualname.endswith(".from_pretrained"):
                return True
            short = qualname[len("torch.nn."):] if qualname.startswith("torch.nn.") else ""
            if short[:1].isupper() and "." not in short:
                return False  # any other torch.nn layer: Linear, Conv2d, ReLU, LayerNorm...
            return None
        func = expr.func
        if isinstance(func, cst.Attribute) and func.attr.value == "from_pretrained":
            return True
        if klass is not None:
            return self.class_mode_layers(klass, visiting)
        return None

    def _container_mode_layers(self, call: cst.Call, value: Value, visiting: Set[int]) -> Optional[bool]:
        layers: List[cst.BaseExpression] = []
        for arg in call.args:
            if arg.keyword is not None:
                continue
            if arg.star:
                return None
            inner = arg.value
            if isinstance(inner, cst.Call) and inner.args and isinstance(inner.args[0].value, (cst.List, cst.Tuple)):
                inner = inner.args[0].value  # OrderedDict([(name, layer), ...])
            if isinstance(inner, (cst.List, cst.Tuple)):
                for element in inner.elements:
                    if isinstance(element, cst.StarredElement):
                        return None
                    item = element.value
                    if isinstance(item, cst.Tuple) and len(item.elements) == 2:
                        item = item.elements[1].value
                    layers.append(item)
            elif isinstance(inner, cst.Dict):
                for element in inner.elements:
                    if not isinstance(element, cst.DictElement):
                        return None
                    layers.append(element.value)
            else:
                layers.append(inner)
        results = []
        for layer in layers:
            definitions = self.definitions(layer, value.scope, value.order)
            if not definitions:
                return None
            for definition in definitions:
                results.append(self._value_mode_layers(self.strip_value_preserving(definition), visiting))
        return _combine_layers(results)

    def class_mode_layers(self, klass: ClassInfo, visiting: Optional[Set[int]] = None) -> Optional[bool]:
        """:meth:`mode_layers` for an instance of a local class."""
        visiting = visiting if visiting is not None else set()
        if id(klass.node) in visiting:
            return None
        visiting = visiting | {id(klass.node)}
        results: List[Optional[bool]] = []
        for cls in self.local_bases(klass):
            outer = cls.scope.parent or self.index.module_scope
            for base in cls.bases:
                if isinstance(base, cst.Name) and self.index.class_named(base.value, outer) is not None:
                    continue
                qualname = self.index.qualname_of(base, outer)
                if qualname is None:
                    if dotted_name(base) in ("object", "Generic", "ABC"):
                        continue
                    results.append(None)
                elif qualname.startswith(api.MODEL_ZOO_PREFIXES):
                    results.append(True)
                elif qualname not in api.MODULE_BASES and not qualname.startswith(("abc.", "typing.")):
                    results.append(None)
            for scope in cls.scope.with_descendants():
                for call in scope.calls:
                    if call.qualname in api.DROPOUT_FUNCS or call.qualname == "torch.nn.functional.batch_norm":
                        return True
            for assigns in cls.self_attrs.values():
                for assign in assigns:
                    if assign.value is None:
                        results.append(None)
                        continue
                    for definition in self._attr_value_definitions(klass, assign) or [None]:
                        if definition is None:
                            results.append(None)
                            continue
                        definition = self.strip_value_preserving(definition)
                        if not isinstance(definition.expr, cst.Call):
                            if not isinstance(definition.expr, _NOT_MODULE_EXPRS):
                                results.append(None)
                            continue
                        func = definition.expr.func
                        if isinstance(func, cst.Name) and func.value in _NOT_MODULE_BUILTINS:
                            continue
                        _, local = self.constructor(definition)
                        if local is not None and not self.is_torch_module_class(local):
                            continue
                        results.append(self._value_mode_layers(definition, visiting))
        return _combine_layers(results)

    def _attr_value_definitions(self, klass: ClassInfo, assign) -> List[Value]:
        """Definitions of a ``self.x = value`` value; a parameter of
        ``__init__`` is followed to the arguments of the class's
        instantiations in this module (and its literal default)."""
        value = assign.value
        function = assign.scope.function
        if isinstance(value, cst.Name) and function is not None and function.name == "__init__":
            bindings = assign.scope.bindings.get(value.value, [])
            if bindings and all(b.kind == "param" for b in bindings):
                out = [
                    d
                    for arg in self.init_arguments(klass, value.value)
                    for d in self.definitions(arg.expr, arg.scope, arg.order)
                ]
                param = bindings[0].node
                if isinstance(param, cst.Param) and param.default is not None:
                    out.extend(self.definitions(param.default, function.scope.parent or self.index.module_scope, 0))
                return out
        return self.definitions(value, assign.scope, assign.order)

    def iterated_values(self, expr: cst.BaseExpression, scope: Scope, order: int) -> List[Value]:
        """What a ``for`` loop over ``expr`` iterates: through ``enumerate``,
        ``tqdm``, ``iter``, ``zip`` and assignments (``pbar = tqdm(loader)``)
        and function parameters."""
        out: List[Value] = []
        pending = [Value(expr, scope, order)]
        seen: Set[int] = set()
        while pending and len(seen) < 4 * MAX_DEPTH:
            value = pending.pop()
            if id(value.expr) in seen:
                continue
            seen.add(id(value.expr))
            inner = self._unwrap_iteration(value)
            if inner is not None:
                pending.extend(inner)
                continue
            if isinstance(value.expr, (cst.Name, cst.Attribute)):
                definitions = self.definitions(value.expr, value.scope, value.order)
                if len(definitions) == 1 and definitions[0].expr is value.expr:
                    out.append(value)
                else:
                    pending.extend(definitions)
                continue
            out.append(value)
        return out

    def _unwrap_iteration(self, value: Value) -> Optional[List[Value]]:
        expr = value.expr
        if not isinstance(expr, cst.Call) or not expr.args:
            return None
        func = expr.func
        name = func.value if isinstance(func, cst.Name) else (func.attr.value if isinstance(func, cst.Attribute) else None)
        if name not in _ITERATION_WRAPPERS:
            return None
        if name == "zip":
            return [Value(a.value, value.scope, value.order) for a in expr.args if a.keyword is None and not a.star]
        first = expr.args[0]
        if first.keyword is not None or first.star:
            return None
        return [Value(first.value, value.scope, value.order)]

    def dataloader_calls(self, expr: cst.BaseExpression, scope: Scope, order: int) -> List[Value]:
        """The ``torch.utils.data.DataLoader(...)`` calls a loop over ``expr`` iterates."""
        out = []
        for value in self.iterated_values(expr, scope, order):
            value = self.strip_value_preserving(value)
            qualname, _ = self.constructor(value)
            if qualname in api.TORCH_DATALOADER:
                out.append(value)
        return out

    def is_tensor(self, expr: cst.BaseExpression, scope: Scope, order: int, _depth: int = 0) -> bool:
        """True when every value ``expr`` may hold is visibly a torch tensor:
        built by a torch factory (``torch.rand``, ``torch.tensor``,
        ``torch.from_numpy``...), an element or slice of one, or one passed
        through tensor methods (``.float()``, ``.to(device)``)."""
        if _depth > 6:
            return False
        values = self.definitions(expr, scope, order)
        if not values:
            return False
        for value in values:
            value = self.strip_value_preserving(value)
            node = value.expr
            if isinstance(node, cst.Subscript):
                if not self.is_tensor(node.value, value.scope, value.order, _depth + 1):
                    return False
                continue
            if isinstance(node, cst.Call):
                qualname = self.index.qualname_of(node.func, value.scope, value.order)
                if qualname in api.TENSOR_FACTORIES:
                    continue
            return False
        return True

    def init_arguments(self, klass: ClassInfo, param: str) -> List[Value]:
        """The arguments passed for ``__init__``'s parameter ``param`` where
        this module instantiates ``klass`` (``MyDataset(x, transform=t)``)."""
        init = self.method_of(klass, "__init__")
        if init is None:
            return []
        positional = [name for name, _ in init.positional_params()]
        position = positional.index(param) if param in positional else None
        out = []
        for call in self.index.calls:
            func = call.node.func
            if not isinstance(func, cst.Name):
                continue
            if self.index.class_named(func.value, call.scope, call.order) is not klass:
                continue
            arg = call_arg(call.node, position, param)
            if arg is not None:
                out.append(Value(arg, call.scope, call.order))
        return out

    def instances_of(self, klass: ClassInfo) -> List[CallSite]:
        """Calls in this module that construct ``klass`` (by its name)."""
        out = []
        for call in self.index.calls:
            func = call.node.func
            if isinstance(func, cst.Name) and self.index.class_named(func.value, call.scope, call.order) is klass:
                out.append(call)
        return out

    def bound_names(self, node: cst.CSTNode, scope: Scope) -> List[str]:
        """Names (and ``self.<attr>`` attributes) the value ``node`` is
        assigned to: ``train_loader = DataLoader(...)`` -> ``train_loader``."""
        out = []
        for name, bindings in scope.bindings.items():
            if any(b.value is node and not b.unpack for b in bindings):
                out.append(name)
        for assign in self.index.attr_assigns:
            if assign.value is node:
                out.append(assign.attr)
        return out


    def output_width(self, ctor: Value, _depth: int = 0) -> Optional[int]:
        """The size of the last dimension of the module's output when
        visible: ``out_features`` of a final ``nn.Linear`` (through
        ``nn.Sequential`` and a local class's ``forward``, ignoring
        activations and dropout after it), ``num_classes`` of a model
        factory (1000 by default)."""
        if _depth > 4:
            return None
        qualname, klass = self.constructor(ctor)
        if qualname is not None:
            if qualname in api.LINEAR:
                values = self.int_values(call_arg(ctor.expr, 1, "out_features"), ctor.scope, ctor.order)
                return values[0] if len(values) == 1 else None
            if qualname in api.SEQUENTIAL:
                for layer in reversed(self.sequential_layers(ctor) or []):
                    inner, _ = self.constructor(layer)
                    if inner in api.PASS_THROUGH_MODULES:
                        continue
                    return self.output_width(layer, _depth + 1)
                return None
            if qualname.startswith(("torchvision.models.", "timm.create_model")):
                classes = call_arg(ctor.expr, None, "num_classes")
                values = self.int_values(classes, ctor.scope, ctor.order) if classes is not None else [1000]
                return values[0] if len(values) == 1 else None
            return None
        if klass is None:
            return None
        finals = self.final_layer_attrs(klass)
        if not finals or len(finals) != 1:
            return None
        assigns = [a for a in self.self_attr_assigns(klass, next(iter(finals))) if a.value is not None]
        if len(assigns) != 1:
            return None
        values = self.definitions(assigns[0].value, assigns[0].scope, assigns[0].order)
        if len(values) != 1:
            return None
        return self.output_width(self.strip_value_preserving(values[0]), _depth + 1)


class ActivatedLoss(NamedTuple):
    loss: "LossCall"
    activation: Activation
    #: The activation is written inside the loss input expression itself.
    inline: bool


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


# Added for LT106, LT107, LT601, LT602 ---------------------------------------

#: ``model.train()``/``model.eval()``/``model.to(dev)`` return the module itself.
_MODULE_RETURNING_METHODS = frozenset(
    {"to", "cuda", "cpu", "train", "eval", "float", "double", "half", "bfloat16", "requires_grad_", "to_empty"}
)
#: Callables outside ``torch.nn`` that build a module.
_MODULE_FACTORY_PREFIXES = ("torchvision.models.", "timm.create_model", "torch.hub.load")
#: Tensor factories whose positional arguments are the sizes.
_BATCH_FACTORIES = frozenset({"torch.randn", "torch.rand", "torch.zeros", "torch.ones", "torch.empty"})


def _record_blocks(root: cst.CSTNode, chain: Tuple, table: Dict) -> None:
    """For :meth:`Dataflow.enclosing_blocks`: map every call under ``root``
    (not inside nested functions or classes) to its chain of blocks."""
    from lintorch.index import child_nodes

    stack = [(root, chain)]
    while stack:
        node, chain = stack.pop()
        if isinstance(node, (cst.FunctionDef, cst.ClassDef)):
            continue
        if isinstance(node, cst.Call):
            table[id(node)] = chain
        if isinstance(node, (cst.If, cst.For, cst.While, cst.With, cst.Try)):
            inner = chain + ((node, "body"),)
            stack.append((node.body, inner))
            orelse = getattr(node, "orelse", None)
            if orelse is not None:
                stack.append((orelse if isinstance(orelse, cst.If) else orelse.body, chain + ((node, "orelse"),)))
            for name in ("test", "iter", "items", "target", "handlers", "finalbody"):
                value = getattr(node, name, None)
                if isinstance(value, cst.CSTNode):
                    stack.append((value, chain))
                elif isinstance(value, (tuple, list)):
                    stack.extend((item, chain) for item in value)
            continue
        stack.extend((child, chain) for child in child_nodes(node))


# Value ranges (LT106) ---------------------------------------------------------

_STANDARD_NORMAL = frozenset(
    {"torch.randn", "torch.randn_like", "numpy.random.randn", "numpy.random.standard_normal"}
)
_UNIFORM_01 = frozenset({"torch.rand", "torch.rand_like", "numpy.random.rand", "numpy.random.random", "numpy.random.random_sample"})
_TENSOR_WRAPPERS = frozenset(
    {
        "torch.tensor", "torch.as_tensor", "torch.Tensor", "torch.FloatTensor", "torch.DoubleTensor",
        "torch.from_numpy", "numpy.array", "numpy.asarray", "numpy.float32",
    }
)
_BOUNDED_FUNCS = {
    "torch.sin": (-1.0, 1.0), "torch.cos": (-1.0, 1.0), "numpy.sin": (-1.0, 1.0), "numpy.cos": (-1.0, 1.0),
    "torch.sigmoid": (0.0, 1.0), "torch.tanh": (-1.0, 1.0), "numpy.tanh": (-1.0, 1.0),
    "torch.nn.functional.sigmoid": (0.0, 1.0), "torch.nn.functional.tanh": (-1.0, 1.0),
}
#: ``x.sin()`` and friends, read as the function of the same name.
_TENSOR_METHOD_FUNCS = {
    "sin": "torch.sin", "cos": "torch.cos", "sigmoid": "torch.sigmoid", "tanh": "torch.tanh",
    "exp": "torch.exp", "abs": "torch.abs",
}


def _number(node: Optional[cst.CSTNode]) -> Optional[float]:
    return number_value(node) if node is not None else None


def _kw(call: cst.Call, position: Optional[int], keyword: str) -> Optional[cst.BaseExpression]:
    return call_arg(call, position, keyword)


def _literal_range(node: cst.BaseExpression) -> Optional[Tuple[float, float]]:
    """min/max of a nested list/tuple literal of numbers."""
    numbers = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, (cst.List, cst.Tuple)):
            stack.extend(e.value for e in item.elements)
            continue
        number = _number(item)
        if number is None:
            return None
        numbers.append(number)
    return (min(numbers), max(numbers)) if numbers else None


def _mutated_in_place(index: ModuleIndex, name: str) -> bool:
    """``y.div_(255)``, ``y.clamp_(0, 1)``... anywhere in the module."""
    cache = index.__dict__.setdefault("_inplace_receivers", None)
    if cache is None:
        cache = set()
        for call in index.calls:
            method = call.method
            if method and method.endswith("_") and not method.startswith("_") and method != "requires_grad_":
                receiver = call.receiver
                while isinstance(receiver, (cst.Attribute, cst.Subscript)):
                    receiver = receiver.value
                if isinstance(receiver, cst.Name):
                    cache.add(receiver.value)
        index.__dict__["_inplace_receivers"] = cache
    return name in cache

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
    last = (dotted_name(func) or "").rsplit(".", 1)[-1].lower()
    return any(word in last for word in _MODEL_NAME_WORDS) and "loss" not in last



_ITERATION_WRAPPERS = frozenset({"enumerate", "tqdm", "iter", "zip", "trange_iter", "track", "progress_bar"})
_NOT_MODULE_BUILTINS = frozenset(
    {"int", "float", "bool", "str", "list", "dict", "tuple", "set", "len", "range", "max", "min", "sum", "getattr", "round", "abs"}
)
#: Literal values assigned to self that are never modules.
_NOT_MODULE_EXPRS = (
    cst.Integer, cst.Float, cst.SimpleString, cst.ConcatenatedString, cst.FormattedString, cst.BinaryOperation,
    cst.UnaryOperation, cst.Comparison, cst.BooleanOperation, cst.Imaginary,
)


def _combine_layers(results) -> Optional[bool]:
    """True if any is True; False if all are False (and there is one); else None."""
    seen_unknown = False
    seen_any = False
    for result in results:
        seen_any = True
        if result is True:
            return True
        if result is None:
            seen_unknown = True
    if not seen_any:
        return False
    return None if seen_unknown else False




