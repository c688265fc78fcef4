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
            for scope in _scope_tree(cls.scope):
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


def _number(node) -> Optional[float]:
    return number_value(node)


def _scope_tree(scope: Scope) -> List[Scope]:
    out = [scope]
    stack = list(scope.children)
    while stack:
        child = stack.pop()
        out.append(child)
        stack.extend(child.children)
    return out


from lintorch.index import dotted_name, number_value  # noqa: E402  (kept apart from the imports above)
