"""Models: which values are networks, how they are built, what they output.

Answers "is this value a model?" (through ``.to(device)``, ``.cuda()``,
``.train()``, wrappers, factories, tuples and ``self``), "is this call
running a model?", "what activation does this model apply last?", "which
layers does it hold, and which of them are hidden?", "does it contain
layers that behave differently in train and eval mode?", "how wide is its
output?" and "which submodules does an initialisation reach?". What a
container was filled with, step by step, is ``analyze.containers``'s
business.
"""

from typing import FrozenSet, List, NamedTuple, Optional, Set, Tuple

import libcst as cst

from lintorch import torchapi as api
from lintorch.analyze import names
from lintorch.analyze.containers import Containers, Item
from lintorch.analyze.values import MAX_DEPTH, Bound, Value, Values
from lintorch.index import CallSite, ClassInfo, Scope, call_arg, dotted_name, int_value, number_value


class Activation(NamedTuple):
    kind: str  # softmax | sigmoid | log_softmax | tanh
    node: cst.CSTNode  # where the activation is applied or constructed
    via: str  # human description: "torch.softmax(...)", "the last layer of nn.Sequential", ...
    #: The outermost place it comes from, in a few words for a one-line
    #: message ("Net.forward", "last layer of nn.Sequential"); "" when the
    #: activation is the expression itself (``via`` then says which).
    site: str = ""

    def brief(self, inline: bool) -> str:
        """Where it comes from, for a one-line message: ``Net.forward, line
        {line0}`` (the report relates this node unless ``inline``)."""
        return f"{self.site or self.via}{'' if inline else ', line {line0}'}"

    def origin(self) -> str:
        """The whole way to it, for an explanation, where :meth:`brief` shortens it."""
        return f"The {self.kind} comes from {self.via}. " if self.site else ""


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
#: ``model.forward(x)`` and ``model.__call__(x)`` run the model like ``model(x)``.
_FORWARD_METHODS = frozenset({"forward", "__call__"})


class LayerPosition(NamedTuple):
    """Where a submodule sits in the module that holds it."""

    kind: str  # the layer's qualified name: torch.nn.Linear
    #: Its output feeds another weight layer: not the module's output
    #: layer or a residual projection.
    hidden: bool
    container: str  # "nn.Sequential", or the local class's name
    where: cst.CSTNode  # the container's construction or the layer's assignment


class Models:
    def __init__(self, values: Values):
        self.values = values
        self.index = values.index
        self._model_calls: dict = {}
        self._module_values: dict = {}
        self._layers: dict = {}
        self.containers = Containers(values)

    # -- identity ---------------------------------------------------------

    def module_values(self, expr: cst.BaseExpression, scope: Scope, order: int) -> List[Value]:
        """What ``expr`` may hold, each definition seen through everything
        that hands back a module it is given or builds: module methods
        (``model = model.to(device)``, ``.cuda()``, ``.train()``,
        ``.float()``), wrappers (``nn.DataParallel(model)`` in every
        spelling, DDP, ``torch.compile``, ``weight_norm``; ``.module`` of
        one; ``accelerator.prepare``, ``fabric.setup``), factories (``build_model()``, ``get_model(name)`` with a
        return per model: every return path), tuples unpacked from a
        factory (``enc, dec = build()``) and ``self`` in a method (its
        class). A definition that cannot be followed further is kept as it
        is; empty when nothing is known."""
        key = (expr, scope, order)  # nodes hash by identity; keeping them alive keeps ids unique
        cached = self._module_values.get(key)
        if cached is None:
            self._module_values[key] = []  # a cycle: unknown
            cached = self._module_values[key] = self._resolve(expr, scope, order, 0)
        return cached

    def _resolve(self, expr, scope: Scope, order: int, depth: int, bound: Optional[Bound] = None) -> List[Value]:
        values = self.values.definitions(expr, scope, order, bound=bound)
        if not values:
            unpacked = self.values.unpacked_from(expr, scope, order)
            if unpacked is not None:
                values = self.values.call_results(*unpacked) or self._returned_arguments(*unpacked)
        out: List[Value] = []
        for value in values:
            out.extend(self.unwrap(value, depth + 1, bound))
        return out

    def unwrap(self, value: Value, _depth: int = 0, bound: Optional[Bound] = None) -> List[Value]:
        """The modules ``value`` holds (see :meth:`module_values`): the
        value itself when it is not a call that returns a module.
        ``bound`` reads a factory's parameters as one call passed them."""
        if _depth > MAX_DEPTH:
            return [value]
        expr = value.expr
        inner_expr = None
        if isinstance(expr, cst.Call):
            qualname = self.index.qualname_of(expr.func, value.scope, value.order)
            if qualname is None and isinstance(expr.func, cst.Attribute) and expr.func.attr.value in _MODULE_RETURNING_METHODS:
                inner_expr = expr.func.value
            elif qualname in api.MODULE_WRAPPERS:
                inner_expr = call_arg(expr, 0, "module") or call_arg(expr, None, "model")
            elif qualname in api.ARGUMENT_RETURNING_FUNCS or self._returns_arguments(value):
                returned = self._returned_arguments(value, (0,)) if len(expr.args) == 1 else []
                inner_expr = returned[0].expr if returned else None
            elif qualname is None:
                function = self.values.local_function(value)
                results = self.values.function_results(function, value) if function is not None else None
                if results:
                    inner_bound = {**(bound or {}), **self.values.arguments(function, value)}
                    return [module for result in results for module in self.unwrap(result, _depth + 1, inner_bound)]
        elif isinstance(expr, cst.Attribute) and expr.attr.value == "module":
            if self._is_wrapper(expr.value, value.scope, value.order):
                inner_expr = expr.value
        if inner_expr is None:
            return [value]
        inner = self._resolve(inner_expr, value.scope, value.order, _depth + 1, bound)
        return inner or [value]

    def _returns_arguments(self, call: Value) -> bool:
        """``accelerator.prepare(...)``, ``fabric.setup(...)`` on an
        instance built visibly (api.ARGUMENT_RETURNING_METHODS)."""
        func = call.expr.func
        if not isinstance(func, cst.Attribute):
            return False
        kinds = self.values.instance_qualnames(func.value, call.scope, call.order)
        return any(api.ARGUMENT_RETURNING_METHODS.get(kind) == func.attr.value for kind in kinds)

    def _returned_arguments(self, call: Value, path) -> List[Value]:
        """Element ``path`` of what a call that hands back its arguments in
        order returns: the definitions of that positional argument."""
        expr = call.expr
        qualname = self.index.qualname_of(expr.func, call.scope, call.order)
        if len(path) != 1 or not (qualname in api.ARGUMENT_RETURNING_FUNCS or self._returns_arguments(call)):
            return []
        arg = call_arg(expr, path[0])
        return self.values.definitions(arg, call.scope, call.order) if arg is not None else []

    def _is_wrapper(self, expr, scope: Scope, order: int) -> bool:
        """Every definition of ``expr`` is a wrapper call (DataParallel...)."""
        values = [self.values.strip_value_preserving(v) for v in self.values.definitions(expr, scope, order)]
        return bool(values) and all(
            isinstance(v.expr, cst.Call) and self.index.qualname_of(v.expr.func, v.scope, v.order) in api.MODULE_WRAPPERS
            for v in values
        )

    def is_model_call(self, call: CallSite) -> bool:
        """``model(x)``, ``self.net(x)``, ``model.forward(x)``,
        ``model.module(x)``, ``self(x)`` in a module's method: a call
        running a network. The callee is traced to a module construction (a
        ``torch.nn`` layer or container, a local ``nn.Module`` or
        ``LightningModule`` subclass, a model zoo or ``from_pretrained``)
        or, when that is not visible, named like a model; losses, metrics
        and optimizers are not models."""
        key = id(call.node)
        cached = self._model_calls.get(key)
        if cached is None:
            cached = self._model_calls[key] = self._is_model_call(call)
        return cached

    def _is_model_call(self, call: CallSite) -> bool:
        func = call.node.func
        if (call.qualname is not None and not self.values.from_project(call)) or not call.node.args:
            return False
        if isinstance(func, cst.Attribute) and func.attr.value in _FORWARD_METHODS:
            func = func.value
        if isinstance(func, cst.Name) and func.value == "self":
            # self(x) in a method of a module class runs its forward (Lightning's training_step)
            klass = self.values.enclosing_class(call.scope)
            return klass is not None and self.is_module_class(klass)
        if isinstance(func, cst.Name):
            name = func.value
            if self.index.function_named(name, call.scope, call.order) is not None:
                return False  # train_model(...), eval_model(...): a function of this module, not a module
        elif isinstance(func, cst.Attribute) and isinstance(func.value, (cst.Name, cst.Attribute)):
            if func is call.node.func and call.method in _NOT_FORWARD_METHODS:
                return False
            name = func.attr.value
        else:
            return False
        if names.is_not_model_name(name):
            return False
        for value in self.module_values(func, call.scope, call.order):
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
        """A local subclass of ``torch.nn.Module`` (directly, through a
        ``torch.nn`` layer or a local base, or as a ``LightningModule``)."""
        for cls in self.values.local_bases(klass):
            for base in cls.bases:
                qualname = self.index.qualname_of(base, cls.scope.parent or self.index.module_scope)
                if qualname is not None and (qualname.startswith("torch.nn.") or qualname in api.LIGHTNING_MODULES):
                    return True
        return False

    def module_instance(self, expr: cst.BaseExpression, scope: Scope, order: int) -> Optional[Value]:
        """The construction of the module ``expr`` certainly is (every
        value it may hold, through :meth:`module_values`, is a torch.nn
        layer or container, an instance of a local ``nn.Module`` subclass,
        ``self`` in one, or a model factory such as
        ``torchvision.models.resnet18()``), or None."""
        found: Optional[Value] = None
        values = self.module_values(expr, scope, order)
        if not values:
            return None
        for value in values:
            if not self.is_module_constructor(value):
                return None
            found = found or value
        return found

    def iterated_layers(self, name: cst.Name, scope: Scope, order: int) -> Optional[List[Value]]:
        """The layers a loop variable takes: ``for m in self.layers`` or
        ``for i, m in enumerate(self.layers)`` over an ``nn.Sequential`` /
        ``nn.ModuleList`` whose every layer is visible. None otherwise."""
        bindings = self.index.lookup(name.value, scope, order)
        found = self._iterated_container(bindings[0]) if len(bindings) == 1 else None
        if found is None:
            return None
        layers = self.layers(found[1])
        return [layer.value for layer in layers] if layers else None

    def _iterated_container(self, binding) -> Optional[Tuple[cst.BaseExpression, Value]]:
        """For a ``for`` binding over a torch.nn container (directly or
        through ``enumerate``): the iterated expression and the container's
        construction."""
        item = self.values.loop_item(binding)
        if item is None or item[1]:
            return None
        iterable = item[0]
        container = self.module_instance(iterable, binding.scope, binding.order)
        if container is None or self.values.constructor(container)[0] not in api.MODULE_CONTAINERS:
            return None
        return iterable, container

    def is_module_constructor(self, value: Value) -> bool:
        """``nn.Linear(...)``, ``Net(...)`` (local nn.Module subclass),
        ``torchvision.models.resnet18(...)``, ``self`` in a module."""
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

    # -- output activation ------------------------------------------------

    def activation(self, expr: cst.BaseExpression, scope: Scope, order: int) -> Optional[Activation]:
        """The output activation applied last to the value of ``expr``.

        ``torch.softmax(x, 1)``, ``x.sigmoid()``, ``nn.Softmax(dim=1)(x)``,
        ``model(x)`` (also ``model.forward(x)``, ``model.module(x)``,
        ``self(x)``) where the model is an ``nn.Sequential`` ending in an
        activation or a local module class whose ``forward`` returns one,
        an element of the tuple ``forward`` returns (``validity, label =
        D(x)``), and what a local helper returns, all through assignments
        and value-preserving methods.
        """
        return self._activation(expr, scope, order, set())

    def _activation(self, expr, scope, order, visiting: Set[int]) -> Optional[Activation]:
        found: Optional[Activation] = None
        values = self.values.definitions(expr, scope, order)
        via_forward = None
        if not values:
            unpacked = self.values.unpacked_from(expr, scope, order)
            if unpacked is None:
                return None
            values, via_forward = self._call_results(*unpacked)
            if not values:
                return None
        for value in values:
            result = self._activation_of_value(value, visiting)
            if result is None:
                return None  # one path without an activation: not certain
            found = found or result
        if found is not None and via_forward is not None:
            found = Activation(
                found.kind, found.node, f"{found.via} returned by {via_forward}.forward", f"{via_forward}.forward"
            )
        return found

    def _call_results(self, call: Value, path) -> Tuple[Optional[List[Value]], Optional[str]]:
        """Element ``path`` of what ``call`` returns: a local function's
        return values, or those of ``forward`` when it runs a local module
        (with that class's name)."""
        results = self.values.call_results(call, path)
        if results is not None:
            return results, None
        func = call.expr.func
        if isinstance(func, cst.Attribute) and func.attr.value in _FORWARD_METHODS:
            func = func.value
        if not isinstance(func, (cst.Name, cst.Attribute)):
            return None, None
        out: List[Value] = []
        name = None
        for module in self.module_values(func, call.scope, call.order) or [None]:
            _, klass = self.values.constructor(module) if module is not None else (None, None)
            forward = self.values.method_of(klass, "forward") if klass is not None and self.is_module_class(klass) else None
            found = self.values.function_results(forward, call, path) if forward is not None else None
            if found is None:
                return None, None
            out.extend(found)
            name = name or klass.name
        return out, name

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
        function = self.values.local_function(value)
        results = self.values.function_results(function, value) if function is not None else None
        if results:
            found = None
            for result in results:
                inner = self._activation_of_value(result, visiting)
                if inner is None:
                    return None
                found = found or inner
            owner = f"{function.klass.name}." if function.is_method else ""
            return Activation(
                found.kind, found.node, f"{found.via} returned by {owner}{function.name}", f"{owner}{function.name}"
            )
        return self._module_call_activation(func, value, visiting)

    def _module_call_activation(self, callee, value: Value, visiting: Set[int]) -> Optional[Activation]:
        """``callee(x)`` where callee is a module instance (or a constructor
        call, as in ``nn.Softmax(dim=1)(x)``)."""
        if isinstance(callee, cst.Call):
            return self.module_output_activation(Value(callee, value.scope, value.order), visiting)
        if isinstance(callee, cst.Attribute) and callee.attr.value in _FORWARD_METHODS:
            callee = callee.value
        definitions = self.module_values(callee, value.scope, value.order)
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
        qualname, klass = self.values.constructor(ctor)
        key = id(klass.node) if klass is not None else id(ctor.expr)
        if key in visiting:
            return None
        visiting = visiting | {key}
        if qualname is not None:
            for kind, qualnames in (
                ("softmax", api.SOFTMAX_MODULES),
                ("sigmoid", api.SIGMOID_MODULES),
                ("log_softmax", api.LOG_SOFTMAX_MODULES),
                ("tanh", api.TANH_MODULES),
            ):
                if qualname in qualnames:
                    return Activation(kind, ctor.expr, f"nn.{qualname.rsplit('.', 1)[-1]}()")
            if qualname in api.SEQUENTIAL:
                last = self.last_layer(ctor)
                if last is None:
                    return None
                inner = self.module_output_activation(last, visiting)
                if inner is not None:
                    return Activation(
                        inner.kind, inner.node, f"{inner.via} as the last layer of nn.Sequential",
                        "last layer of nn.Sequential",
                    )
            return None
        if klass is not None:
            return self.forward_activation(klass, visiting)
        return None

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
        return Activation(
            found.kind, found.node, f"{found.via} returned by {klass.name}.forward", f"{klass.name}.forward"
        )

    # -- layers -------------------------------------------------------------

    def layers(self, ctor: Value) -> Optional[List[Item]]:
        """The submodules of the container ``ctor`` builds, in the order
        they run (:meth:`Containers.container_items`: arguments, lists
        grown in loops or by helpers, ``add_module``/``append`` later),
        each as the module it holds (:meth:`module_values`) where that is
        unique. None when part of it is not visible."""
        key = ctor.expr
        if key in self._layers:
            return self._layers[key]
        self._layers[key] = None  # a cycle: unknown
        items = self.containers.container_items(ctor)
        result = [Item(self._layer_value(i.value), i.conditional) for i in items] if items is not None else None
        self._layers[key] = result
        return result

    def _layer_value(self, value: Value) -> Value:
        modules = self.module_values(value.expr, value.scope, value.order)
        return self.values.strip_value_preserving(modules[0]) if len(modules) == 1 else value

    def last_layer(self, ctor: Value) -> Optional[Value]:
        """The layer an ``nn.Sequential`` applies last, when certain."""
        layers = self.layers(ctor)
        if not layers or layers[-1].conditional:
            return None
        return layers[-1].value

    def weight_layer_count(self, ctor: Value, _depth: int = 0, kinds: FrozenSet[str] = api.WEIGHT_LAYERS) -> int:
        """A lower bound on the number of weight layers (``torch.nn.Linear``,
        convolutions: ``api.WEIGHT_LAYERS``) in the module built by ``ctor``:
        through containers (:meth:`layers`; a layer appended in a loop
        counts once, a conditional one not at all) and the ``self.<attr>``
        layers of local module classes."""
        if _depth > 4:
            return 0
        qualname, klass = self.values.constructor(ctor)
        if qualname is not None:
            if qualname in kinds:
                return 1
            layers = self.layers(ctor) if qualname in api.MODULE_CONTAINERS else None
            return sum(self.weight_layer_count(layer.value, _depth + 1, kinds) for layer in layers or () if not layer.conditional)
        if klass is not None and self.is_module_class(klass):
            return self.class_weight_layer_count(klass, _depth, kinds)
        return 0

    def class_weight_layer_count(self, klass: ClassInfo, _depth: int = 0, kinds: FrozenSet[str] = api.WEIGHT_LAYERS) -> int:
        total = 0
        for assign in self.submodule_assigns(klass):
            values = self.module_values(assign.value, assign.scope, assign.order)
            if len(values) == 1:
                total += self.weight_layer_count(self.values.strip_value_preserving(values[0]), _depth + 1, kinds)
        return total

    def submodule_assigns(self, klass: ClassInfo) -> List:
        """The last ``self.<attr> = value`` of each attribute of a class
        and its local bases (an attribute set twice counts once)."""
        out = []
        seen: Set[str] = set()
        for cls in self.values.local_bases(klass):
            for attr, assigns in cls.self_attrs.items():
                if attr in seen or not assigns or assigns[-1].value is None:
                    continue
                seen.add(attr)
                out.append(assigns[-1])
        return out

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
            layer = self.module_values(func, scope, order)
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
                for layer in reversed(self.layers(ctor) or []):
                    if layer.conditional:
                        return None
                    inner, _ = self.values.constructor(layer.value)
                    if inner in api.PASS_THROUGH_MODULES:
                        continue
                    return self.output_width(layer.value, _depth + 1)
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
        values = self.module_values(assigns[0].value, assigns[0].scope, assigns[0].order)
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
        values = self.module_values(expr, scope, order)
        if not values:
            return None
        return _combine_layers(self._value_mode_layers(self.values.strip_value_preserving(v), set()) for v in values)

    def _value_mode_layers(self, value: Value, visiting: Set[int]) -> Optional[bool]:
        expr = value.expr
        qualname, klass = self.values.constructor(value)
        if klass is not None:
            return self.class_mode_layers(klass, visiting, expr if isinstance(expr, cst.Call) else None)
        if not isinstance(expr, cst.Call) or id(expr) in visiting:
            return None
        visiting = visiting | {id(expr)}
        if qualname is not None:
            if qualname in api.MODE_DEPENDENT_LAYERS:
                # nn.Dropout(0) / Dropout(p=0.0) does nothing in either mode
                return not ("Dropout" in qualname and self._numbers(call_arg(expr, 0, "p"), value) == [0.0])
            if qualname in api.DROPOUT_ARGUMENT_LAYERS:
                dropout = call_arg(expr, None, "dropout")
                if dropout is None:
                    return False if not any(a.star for a in expr.args) else None
                if not qualname.endswith("MultiheadAttention"):
                    # recurrent dropout acts between stacked layers only: none with one layer
                    layers = call_arg(expr, 2, "num_layers")
                    if layers is None or self._numbers(layers, value) == [1.0]:
                        return False
                numbers = self._numbers(dropout, value)
                if numbers is not None:
                    return any(n > 0 for n in numbers)
                return None
            if qualname in api.MODULE_CONTAINERS:
                layers = self.layers(value)
                if layers is None:
                    return None
                results = []
                for layer in layers:
                    found = self._value_mode_layers(layer.value, visiting)
                    results.append(None if found is True and layer.conditional else found)
                return _combine_layers(results)
            if qualname.endswith(".from_pretrained") and qualname.startswith("torch.nn."):
                return False  # nn.Embedding.from_pretrained(weights): an embedding
            if qualname.startswith(api.MODEL_ZOO_PREFIXES) or qualname.endswith(".from_pretrained"):
                return True
            short = qualname[len("torch.nn."):] if qualname.startswith("torch.nn.") else ""
            if short[:1].isupper() and "." not in short:
                return False  # any other torch.nn layer: Linear, Conv2d, ReLU, LayerNorm...
            return None
        func = expr.func
        if isinstance(func, cst.Attribute) and func.attr.value == "from_pretrained":
            return True
        return None

    def _numbers(self, expr: Optional[cst.BaseExpression], value: Value) -> Optional[List[float]]:
        """Every number ``expr`` may be (deduplicated), or None when unknown."""
        if expr is None:
            return None
        numbers = [number_value(v.expr) for v in self.values.definitions(expr, value.scope, value.order)]
        if not numbers or any(n is None for n in numbers):
            return None
        return sorted(set(numbers))

    def class_mode_layers(
        self, klass: ClassInfo, visiting: Optional[Set[int]] = None, instance: Optional[cst.Call] = None
    ) -> Optional[bool]:
        """:meth:`mode_layers` for an instance of a local class (``instance``:
        the constructor call, whose arguments decide ``nn.Dropout(p=p)``)."""
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
                elif qualname not in api.MODULE_BASES | api.LIGHTNING_MODULES and not qualname.startswith(("abc.", "typing.")):
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
                    definitions = self._attr_value_definitions(klass, assign)
                    for definition in [m for d in definitions for m in self.unwrap(d)] or [None]:
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
                        if instance is not None and self._dropout_off_in(definition, assign, klass, instance):
                            results.append(False)
                            continue
                        results.append(self._value_mode_layers(definition, visiting))
        return _combine_layers(results)

    def _dropout_off_in(self, definition: Value, assign, klass: ClassInfo, instance: cst.Call) -> bool:
        """``self.drop = nn.Dropout(p=p)`` with ``p`` an ``__init__`` parameter
        that this instance leaves at (or sets to) 0: ``Net(..., p=0)``."""
        qualname, _ = self.values.constructor(definition)
        rate = call_arg(definition.expr, 0, "p") if qualname and "Dropout" in qualname else None
        init = assign.scope.function
        if not isinstance(rate, cst.Name) or init is None or init.name != "__init__":
            return False
        params = [name for name, _ in init.positional_params()]
        param = next((p for n, p, kind in init.params if n == rate.value and kind in ("pos", "kwonly")), None)
        if param is None:
            return False
        given = call_arg(instance, params.index(rate.value) if rate.value in params else None, rate.value)
        chosen = given if given is not None else param.default
        return chosen is not None and number_value(chosen) == 0

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

    # -- submodules, parameters and initialisation ---------------------------

    def layer_position(self, layer: cst.BaseExpression, scope: Scope, order: int) -> Optional[LayerPosition]:
        """Where the submodule ``layer`` sits in its module: ``model[0]``
        (an ``nn.Sequential`` element; hidden when a weight layer follows
        it) or ``self.fc1``/``model.fc1`` (an attribute of a local module
        class that ``forward`` calls; hidden unless its output reaches
        what ``forward`` returns, as the output layer or a residual
        projection does: :meth:`final_layer_attrs`). None when not
        visible."""
        if isinstance(layer, cst.Subscript):
            position = subscript_int(layer)
            ctor = self.module_instance(layer.value, scope, order) if position is not None else None
            if ctor is None or self.values.constructor(ctor)[0] not in api.SEQUENTIAL:
                return None
            layers = self.layers(ctor)
            if layers is None or any(item.conditional for item in layers) or not -len(layers) <= position < len(layers):
                return None
            position %= len(layers)
            kind, _ = self.values.constructor(layers[position].value)
            if kind is None:
                return None
            hidden = any(self.weight_layer_count(later.value) for later in layers[position + 1:])
            return LayerPosition(kind, hidden, "nn.Sequential", ctor.expr)
        if not isinstance(layer, cst.Attribute):
            return None
        ctor = self.module_instance(layer.value, scope, order)
        klass = self.values.constructor(ctor)[1] if ctor is not None else None
        if klass is None or not self.is_module_class(klass):
            return None
        attr = layer.attr.value
        assigns = [a for a in self.values.self_attr_assigns(klass, attr) if a.value is not None]
        if len(assigns) != 1:
            return None
        modules = self.module_values(assigns[0].value, assigns[0].scope, assigns[0].order)
        kind = self.values.constructor(modules[0])[0] if len(modules) == 1 else None
        if kind is None or not self._called_in_class(klass, attr):
            return None
        finals = self.final_layer_attrs(klass)
        if not finals:
            return None
        return LayerPosition(kind, attr not in finals, klass.name, assigns[0].node)

    def _called_in_class(self, klass: ClassInfo, attr: str) -> bool:
        wanted = f"self.{attr}"
        for cls in self.values.local_bases(klass):
            for method in cls.methods.values():
                for scope in [method.scope] + list(method.scope.children):
                    if any(c.dotted == wanted for c in scope.calls):
                        return True
        return False

    def submodules_iterated(self, name: str, call: CallSite, _depth: int = 0) -> List[Value]:
        """The modules whose submodules the variable ``name`` ranges over
        at ``call``, each as its expression where it is iterated:
        ``for m in model.modules()`` (``named_modules``, ``children``,
        ``named_children``), ``for m in model`` over a container, a
        parameter of a function applied with
        ``model.apply(fn)``/``self.apply(self._init)``, or of a function
        called with such a loop's variable (``for m in self.modules():
        init(m)``)."""
        bindings = self.index.lookup(name, call.scope, call.order)
        if len(bindings) != 1 or _depth > 3:
            return []
        binding = bindings[0]
        if binding.kind == "for":
            owner = _submodule_loop_owner(binding)
            if owner is None:  # ``for layer in model:`` over an nn.Sequential/ModuleList
                container = self._iterated_container(binding)
                owner = container[0] if container is not None else None
            return [Value(owner, binding.scope, binding.order)] if owner is not None else []
        function = self.index.enclosing_function(call.scope)
        if binding.kind != "param" or function is None or function.scope is not binding.scope:
            return []
        out = []
        for apply in self.index.method_calls("apply"):
            arg = apply.arg(0)
            if apply.receiver is None or not isinstance(arg, (cst.Name, cst.Attribute)):
                continue
            if self.values.local_function(Value(cst.Call(func=arg), apply.scope, apply.order)) is function:
                out.append(Value(apply.receiver, apply.scope, apply.order))
        positional = [n for n, _ in function.positional_params()]
        position = positional.index(name) if name in positional else None
        for caller in self.values.callers(function):
            arg = caller.arg(position, name)
            if isinstance(arg, cst.Name) and caller.scope is not function.scope:
                out.extend(self.submodules_iterated(arg.value, caller, _depth + 1))
        return out

    def parameters_iterated(self, name: str, call: CallSite) -> Optional[Tuple[Value, cst.For]]:
        """For ``p`` at ``call`` in ``for p in model.parameters()`` (or
        ``for n, p in model.named_parameters()``): the module, as its
        expression where it is iterated, and the loop."""
        bindings = self.index.lookup(name, call.scope, call.order)
        if len(bindings) != 1 or bindings[0].kind != "for":
            return None
        binding = bindings[0]
        iterable = binding.value
        if not (
            isinstance(iterable, cst.Call)
            and isinstance(iterable.func, cst.Attribute)
            and not any(a.keyword is not None and a.keyword.value != "recurse" for a in iterable.args)
        ):
            return None
        method = iterable.func.attr.value
        if (method, binding.unpack) not in (("parameters", ()), ("named_parameters", (1,))):
            return None
        return Value(iterable.func.value, binding.scope, binding.order), binding.node

    def weights_restored(self, owner: Value) -> bool:
        """``owner.load_state_dict(...)`` is called in this module: its
        initial weights are a placeholder."""
        dotted = dotted_name(owner.expr)
        return dotted is not None and any(
            dotted_name(c.receiver) == dotted for c in self.index.method_calls("load_state_dict")
        )

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



def subscript_int(node: cst.Subscript) -> Optional[int]:
    """``3`` for ``x[3]``, ``-1`` for ``x[-1]``; None for other subscripts."""
    if len(node.slice) != 1 or not isinstance(node.slice[0].slice, cst.Index):
        return None
    return int_value(node.slice[0].slice.value)


#: ``for m in model.modules()`` and its spellings: the loop target's path.
_SUBMODULE_ITERATORS = {"modules": (), "children": (), "named_modules": (1,), "named_children": (1,)}


def _submodule_loop_owner(binding) -> Optional[cst.BaseExpression]:
    iterable = binding.value
    if (
        isinstance(iterable, cst.Call)
        and isinstance(iterable.func, cst.Attribute)
        and _SUBMODULE_ITERATORS.get(iterable.func.attr.value) == binding.unpack
    ):
        return iterable.func.value
    return None
