"""Models: which values are networks, how they are built, what they output.

Answers "is this value a model?" (through ``.to(device)``, ``.cuda()``,
``.train()``, wrappers and factories), "is this call running a model?",
"what activation does this model apply last?", "does it contain layers that
behave differently in train and eval mode?" and "how wide is its output?".
"""

from typing import FrozenSet, List, NamedTuple, Optional, Set

import libcst as cst

from lintorch import torchapi as api
from lintorch.analyze import names
from lintorch.analyze.values import MAX_DEPTH, Value, Values
from lintorch.index import CallSite, ClassInfo, Scope, call_arg, dotted_name, number_value


class Activation(NamedTuple):
    kind: str  # softmax | sigmoid | log_softmax | tanh
    node: cst.CSTNode  # where the activation is applied or constructed
    via: str  # human description: "torch.softmax(...)", "the last layer of nn.Sequential", ...


#: ``model.train()``/``model.eval()``/``model.to(dev)`` return the module itself.
_MODULE_RETURNING_METHODS = frozenset(
    {"to", "cuda", "cpu", "train", "eval", "float", "double", "half", "bfloat16", "requires_grad_", "to_empty"}
)

#: Callables outside ``torch.nn`` that build a module.
_MODULE_FACTORY_PREFIXES = ("torchvision.models.", "timm.create_model", "torch.hub.load")

_NOT_MODULE_BUILTINS = frozenset(
    {"int", "float", "bool", "str", "list", "dict", "tuple", "set", "len", "range", "max", "min", "sum", "getattr", "round", "abs"}
)

#: Literal values assigned to self that are never modules.
_NOT_MODULE_EXPRS = (
    cst.Integer, cst.Float, cst.SimpleString, cst.ConcatenatedString, cst.FormattedString, cst.BinaryOperation,
    cst.UnaryOperation, cst.Comparison, cst.BooleanOperation, cst.Imaginary,
)

#: Method calls that are never a model's forward pass (``x.view(...)``).
_NOT_FORWARD_METHODS = frozenset({"append", "view", "reshape", "to", "item", "backward", "step", "zero_grad"})


class Models:
    def __init__(self, values: Values):
        self.values = values
        self.index = values.index
        self._model_calls: dict = {}

    def is_model_call(self, call: CallSite) -> bool:
        """``model(x)``, ``self.net(x)``, ``model.forward(x)``: a call running
        a network. The callee is traced to a module construction (a
        ``torch.nn`` layer or container, a local ``nn.Module`` subclass, a
        model zoo or ``from_pretrained``) or, when that is not visible, named
        like a model; losses, metrics and optimizers are not models."""
        key = id(call.node)
        cached = self._model_calls.get(key)
        if cached is None:
            cached = self._model_calls[key] = self._is_model_call(call)
        return cached

    def _is_model_call(self, call: CallSite) -> bool:
        func = call.node.func
        if (call.qualname is not None and not self.values.from_project(call)) or not call.node.args:
            return False
        if isinstance(func, cst.Attribute) and func.attr.value == "forward":
            func = func.value
        if isinstance(func, cst.Name):
            name = func.value
        elif isinstance(func, cst.Attribute) and isinstance(func.value, (cst.Name, cst.Attribute)):
            if func is call.node.func and call.method in _NOT_FORWARD_METHODS:
                return False
            name = func.attr.value
        else:
            return False
        if names.is_not_model_name(name):
            return False
        for value in self.values.definitions(func, call.scope, call.order):
            value = self.values.strip_value_preserving(value)
            qualname, klass = self.values.constructor(value)
            if qualname is not None:
                if (qualname.startswith("torch.nn.") and not qualname.endswith("Loss")) or qualname.startswith(
                    api.MODEL_ZOO_PREFIXES
                ):
                    return True
            elif klass is not None and self.is_module_class(klass) and not klass.name.endswith("Loss"):
                return True
            elif (
                isinstance(value.expr, cst.Call)
                and isinstance(value.expr.func, cst.Attribute)
                and value.expr.func.attr.value == "from_pretrained"
            ):
                return True
        return names.is_model_name(name)

    def is_module_class(self, klass: ClassInfo) -> bool:
        for cls in self.values.local_bases(klass):
            for base in cls.bases:
                qualname = self.index.qualname_of(base, cls.scope.parent or self.index.module_scope)
                if qualname is not None and qualname.startswith("torch.nn."):
                    return True
        return False

    def module_instance(self, expr: cst.BaseExpression, scope: Scope, order: int) -> Optional[Value]:
        """The constructor call of the module ``expr`` certainly is (every
        definition is a torch.nn layer/container, a local ``nn.Module``
        subclass or a model factory such as ``torchvision.models.resnet18()``),
        or None. Looks through ``.to(device)``, ``.cuda()``, ``.train()``..."""
        found: Optional[Value] = None
        values = self.values.definitions(expr, scope, order)
        if not values:
            return None
        for value in values:
            value = self.unwrap(value)
            if value is None or not self.is_module_constructor(value):
                return None
            found = found or value
        return found

    def unwrap(self, value: Value) -> Optional[Value]:
        """The module a value holds, seen through calls that return the
        module they are given: methods (``model.to(device)``, ``.cuda()``,
        ``.train()``) and wrappers (``nn.DataParallel(model)``, DDP,
        ``torch.compile(model)``, ``weight_norm(layer)``). None when an inner
        value is not unique."""
        for _ in range(MAX_DEPTH):
            call = value.expr
            if not isinstance(call, cst.Call):
                return value
            inner_expr = None
            if isinstance(call.func, cst.Attribute) and call.func.attr.value in _MODULE_RETURNING_METHODS:
                if self.index.qualname_of(call.func, value.scope, value.order) is None:
                    inner_expr = call.func.value
            elif self.index.qualname_of(call.func, value.scope, value.order) in api.MODULE_WRAPPERS:
                inner_expr = call_arg(call, 0, "module") or call_arg(call, None, "model")
            if inner_expr is None:
                return value
            inner = self.values.definitions(inner_expr, value.scope, value.order)
            if len(inner) != 1:
                return None
            value = inner[0]
        return value

    def is_module_constructor(self, value: Value) -> bool:
        """``nn.Linear(...)``, ``Net(...)`` (local nn.Module subclass),
        ``torchvision.models.resnet18(...)``."""
        qualname, klass = self.values.constructor(value)
        if qualname is not None:
            if qualname.startswith(_MODULE_FACTORY_PREFIXES):
                return True
            head, _, last = qualname.rpartition(".")
            return (
                head in ("torch.nn", "torch.nn.parallel")
                and last[:1].isupper()
                and last not in ("Parameter", "Buffer", "UninitializedParameter", "Module")
            )
        return klass is not None and self.is_module_class(klass)

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
        values = self.values.definitions(expr, scope, order)
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
            for kind, qualnames in (
                ("softmax", api.SOFTMAX_FUNCS),
                ("sigmoid", api.SIGMOID_FUNCS),
                ("log_softmax", api.LOG_SOFTMAX_FUNCS),
                ("tanh", api.TANH_FUNCS),
            ):
                if qualname in qualnames:
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
        definitions = self.values.definitions(callee, value.scope, value.order)
        if not definitions:
            return None
        found = None
        for definition in definitions:
            result = self.module_output_activation(self.values.strip_value_preserving(definition), visiting)
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
        qualname, klass = self.values.constructor(ctor)
        if qualname is not None:
            for kind, qualnames in (
                ("softmax", api.SOFTMAX_MODULES),
                ("sigmoid", api.SIGMOID_MODULES),
                ("log_softmax", api.LOG_SOFTMAX_MODULES),
                ("tanh", api.TANH_MODULES),
            ):
                if qualname in qualnames:
                    return Activation(kind, expr, f"nn.{qualname.rsplit('.', 1)[-1]}()")
            if qualname in api.SEQUENTIAL:
                last = self._sequential_last_layer(expr)
                if last is None:
                    return None
                for definition in self.values.definitions(last, ctor.scope, ctor.order):
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
        forward = self.values.method_of(klass, "forward")
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
            values = self.values.definitions(item, ctor.scope, ctor.order)
            out.append(self.values.strip_value_preserving(values[0]) if len(values) == 1 else Value(item, ctor.scope, ctor.order))
        return out

    def weight_layer_count(self, ctor: Value, _depth: int = 0, kinds: FrozenSet[str] = api.WEIGHT_LAYERS) -> int:
        """A lower bound on the number of weight layers (``torch.nn.Linear``,
        convolutions: ``api.WEIGHT_LAYERS``) in the module built by ``ctor``:
        through ``nn.Sequential``, ``nn.ModuleList([...])`` and the
        ``self.<attr>`` layers of local module classes."""
        if _depth > 4:
            return 0
        qualname, klass = self.values.constructor(ctor)
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
        if klass is not None and self.is_module_class(klass):
            return self.class_weight_layer_count(klass, _depth, kinds)
        return 0

    def class_weight_layer_count(self, klass: ClassInfo, _depth: int = 0, kinds: FrozenSet[str] = api.WEIGHT_LAYERS) -> int:
        total = 0
        seen: Set[str] = set()
        for cls in self.values.local_bases(klass):
            for attr, assigns in cls.self_attrs.items():
                if attr in seen or not assigns or assigns[-1].value is None:
                    continue
                seen.add(attr)
                assign = assigns[-1]
                values = self.values.definitions(assign.value, assign.scope, assign.order)
                if len(values) == 1:
                    total += self.weight_layer_count(self.values.strip_value_preserving(values[0]), _depth + 1, kinds)
        return total

    def final_layer_attrs(self, klass: ClassInfo) -> Optional[Set[str]]:
        """Names of the ``self.<attr>`` layers whose output reaches the value
        ``forward`` returns without passing through another layer with
        weights: the output layer, and residual projections (``x +
        self.proj(h)``). Activations, dropout and pooling modules are looked
        through. None when ``forward`` (or part of what it returns) is not
        visible."""
        forward = self.values.method_of(klass, "forward")
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
            values = self.values.definitions(expr, scope, order)
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
            klass = self.values.enclosing_class(scope)
            method = self.values.method_of(klass, attr) if klass is not None else None
            if method is not None:
                if not method.returns:
                    return False
                return all(
                    ret.value is not None and self._collect_finals(ret.value, method.scope, o, finals, active, budget)
                    for ret, o in method.returns
                )
            layer = self.values.definitions(func, scope, order)
            qualname = None
            if len(layer) == 1:
                qualname, _ = self.values.constructor(self.values.strip_value_preserving(layer[0]))
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

    def output_width(self, ctor: Value, _depth: int = 0) -> Optional[int]:
        """The size of the last dimension of the module's output when
        visible: ``out_features`` of a final ``nn.Linear`` (through
        ``nn.Sequential`` and a local class's ``forward``, ignoring
        activations and dropout after it), ``num_classes`` of a model
        factory (1000 by default)."""
        if _depth > 4:
            return None
        qualname, klass = self.values.constructor(ctor)
        if qualname is not None:
            if qualname in api.LINEAR:
                values = self.values.int_values(call_arg(ctor.expr, 1, "out_features"), ctor.scope, ctor.order)
                return values[0] if len(values) == 1 else None
            if qualname in api.SEQUENTIAL:
                for layer in reversed(self.sequential_layers(ctor) or []):
                    inner, _ = self.values.constructor(layer)
                    if inner in api.PASS_THROUGH_MODULES:
                        continue
                    return self.output_width(layer, _depth + 1)
                return None
            if qualname.startswith(("torchvision.models.", "timm.create_model")):
                classes = call_arg(ctor.expr, None, "num_classes")
                values = self.values.int_values(classes, ctor.scope, ctor.order) if classes is not None else [1000]
                return values[0] if len(values) == 1 else None
            return None
        if klass is None:
            return None
        finals = self.final_layer_attrs(klass)
        if not finals or len(finals) != 1:
            return None
        assigns = [a for a in self.values.self_attr_assigns(klass, next(iter(finals))) if a.value is not None]
        if len(assigns) != 1:
            return None
        values = self.values.definitions(assigns[0].value, assigns[0].scope, assigns[0].order)
        if len(values) != 1:
            return None
        return self.output_width(self.values.strip_value_preserving(values[0]), _depth + 1)

    def mode_layers(self, expr: cst.BaseExpression, scope: Scope, order: int) -> Optional[bool]:
        """Whether the module ``expr`` evaluates to contains layers that act
        differently in ``train()`` and ``eval()`` mode (dropout, batch norm):
        True, False (visibly none: every layer is known) or None (unknown).
        Follows ``nn.Sequential``/``ModuleList`` contents, the layers a local
        module class assigns to ``self`` (and its local bases), functional
        dropout in its methods, and model zoos (torchvision, timm,
        transformers, ``from_pretrained``), whose models have them."""
        values = self.values.definitions(expr, scope, order)
        if not values:
            return None
        return _combine_layers(self._value_mode_layers(self.values.strip_value_preserving(v), set()) for v in values)

    def _value_mode_layers(self, value: Value, visiting: Set[int]) -> Optional[bool]:
        expr = value.expr
        if not isinstance(expr, cst.Call) or id(expr) in visiting:
            return None
        visiting = visiting | {id(expr)}
        qualname, klass = self.values.constructor(value)
        if qualname is not None:
            if qualname in api.MODE_DEPENDENT_LAYERS:
                return True
            if qualname in api.DROPOUT_ARGUMENT_LAYERS:
                dropout = call_arg(expr, None, "dropout")
                if dropout is None:
                    return False if not any(a.star for a in expr.args) else None
                numbers = [number_value(v.expr) for v in self.values.definitions(dropout, value.scope, value.order)]
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
            definitions = self.values.definitions(layer, value.scope, value.order)
            if not definitions:
                return None
            for definition in definitions:
                results.append(self._value_mode_layers(self.values.strip_value_preserving(definition), visiting))
        return _combine_layers(results)

    def class_mode_layers(self, klass: ClassInfo, visiting: Optional[Set[int]] = None) -> Optional[bool]:
        """:meth:`mode_layers` for an instance of a local class."""
        visiting = visiting if visiting is not None else set()
        if id(klass.node) in visiting:
            return None
        visiting = visiting | {id(klass.node)}
        results: List[Optional[bool]] = []
        for cls in self.values.local_bases(klass):
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
                        definition = self.values.strip_value_preserving(definition)
                        if not isinstance(definition.expr, cst.Call):
                            if not isinstance(definition.expr, _NOT_MODULE_EXPRS):
                                results.append(None)
                            continue
                        func = definition.expr.func
                        if isinstance(func, cst.Name) and func.value in _NOT_MODULE_BUILTINS:
                            continue
                        _, local = self.values.constructor(definition)
                        if local is not None and not self.is_module_class(local):
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
                    for arg in self.values.init_arguments(klass, value.value)
                    for d in self.values.definitions(arg.expr, arg.scope, arg.order)
                ]
                param = bindings[0].node
                if isinstance(param, cst.Param) and param.default is not None:
                    out.extend(self.values.definitions(param.default, function.scope.parent or self.index.module_scope, 0))
                return out
        return self.values.definitions(value, assign.scope, assign.order)

    def model_created_in(self, call: CallSite) -> Set[Scope]:
        """The function scopes where the module called by ``call`` is
        constructed, when every definition of it is a construction there."""
        out: Set[Scope] = set()
        for value in self.values.definitions(call.node.func, call.scope, call.order):
            value = self.values.strip_value_preserving(value)
            if not isinstance(value.expr, cst.Call) or value.scope.kind != "function":
                return set()
            out.add(value.scope)
        return out



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

