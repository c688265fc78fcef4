"""Values: what an expression may hold, within one module.

The questions every domain asks first: which expressions may ``x`` hold here
(through assignments, tuple unpacking, ``self.<attr>`` and function
parameters traced to this module's call sites), what a call constructs,
which local function a call runs, and the classes of this module. Bounded
(depth and cycle guards) and memoised, so domains and rules can ask freely.
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
    child_nodes,
    dotted_name,
    int_value,
)

MAX_DEPTH = 12


class Value(NamedTuple):
    """An expression together with where it is evaluated."""

    expr: cst.BaseExpression
    scope: Scope
    order: int


_ITERATION_WRAPPERS = frozenset({"enumerate", "tqdm", "iter", "zip", "trange_iter", "track", "progress_bar"})

#: Parameters bound to the definitions of a call's arguments, by binding id.
Bound = Dict[int, Tuple[Value, ...]]


class Values:
    def __init__(self, index: ModuleIndex):
        self.index = index

    def definitions(
        self, expr: cst.BaseExpression, scope: Scope, order: int, _depth: int = 0, bound: Optional["Bound"] = None
    ) -> List[Value]:
        """The expressions whose value ``expr`` may hold.

        Names, ``self.<attr>`` and attributes of instances of this module's
        classes (``trainer.model``, ``net.fc``) are followed, and so is
        tuple unpacking (``enc, dec = pair`` where ``pair`` holds a tuple);
        any other expression is its own definition, and so is ``self`` in a
        method (an instance of its class, see :meth:`constructor`).
        Unknowable values (loop targets, ``*args``) yield nothing, so
        callers treat "no definitions" as "unknown". Calls are not entered:
        :meth:`call_results` says what a local function returns.
        """
        if _depth > MAX_DEPTH:
            return []
        if isinstance(expr, cst.Name):
            out: List[Value] = []
            bindings = self.index.lookup(expr.value, scope, order) or self.index.star_bindings(expr.value, scope)
            for binding in bindings:
                out.extend(self._binding_values(binding, _depth + 1, bound))
            return out or ([Value(expr, scope, order)] if not bindings else [])
        if isinstance(expr, cst.Attribute) and isinstance(expr.value, cst.Name) and expr.value.value == "self":
            klass = self.enclosing_class(scope)
            if klass is not None:
                out = []
                for assign in self.self_attr_assigns(klass, expr.attr.value):
                    if assign.value is not None:
                        out.extend(self.definitions(assign.value, assign.scope, assign.order, _depth + 1))
                return out
        if isinstance(expr, cst.Attribute) and scope.index.imports is not None:
            target = self.index.imported_symbol(expr, scope, order)
            if target is not None and target[1] is not None:  # ``utils.criterion``
                return self._imported_values(*target, _depth + 1)
        if isinstance(expr, cst.Attribute) and isinstance(expr.value, (cst.Name, cst.Attribute)):
            found = self._instance_attribute(expr, scope, order, _depth + 1, bound)
            if found is not None:
                return found
        return [Value(expr, scope, order)]

    def _instance_attribute(
        self, expr: cst.Attribute, scope: Scope, order: int, depth: int, bound: Optional["Bound"] = None
    ) -> Optional[List[Value]]:
        """``trainer.model`` where ``trainer`` is certainly an instance of a
        class of this module that sets ``self.model``: that value. None when
        the owner is not visibly such an instance."""
        owners = self.definitions(expr.value, scope, order, depth, bound)
        klass = None
        for owner in owners:
            owner = self.strip_value_preserving(owner)
            if owner.expr is expr.value:
                return None  # not followed any further: unknown
            _, found = self.constructor(owner)
            if found is None or (klass is not None and found is not klass):
                return None
            klass = found
        if klass is None:
            return None
        assigns = [a for a in self.self_attr_assigns(klass, expr.attr.value) if a.value is not None]
        if not assigns:
            return None
        out: List[Value] = []
        for assign in assigns:
            out.extend(self.definitions(assign.value, assign.scope, assign.order, depth))
        return out

    def _binding_values(self, binding: Binding, depth: int, bound: Optional["Bound"] = None) -> List[Value]:
        if binding.kind in ("assign", "annassign", "walrus") and binding.value is not None:
            whole = Value(binding.value, binding.scope, binding.order)
            return self.select([whole], binding.unpack, depth, bound) or []
        if binding.kind == "param":
            if bound is not None and id(binding) in bound:
                return list(bound[id(binding)])
            if self.receiver_class(binding) is not None:
                return [Value(binding.node.name, binding.scope, binding.order)]  # ``self``: see constructor()
            return self._parameter_values(binding, depth)
        if binding.kind == "import":
            target = self.index.imported(binding)
            if target is not None and target[1] is not None:
                # ``from config import criterion``: its definition in that module
                return self._imported_values(*target, depth)
        if binding.kind in ("import", "def", "class"):
            return [Value(cst.Name(binding.name), binding.scope, binding.order)]
        return []

    def _imported_values(self, module: ModuleIndex, name: Optional[str], depth: int) -> List[Value]:
        """What ``name`` holds in another module of the project."""
        bindings = module.module_scope.bindings.get(name or "")
        return self._binding_values(bindings[-1], depth) if bindings else []

    def select(
        self, values: List[Value], path: Tuple[int, ...], _depth: int = 0, bound: Optional["Bound"] = None
    ) -> Optional[List[Value]]:
        """The definitions of element ``path`` of the tuples ``values`` hold
        (``a, (b, c) = v`` binds ``c`` to element ``(1, 1)``), through names
        that hold tuple literals. None when some value is not visibly a
        tuple with that element (a call's result, a starred element)."""
        out: List[Value] = []
        for value in values:
            if not path:
                out.extend(self.definitions(value.expr, value.scope, value.order, _depth, bound))
                continue
            expr = value.expr
            if isinstance(expr, (cst.Name, cst.Attribute)):
                inner = self.definitions(expr, value.scope, value.order, _depth + 1, bound)
                if not inner or any(v.expr is expr for v in inner):
                    return None
                found = self.select(inner, path, _depth + 1, bound)
            elif isinstance(expr, (cst.Tuple, cst.List)):
                elements = expr.elements
                if path[0] >= len(elements) or any(isinstance(e, cst.StarredElement) for e in elements[: path[0] + 1]):
                    return None
                element = Value(elements[path[0]].value, value.scope, value.order)
                found = self.select([element], path[1:], _depth + 1, bound)
            else:
                return None
            if found is None:
                return None
            out.extend(found)
        return out

    def unpacked_from(self, expr: cst.BaseExpression, scope: Scope, order: int) -> Optional[Tuple[Value, Tuple[int, ...]]]:
        """For a name bound by unpacking a value that is not a visible tuple
        (``validity, label = D(x)``, ``enc, dec = build()``): that value
        and the index path of the name's element, so that a domain that
        knows what the call returns can pick it. None otherwise."""
        if not isinstance(expr, cst.Name):
            return None
        bindings = self.index.lookup(expr.value, scope, order)
        if len(bindings) != 1:
            return None
        binding = bindings[0]
        if binding.kind not in ("assign", "annassign") or not binding.unpack or binding.value is None:
            return None
        value, path = Value(binding.value, binding.scope, binding.order), binding.unpack
        for _ in range(MAX_DEPTH):
            expr = value.expr
            if isinstance(expr, (cst.Tuple, cst.List)):
                if path[0] >= len(expr.elements) or isinstance(expr.elements[path[0]], cst.StarredElement):
                    return None
                value, path = Value(expr.elements[path[0]].value, value.scope, value.order), path[1:]
                if not path:
                    return None  # a visible element: definitions() follows it
                continue
            if isinstance(expr, cst.Name):
                inner = self.definitions(expr, value.scope, value.order)
                if len(inner) != 1 or inner[0].expr is expr:
                    return None
                value = inner[0]
                continue
            return (value, path) if isinstance(expr, cst.Call) else None
        return None

    def local_function(self, call: Value) -> Optional[FunctionInfo]:
        """The function of this module a call expression runs: ``f(...)``
        or ``self.method(...)`` (not a class instantiation); also one of a
        project module it imports (``f`` imported, ``utils.f(...)``)."""
        expr = call.expr
        if not isinstance(expr, cst.Call):
            return None
        func = expr.func
        if isinstance(func, cst.Name):
            return self.index.function_named(func.value, call.scope, call.order)
        if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value == "self":
            klass = self.enclosing_class(call.scope)
            return self.method_of(klass, func.attr.value) if klass is not None else None
        if isinstance(func, cst.Attribute) and call.scope.index.imports is not None:
            target = self.index.imported_symbol(func, call.scope, call.order)
            if target is not None and target[1] is not None:
                module, name = target
                return module.function_named(name, module.module_scope)
        return None

    def call_results(self, call: Value, path: Tuple[int, ...] = ()) -> Optional[List[Value]]:
        """What a call of a local function returns (factories:
        ``model = build_model()``, ``get_model(name)`` with one return per
        model): the definitions of every return statement's value, element
        ``path`` of a returned tuple, with the function's parameters bound
        to this call's arguments (:meth:`arguments`). None when the callee
        is not a local function (class instantiations included) or some
        return is bare or not visible."""
        function = self.local_function(call)
        return self.function_results(function, call, path) if function is not None else None

    def function_results(self, function: FunctionInfo, call: Value, path: Tuple[int, ...] = ()) -> Optional[List[Value]]:
        """:meth:`call_results` for a known callee (a module's ``forward``
        run by ``model(x)``)."""
        cache = self.__dict__.setdefault("_results_cache", {})
        key = (id(function), call.expr, path)
        if key in cache:
            return cache[key]
        cache[key] = None  # a recursive factory: unknown
        out: Optional[List[Value]] = None
        if function.returns and all(ret.value is not None for ret, _ in function.returns):
            bound = self.arguments(function, call)
            out = []
            for ret, order in function.returns:
                found = self.select([Value(ret.value, function.scope, order)], path, 1, bound)
                if found is None:
                    out = None
                    break
                out.extend(found)
        cache[key] = out
        return out

    def arguments(self, function: FunctionInfo, call: Value) -> "Bound":
        """The definitions of what ``call`` passes for each parameter of
        ``function`` (its default when nothing is passed), keyed by the
        parameter's binding: pass it as ``bound`` to :meth:`definitions`
        to read the function's values for this call alone."""
        positional = [name for name, _ in function.positional_params()]
        bound: Bound = {}
        for binding_list in function.scope.bindings.values():
            for binding in binding_list:
                if binding.kind != "param" or self.receiver_class(binding) is not None:
                    continue
                position = positional.index(binding.name) if binding.name in positional else None
                arg = call_arg(call.expr, position, binding.name)
                if arg is not None:
                    bound[id(binding)] = tuple(self.definitions(arg, call.scope, call.order))
                elif any(a.star for a in call.expr.args):
                    continue  # may come in *args/**kwargs: every caller's, as usual
                elif isinstance(binding.node, cst.Param) and binding.node.default is not None:
                    outer = function.scope.parent or self.index.module_scope
                    bound[id(binding)] = tuple(self.definitions(binding.node.default, outer, binding.order))
        return bound

    def receiver_class(self, binding: Binding) -> Optional[ClassInfo]:
        """The class of which ``binding`` is the ``self`` parameter (the
        first parameter of a method that is neither a static nor a class
        method), else None."""
        if binding.kind != "param":
            return None
        function = binding.scope.function
        if function is None or not function.is_method or not function.params:
            return None
        name, param, kind = function.params[0]
        if param is not binding.node or kind != "pos":
            return None
        for decorator in function.node.decorators:
            if dotted_name(decorator.decorator) in ("staticmethod", "classmethod"):
                return None
        return function.klass

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
        """Call sites that call ``function`` by name: in its own module, in
        this module, and (for a function other modules can import) in the
        modules of the project that import its module."""
        home = function.scope.index
        out: List[CallSite] = []
        for index in self.modules_using(home, _importable(function)):
            if index is self.index:
                out.extend(self._callers_here().get(function, ()))
            else:
                out.extend(c for c in self._calls_named(index, function) if self.local_callee(c) is function)
        return out

    def modules_using(self, home: ModuleIndex, importable: bool = True) -> List[ModuleIndex]:
        """The modules whose calls may reach ``home``'s functions and classes:
        ``home``, the analysed module, and the project's modules importing
        ``home`` (when a project is known)."""
        cache = self.__dict__.setdefault("_modules_using", {})
        key = (id(home), importable)
        if key not in cache:
            out = [home]
            if self.index is not home:
                out.append(self.index)
            if importable and home.imports is not None:
                for other in home.imports.importers(home):
                    if all(other is not known for known in out):
                        out.append(other)
            cache[key] = out
        return cache[key]

    def _callers_here(self) -> Dict[FunctionInfo, List[CallSite]]:
        """Every call of this module by the function it runs."""
        table = self.__dict__.get("_callers")
        if table is None:
            table = self.__dict__["_callers"] = {}
            for call in self.index.calls:
                target = self.local_callee(call)
                if target is not None:
                    table.setdefault(target, []).append(call)
        return table

    def _calls_named(self, index: ModuleIndex, function: FunctionInfo) -> List[CallSite]:
        """The calls of another module that may run ``function``: those
        spelling its name (its class's for ``__init__``), or a name it is
        imported as there. Only these are resolved."""
        name = function.name
        if name == "__init__" and function.klass is not None:
            name = function.klass.name
        names = {name, *index.names_importing(name)}
        return [call for alias in names for call in index.calls_spelling(alias)]

    def local_callee(self, call: CallSite) -> Optional[FunctionInfo]:
        """The function ``call`` invokes, if visible: one of this module, or
        of a module of the project it imports (``evaluate(...)`` after
        ``from utils import evaluate``, ``utils.evaluate(...)``);
        ``Trainer(model)`` runs ``Trainer.__init__``."""
        # Asked again and again (callers, forwards, effects): resolved once
        # per call site (the node is kept so that its id stays unique).
        cache = self.__dict__.setdefault("_callee_cache", {})
        known = cache.get(id(call.node))
        if known is not None and known[0] is call.node:
            return known[1]
        function = self.local_function(Value(call.node, call.scope, call.order))
        func = call.node.func
        if function is None and isinstance(func, (cst.Name, cst.Attribute)):
            klass = self.class_of(func, call.scope, call.order)
            if klass is not None:
                function = self.method_of(klass, "__init__")
        cache[id(call.node)] = (call.node, function)
        return function

    def from_project(self, call: CallSite) -> bool:
        """The callee is a name imported from a module of the project
        (``criterion`` after ``from config import criterion``): analysed like
        a local name, not as a third-party API, although it has a qualname."""
        return call.scope.index.imports is not None and self.index.imported_symbol(call.node.func, call.scope, call.order) is not None

    def class_of(self, expr: cst.BaseExpression, scope: Scope, order: Optional[int] = None) -> Optional[ClassInfo]:
        """The class a name or dotted name refers to: one of this module
        (``Net``) or of a project module (``Net`` imported, ``models.Net``)."""
        if isinstance(expr, cst.Name):
            return self.index.class_named(expr.value, scope, order)
        if isinstance(expr, cst.Attribute) and scope.index.imports is not None:
            target = self.index.imported_symbol(expr, scope, order)
            if target is not None and target[1] is not None:
                module, name = target
                return module.class_named(name, module.module_scope)
        return None

    def local_bases(self, klass: ClassInfo, _seen: Optional[Set[int]] = None) -> Iterator[ClassInfo]:
        """``klass`` and its base classes defined in this module, MRO-ish."""
        seen = _seen if _seen is not None else set()
        if id(klass) in seen:
            return
        seen.add(id(klass))
        yield klass
        for base in klass.bases:
            parent = self.class_of(base, klass.scope.parent or klass.scope.index.module_scope)
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

    def constructor(self, value: Value) -> Tuple[Optional[str], Optional[ClassInfo]]:
        """For ``Net(...)``/``nn.Linear(...)``: the torch qualname or local
        class; for ``self`` in a method: its class."""
        expr = value.expr
        if isinstance(expr, cst.Name):
            bindings = self.index.lookup(expr.value, value.scope, value.order)
            if len(bindings) == 1:
                return None, self.receiver_class(bindings[0])
            return None, None
        if not isinstance(expr, cst.Call):
            return None, None
        qualname = self.index.qualname_of(expr.func, value.scope, value.order)
        if qualname is not None:
            if value.scope.index.imports is not None and not qualname.startswith("torch."):
                klass = self.class_of(expr.func, value.scope, value.order)  # a class of another project module
                if klass is not None:
                    return None, klass
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
        for call in self.instances_of(klass):
            arg = call_arg(call.node, position, param)
            if arg is not None:
                out.append(Value(arg, call.scope, call.order))
        return out

    def instances_of(self, klass: ClassInfo) -> List[CallSite]:
        """Calls that construct ``klass`` (by its name): in its module, in this
        module, and in the project's modules importing its module."""
        out = []
        for index in self.modules_using(klass.scope.index, klass.scope.parent is klass.scope.index.module_scope):
            for call in index.calls:
                func = call.node.func
                if isinstance(func, (cst.Name, cst.Attribute)) and self.class_of(func, call.scope, call.order) is klass:
                    out.append(call)
        return out

    def bound_names(self, node: cst.CSTNode, scope: Scope) -> List[str]:
        """Names (and ``self.<attr>`` attributes) the value ``node`` is
        assigned to: ``train_loader = DataLoader(...)`` -> ``train_loader``."""
        out = []
        for name, bindings in scope.bindings.items():
            if any(b.value is node and not b.unpack for b in bindings):
                out.append(name)
        for assign in scope.index.attr_assigns:
            if assign.value is node:
                out.append(assign.attr)
        return out

    def loop_item(self, binding: Binding) -> Optional[Tuple[cst.BaseExpression, Tuple[int, ...]]]:
        """For a name bound by a ``for`` loop: what the loop iterates, seen
        through the builtin ``enumerate``, and the name's unpacking path
        within one item (``for i, (x, y) in enumerate(loader)``: ``loader``
        and ``(0,)`` for ``x``). None for ``enumerate``'s counter and for
        names not bound by a loop."""
        if binding.kind != "for" or binding.value is None:
            return None
        iterable, path = binding.value, binding.unpack
        if (
            isinstance(iterable, cst.Call)
            and isinstance(iterable.func, cst.Name)
            and iterable.func.value == "enumerate"
            and iterable.args
            and self.index.qualname_of(iterable.func, binding.scope, binding.order) is None
        ):
            if path[:1] != (1,):
                return None
            iterable, path = iterable.args[0].value, path[1:]
        return iterable, path

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

    def enclosing_blocks(self, call: CallSite) -> Tuple[Tuple[cst.CSTNode, str], ...]:
        """The compound statements around ``call`` in its own scope,
        outermost first, each with the branch the call is in (``body`` or
        ``orelse``): ``((For, "body"), (If, "orelse"))``. Walks only the
        scope's own statements, once per scope."""
        return self.blocks_around(call.node, call.scope)

    def blocks_around(self, node: cst.CSTNode, scope: Scope) -> Tuple[Tuple[cst.CSTNode, str], ...]:
        """:meth:`enclosing_blocks` for a call or an assignment statement
        (``Assign``, ``AugAssign``, ``AnnAssign``) of ``scope``."""
        cache = self.__dict__.setdefault("_blocks_cache", {})
        key = id(scope)
        if key not in cache:
            table: Dict[int, Tuple[Tuple[cst.CSTNode, str], ...]] = {}
            root = scope.node
            body = root.body if isinstance(root, cst.Module) else getattr(getattr(root, "body", None), "body", ())
            for statement in body:
                _record_blocks(statement, (), table)
            cache[key] = table
        return cache[key].get(id(node), ())

    def enclosing_class(self, scope: Scope) -> Optional[ClassInfo]:
        function = self.index.enclosing_function(scope)
        return function.klass if function is not None else None

    def functions_run_by(self, call: CallSite) -> List[FunctionInfo]:
        """Local functions a call runs: its callee, and the closure passed to
        ``optimizer.step(closure)``. (Functions handed to ``rpc_async``,
        threads or ``Engine(update)`` run elsewhere, not per iteration.)"""
        reached = []
        callee = self.local_callee(call)
        if callee is not None:
            reached.append(callee)
        if call.method != "step":
            return reached
        for arg in call.node.args:
            if isinstance(arg.value, cst.Name):
                function = self.index.function_named(arg.value.value, call.scope, call.order)
                if function is not None:
                    reached.append(function)
        return reached

    def same_object(self, a: cst.BaseExpression, a_call: CallSite, b: cst.BaseExpression, b_call: CallSite) -> bool:
        """Whether two expressions (evaluated at two calls) visibly denote the
        same object: the same dotted name in the same scope, or a common
        definition (``optimizer`` built in ``main()`` and passed as a parameter)."""
        da, db = dotted_name(a), dotted_name(b)
        if da is not None and da == db and a_call.scope is b_call.scope:
            return True
        defs_a = {id(v.expr) for v in self.definitions(a, a_call.scope, a_call.order)}
        defs_b = {id(v.expr) for v in self.definitions(b, b_call.scope, b_call.order)}
        return bool(defs_a & defs_b)

    def guarded_types(self, call: CallSite, name: str, candidates: FrozenSet[str]) -> Optional[FrozenSet[str]]:
        """The types (qualified names; "?" when not an imported name) that
        ``name`` is narrowed to by the innermost ``if`` around ``call`` (in its
        body): ``if isinstance(m, (nn.Linear, nn.Conv2d)):``, or DCGAN's
        ``if m.__class__.__name__.find("Conv") != -1:`` (the ``candidates``
        whose class name contains the word). None when that ``if`` tests
        something else, or there is none."""
        index = self.index
        for node, branch in reversed(self.enclosing_blocks(call)):
            if not isinstance(node, cst.If):
                continue
            test = node.test
            if (
                branch == "body"
                and isinstance(test, cst.Call)
                and dotted_name(test.func) == "isinstance"
                and len(test.args) == 2
                and isinstance(test.args[0].value, cst.Name)
                and test.args[0].value.value == name
            ):
                types = test.args[1].value
                elements = [e.value for e in types.elements] if isinstance(types, (cst.Tuple, cst.List)) else [types]
                return frozenset(index.qualname_of(e, call.scope, call.order) or "?" for e in elements)
            if branch == "body":
                kinds = self._classname_guard(call, test, name, candidates)
                if kinds is not None:
                    return kinds
                return None  # a further filter (``if m is self.out``, ``if name.startswith("head")``)
        return None


    def _classname_guard(self, call: CallSite, test, name: str, candidates: FrozenSet[str]) -> Optional[FrozenSet[str]]:
        """DCGAN style: ``classname = m.__class__.__name__`` and
        ``if classname.find("Conv") != -1`` (or ``"Linear" in classname``,
        joined with ``or``): the layer kinds whose class name contains it."""
        if isinstance(test, cst.BooleanOperation):
            if not isinstance(test.operator, cst.Or):
                return None
            left = self._classname_guard(call, test.left, name, candidates)
            right = self._classname_guard(call, test.right, name, candidates)
            return left | right if left is not None and right is not None else None
        if not isinstance(test, cst.Comparison) or len(test.comparisons) != 1:
            return None
        comparison = test.comparisons[0]
        word = subject = None
        if isinstance(comparison.operator, cst.In) and isinstance(test.left, cst.SimpleString):
            word, subject = test.left.evaluated_value, comparison.comparator
        elif (
            isinstance(comparison.operator, cst.NotEqual)
            and int_value(comparison.comparator) == -1
            and isinstance(test.left, cst.Call)
            and isinstance(test.left.func, cst.Attribute)
            and test.left.func.attr.value == "find"
            and test.left.args
            and isinstance(test.left.args[0].value, cst.SimpleString)
        ):
            word, subject = test.left.args[0].value.evaluated_value, test.left.func.value
        if not isinstance(word, str) or not word or subject is None:
            return None
        if isinstance(subject, cst.Name):
            values = self.definitions(subject, call.scope, call.order)
            if len(values) != 1:
                return None
            subject = values[0].expr
        if dotted_name(subject) not in (f"{name}.__class__.__name__",) and not (
            isinstance(subject, cst.Attribute)
            and subject.attr.value == "__name__"
            and isinstance(subject.value, cst.Call)
            and dotted_name(subject.value.func) == "type"
        ):
            return None
        kinds = frozenset(q for q in candidates if word in q.rsplit(".", 1)[-1])
        return kinds or None


def _importable(function: FunctionInfo) -> bool:
    """A module-level function or a method of a module-level class: other
    modules can import it and call it."""
    parent = function.scope.parent
    if parent is not None and parent.kind == "class":
        parent = parent.parent
    return parent is not None and parent.kind == "module"


def _record_blocks(root: cst.CSTNode, chain: Tuple, table: Dict) -> None:
    """For :meth:`Values.blocks_around`: map every call and assignment under ``root``
    (not inside nested functions or classes) to its chain of blocks."""
    stack = [(root, chain)]
    while stack:
        node, chain = stack.pop()
        if isinstance(node, (cst.FunctionDef, cst.ClassDef)):
            continue
        if isinstance(node, (cst.Call, cst.Assign, cst.AugAssign, cst.AnnAssign)):
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

