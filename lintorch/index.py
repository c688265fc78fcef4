"""One walk over a libcst tree that records everything rules ask about.

The walk is the engine's only traversal of the tree. Instead of dispatching
``visit_*`` methods to every rule at every node (libcst's visitor machinery
rebuilds each node it visits and costs about as much as the parse), it goes
over dataclass fields directly and records, in statement order:

* scopes (module, class, function) and their name bindings,
* imports, as bindings whose value is a qualified name,
* every call, with its scope, innermost loop and enclosing ``with`` items,
* every assignment to an attribute (``self.fc = ...``, ``p.grad = None``) or an
  item (``state[key] = ...``),
* loops, functions and classes.

These are syntax facts only: what each value *is* (a model, a loader, an
evaluation pass) is the semantic model's business (``lintorch.analysis``
and ``lintorch.analyze``), built on this index and never imported by it.
Nothing walks the tree again.
"""

import dataclasses
import typing
from typing import Dict, FrozenSet, Iterator, List, Optional, Sequence, Tuple, Union

import libcst as cst

from lintorch.torchapi import canonical

Loop = Union[cst.For, cst.While]
_UNSET = object()
OTHER_FRAMEWORKS = frozenset(
    {"mxnet", "tensorflow", "keras", "jax", "flax", "paddle", "mindspore", "oneflow", "chainer", "tf_keras"}
)
#: The conventional names of torch modules (see ``_unbound_torch_aliases``).
_TORCH_ALIASES = {"nn": "torch.nn", "F": "torch.nn.functional", "optim": "torch.optim"}


class Binding:
    """A name bound in a scope: by assignment, parameter, import, loop, etc."""

    __slots__ = ("name", "kind", "value", "node", "order", "scope", "unpack", "qualname")

    def __init__(self, name, kind, value, node, order, scope, unpack=(), qualname=None):
        self.name: str = name
        #: assign | augassign | annassign | param | import | for | with | def | class | walrus | except | other
        self.kind: str = kind
        #: The bound expression (the right-hand side, the iterable of a
        #: ``for``, the context manager of a ``with``), or None.
        self.value: Optional[cst.BaseExpression] = value
        self.node: cst.CSTNode = node
        self.order: int = order
        self.scope: "Scope" = scope
        #: Index path into the value for tuple targets: ``a, (b, c) = v``
        #: binds c with unpack (1, 1).
        self.unpack: Tuple[int, ...] = unpack
        #: For imports, the qualified name bound (``torch.nn``).
        self.qualname: Optional[str] = qualname

    def __repr__(self) -> str:
        return f"<Binding {self.kind} {self.name} @{self.order}>"


class Scope:
    __slots__ = ("kind", "node", "name", "parent", "bindings", "calls", "children", "function", "klass", "index")

    def __init__(self, kind, node, name, parent, index):
        self.kind: str = kind  # module | class | function
        self.node: cst.CSTNode = node
        self.name: str = name
        self.parent: Optional[Scope] = parent
        #: The module the scope belongs to: name resolution from a scope
        #: uses that module's tables, so a value found in another module of
        #: the project is resolved in its own module.
        self.index: "ModuleIndex" = index
        self.bindings: Dict[str, List[Binding]] = {}
        self.calls: List["CallSite"] = []
        self.children: List[Scope] = []
        self.function: Optional["FunctionInfo"] = None
        self.klass: Optional["ClassInfo"] = None

    def __repr__(self) -> str:
        return f"<Scope {self.kind} {self.name}>"

    def with_descendants(self) -> List["Scope"]:
        """This scope and every scope nested in it (closures, methods)."""
        out = [self]
        stack = list(self.children)
        while stack:
            child = stack.pop()
            out.append(child)
            stack.extend(child.children)
        return out


class LoopInfo:
    __slots__ = ("node", "scope", "parent", "order", "calls", "attr_assigns", "children")

    def __init__(self, node, scope, parent, order):
        self.node: Loop = node
        self.scope: Scope = scope
        self.parent: Optional[LoopInfo] = parent
        self.order: int = order
        #: Calls anywhere inside the loop (nested loops and nested defs too).
        self.calls: List[CallSite] = []
        self.attr_assigns: List[AttrAssign] = []
        self.children: List[LoopInfo] = []

    def ancestors(self) -> Iterator["LoopInfo"]:
        loop = self.parent
        while loop is not None:
            yield loop
            loop = loop.parent

    def contains(self, other: "LoopInfo") -> bool:
        return other is self or any(a is self for a in other.ancestors())


class CallSite:
    __slots__ = ("node", "dotted", "method", "scope", "loop", "order", "with_items", "_index", "_qualname")

    def __init__(self, node, dotted, method, scope, loop, order, with_items, index):
        self.node: cst.Call = node
        #: ``optimizer.step`` for ``optimizer.step()``; None when the callee
        #: is not a plain name/attribute chain (``f()()``, ``a[0]()``).
        self.dotted: Optional[str] = dotted
        #: The attribute called, for method calls (``step``), else None.
        self.method: Optional[str] = method
        self.scope: Scope = scope
        self.loop: Optional[LoopInfo] = loop
        self.order: int = order
        #: The ``with`` items enclosing the call in its own function, outermost first.
        self.with_items: Tuple[cst.WithItem, ...] = with_items
        self._index: "ModuleIndex" = index
        self._qualname: object = _UNSET

    @property
    def receiver(self) -> Optional[cst.BaseExpression]:
        func = self.node.func
        return func.value if isinstance(func, cst.Attribute) else None

    @property
    def qualname(self) -> Optional[str]:
        """Canonical qualified name of the callee, when it comes from an import."""
        if self._qualname is _UNSET:
            self._qualname = self._index.qualname_of(self.node.func, self.scope, self.order)
        return self._qualname

    def arg(self, position: Optional[int], keyword: Optional[str] = None) -> Optional[cst.BaseExpression]:
        return call_arg(self.node, position, keyword)

    @property
    def expects_exception(self) -> bool:
        """Inside ``with pytest.raises(...)`` / ``self.assertRaises(...)``:
        a test that the call fails, not a bug."""
        for item in self.with_items:
            manager = item.item
            if isinstance(manager, cst.Call):
                name = dotted_name(manager.func) or ""
                last = name.rsplit(".", 1)[-1]
                if last in ("raises", "assertRaises", "assertRaisesRegex", "assertRaisesRegexp"):
                    return True
        return False

    def __repr__(self) -> str:
        return f"<CallSite {self.dotted} @{self.order}>"


class AttrAssign:
    __slots__ = ("target", "attr", "value", "scope", "loop", "order", "node")

    def __init__(self, target, value, scope, loop, order, node):
        self.target: cst.Attribute = target
        self.attr: str = target.attr.value
        self.value: Optional[cst.BaseExpression] = value
        self.scope: Scope = scope
        self.loop: Optional[LoopInfo] = loop
        self.order: int = order
        self.node: cst.CSTNode = node


class ItemAssign:
    """``x[key] = value`` (``state_dict()["fc.weight"][:] = 1.0``)."""

    __slots__ = ("target", "value", "scope", "order", "node")

    def __init__(self, target, value, scope, order, node):
        self.target: cst.Subscript = target
        self.value: Optional[cst.BaseExpression] = value
        self.scope: Scope = scope
        self.order: int = order
        self.node: cst.CSTNode = node


@dataclasses.dataclass(eq=False)
class FunctionInfo:
    node: cst.FunctionDef
    name: str
    scope: Scope  # the function's own scope
    klass: Optional["ClassInfo"]
    params: List[Tuple[str, cst.Param, str]]  # (name, node, kind: pos|kwonly|star|starstar)
    returns: List[Tuple[cst.Return, int]] = dataclasses.field(default_factory=list)

    @property
    def is_method(self) -> bool:
        return self.klass is not None and self.scope.parent is self.klass.scope

    def positional_params(self) -> List[Tuple[str, cst.Param]]:
        params = [(n, p) for n, p, kind in self.params if kind == "pos"]
        if self.is_method and not _is_staticmethod(self.node) and params:
            params = params[1:]  # self / cls
        return params


@dataclasses.dataclass(eq=False)
class ClassInfo:
    node: cst.ClassDef
    name: str
    scope: Scope
    bases: List[cst.BaseExpression]
    methods: Dict[str, FunctionInfo] = dataclasses.field(default_factory=dict)
    #: ``self.<attr> = value`` assignments made in the class's methods.
    self_attrs: Dict[str, List[AttrAssign]] = dataclasses.field(default_factory=dict)


def _import_chain(binding: Binding, rest: str) -> Optional[str]:
    """``torch.nn.Linear`` for ``nn.Linear`` (``rest``: ``Linear``) when
    ``nn`` is bound by ``import torch.nn as nn``; None for other bindings."""
    if binding.kind != "import" or binding.qualname is None:
        return None
    return binding.qualname + ("." + rest if rest else "")


def _is_staticmethod(node: cst.FunctionDef) -> bool:
    return any(
        isinstance(d.decorator, cst.Name) and d.decorator.value == "staticmethod" for d in node.decorators
    )


def dotted_name(node: cst.CSTNode) -> Optional[str]:
    """``a.b.c`` for Name/Attribute chains, else None."""
    parts = []
    while isinstance(node, cst.Attribute):
        parts.append(node.attr.value)
        node = node.value
    if isinstance(node, cst.Name):
        parts.append(node.value)
        return ".".join(reversed(parts))
    return None


def call_arg(call: cst.Call, position: Optional[int], keyword: Optional[str] = None) -> Optional[cst.BaseExpression]:
    """The argument passed at ``position`` or as ``keyword``, if visible."""
    if keyword is not None:
        for arg in call.args:
            if arg.keyword is not None and arg.keyword.value == keyword:
                return arg.value
    if position is not None:
        index = 0
        for arg in call.args:
            if arg.keyword is not None or arg.star:
                if arg.star == "*":
                    return None  # positions after *args are unknowable
                continue
            if index == position:
                return arg.value
            index += 1
    return None


def int_value(node: Optional[cst.CSTNode]) -> Optional[int]:
    if isinstance(node, cst.Integer):
        try:
            return int(node.value.replace("_", ""), 0)
        except ValueError:
            return None
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus):
        inner = int_value(node.expression)
        return -inner if inner is not None else None
    return None


def number_value(node: Optional[cst.CSTNode]) -> Optional[float]:
    if isinstance(node, cst.Integer):
        return float(int_value(node))
    if isinstance(node, cst.Float):
        try:
            return float(node.value.replace("_", ""))
        except ValueError:
            return None
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus):
        inner = number_value(node.expression)
        return -inner if inner is not None else None
    return None


def iter_nodes(root: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """Every node under ``root`` (pre-order, punctuation skipped), for rules
    that inspect one small subtree, such as a hook function's body."""
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        for name in _child_fields(type(node)):
            value = getattr(node, name)
            if isinstance(value, cst.CSTNode):
                stack.append(value)
            elif isinstance(value, (tuple, list)):
                stack.extend(reversed(value))


def child_nodes(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """The direct children of ``node`` in field order, punctuation skipped,
    for walks that carry their own state down the tree."""
    for name in _child_fields(type(node)):
        value = getattr(node, name)
        if isinstance(value, cst.CSTNode):
            yield value
        elif isinstance(value, (tuple, list)):
            for item in value:
                if isinstance(item, cst.CSTNode):
                    yield item


# Fields that never hold analysable children: whitespace, punctuation and
# operator tokens. Skipping them keeps the walk to the nodes that matter.
_SKIPPED_FIELDS = frozenset(
    {
        "lpar", "rpar", "comma", "semicolon", "leading_lines", "lines_after_decorators",
        "header", "footer", "operator", "equal", "star", "colon", "dot", "lbracket",
        "rbracket", "lbrace", "rbrace", "whitespace", "asynchronous", "default_comma",
        "newline", "trailing_whitespace", "empty_lines", "prefix", "quote", "start", "end",
        "value_equal", "arrow", "lambda_", "semicolon_whitespace",
    }
)
_FIELDS: Dict[type, Tuple[str, ...]] = {}


def _child_fields(cls: type) -> Tuple[str, ...]:
    fields = _FIELDS.get(cls)
    if fields is None:
        fields = tuple(
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in _SKIPPED_FIELDS and not f.name.startswith("whitespace")
        )
        _FIELDS[cls] = fields
    return fields


def _node_classes() -> FrozenSet[type]:
    found, todo = set(), [cst.CSTNode]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in found:
                found.add(sub)
                todo.append(sub)
    return frozenset(found)


#: Every libcst node class: ``type(x) in _NODE_CLASSES`` is a set lookup,
#: ``isinstance(x, cst.CSTNode)`` an ABC check (the walk makes millions).
_NODE_CLASSES = _node_classes()


def _holds_no_calls(annotation) -> bool:
    """A field that is a string or a bare name (``Attribute.attr``,
    ``Arg.keyword``): no call or walrus can be inside it."""
    if annotation is str or annotation is cst.Name or typing.get_origin(annotation) is typing.Literal:
        return True
    if typing.get_origin(annotation) is Union:
        return all(arg in (cst.Name, type(None)) for arg in typing.get_args(annotation))
    return False


_EXPRESSION_FIELDS: Dict[type, Tuple[str, ...]] = {}


def _expression_fields(cls: type) -> Tuple[str, ...]:
    """The child fields the expression walk must enter."""
    fields = _EXPRESSION_FIELDS.get(cls)
    if fields is None:
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        fields = _EXPRESSION_FIELDS[cls] = tuple(name for name in _child_fields(cls) if not _holds_no_calls(types[name]))
    return fields


def _star_imported(index: "ModuleIndex", name: str) -> Optional[Tuple["ModuleIndex", str]]:
    """What ``name`` (``Net``, ``utils.evaluate``) refers to through the
    module's ``from module import *`` of a project module: that module's
    index and the name there; None when no such import brings it."""
    if index.imports is None:
        return None
    for module in index.star_imports:
        found = index.imports.resolve(index, f"{module}.{name}")
        if found is not None and found[1] is not None:
            return found  # type: ignore[return-value]
    return None


class ImportResolver:
    """What a project provides so that one module's imports resolve to the
    other modules of the same project (implemented by ``lintorch.project``,
    which this module never imports)."""

    def resolve(self, index: "ModuleIndex", qualname: str) -> Optional[Tuple["ModuleIndex", Optional[str]]]:
        """The module of the project that ``qualname`` (as written in an
        import of ``index``: ``models.Net``, ``.net.Net``, ``utils``) names,
        with the name it refers to there (None: the module itself), followed
        through re-exports to a module that defines that name; None when it is
        not a module of the project."""
        raise NotImplementedError


class ModuleIndex:
    """Everything the rules need to know about one module."""

    def __init__(self, module: cst.Module, path: str = "<unknown>", text: str = ""):
        self.module = module
        self.path = path
        self.text = text
        self.module_scope = Scope("module", module, "<module>", None, self)
        self.scopes: List[Scope] = [self.module_scope]
        self.calls: List[CallSite] = []
        self.loops: List[LoopInfo] = []
        self.attr_assigns: List[AttrAssign] = []
        self.item_assigns: List[ItemAssign] = []
        self.functions: List[FunctionInfo] = []
        self.classes: List[ClassInfo] = []
        self.function_of: Dict[cst.FunctionDef, FunctionInfo] = {}
        self.class_of: Dict[cst.ClassDef, ClassInfo] = {}
        self.star_imports: List[str] = []
        self._aliases: Optional[Dict[str, str]] = None
        self._order = 0
        self._call_at: Optional[Dict[int, CallSite]] = None
        self._calls_by_name: Optional[Dict[str, List[CallSite]]] = None
        self._import_names: Optional[Dict[str, List[str]]] = None
        self._loop_nodes: Dict[int, set] = {}
        self._attr_assigns_by_scope: Optional[Dict[Scope, List[AttrAssign]]] = None
        #: Set by a project (``lintorch.project``): resolves this module's
        #: imports to the other modules of the project. None: imports stay opaque.
        self.imports: Optional[ImportResolver] = None
        _Walker(self).walk_module(module)

    def imported_roots(self) -> FrozenSet[str]:
        """Top-level packages imported anywhere in the module."""
        roots = set()
        for scope in self.scopes:
            for bindings in scope.bindings.values():
                for binding in bindings:
                    if binding.kind == "import" and binding.qualname:
                        roots.add(binding.qualname.split(".")[0])
        roots.update(module.split(".")[0] for module in self.star_imports)
        return frozenset(roots)

    @property
    def is_other_framework(self) -> bool:
        """Code for another deep-learning framework (MXNet, TensorFlow, JAX,
        ...) that does not touch torch: PyTorch rules do not apply."""
        roots = self.imported_roots()
        return bool(roots & OTHER_FRAMEWORKS) and "torch" not in roots

    def call_at(self, node: cst.CSTNode) -> Optional[CallSite]:
        """The CallSite recorded for a ``cst.Call`` node."""
        if self._call_at is None:
            self._call_at = {id(call.node): call for call in self.calls}
        return self._call_at.get(id(node))

    def calls_spelling(self, name: str) -> List[CallSite]:
        """The calls whose callee is spelled ``name``: ``name(...)`` or ``x.name(...)``."""
        if self._calls_by_name is None:
            self._calls_by_name = {}
            for call in self.calls:
                func = call.node.func
                spelled = func.value if isinstance(func, cst.Name) else func.attr.value if isinstance(func, cst.Attribute) else None
                if spelled is not None:
                    self._calls_by_name.setdefault(spelled, []).append(call)
        return self._calls_by_name.get(name, [])

    def names_importing(self, name: str) -> List[str]:
        """The names the module's top-level imports bind to something called
        ``name`` elsewhere (``run_eval`` for ``from utils import evaluate as run_eval``)."""
        if self._import_names is None:
            self._import_names = {}
            for bindings in self.module_scope.bindings.values():
                for binding in bindings:
                    if binding.kind == "import" and binding.qualname:
                        self._import_names.setdefault(binding.qualname.rsplit(".", 1)[-1], []).append(binding.name)
        return self._import_names.get(name, [])

    def loop_contains(self, loop: LoopInfo, node: cst.CSTNode) -> bool:
        """Whether ``node`` lies in the body of ``loop`` (scans the loop once)."""
        ids = self._loop_nodes.get(id(loop))
        if ids is None:
            ids = self._loop_nodes[id(loop)] = {id(n) for n in iter_nodes(loop.node.body)}
        return id(node) in ids

    def attr_assigns_in(self, scope: Scope) -> List[AttrAssign]:
        """The attribute assignments made directly in ``scope``."""
        index = scope.index
        if index._attr_assigns_by_scope is None:
            index._attr_assigns_by_scope = {}
            for assign in index.attr_assigns:
                index._attr_assigns_by_scope.setdefault(assign.scope, []).append(assign)
        return index._attr_assigns_by_scope.get(scope, [])

    # -- name resolution --------------------------------------------------
    #
    # Every method below resolves from ``scope`` in the scope's own module
    # (``scope.index``), whichever index it is called on: a value the
    # analysis followed into another module of the project is resolved there.

    def lookup(self, name: str, scope: Scope, order: Optional[int] = None) -> List[Binding]:
        """Bindings of ``name`` visible from ``scope`` at ``order``.

        Within one scope, the most recent binding before ``order`` wins
        (straight-line code); with none before it, all bindings of the scope
        are candidates (a loop-carried or later-defined value). Class scopes
        are skipped from nested functions, as Python does.
        """
        current: Optional[Scope] = scope
        first = True
        while current is not None:
            if first or current.kind != "class":
                bindings = current.bindings.get(name)
                if bindings:
                    if order is not None and first:
                        before = [b for b in bindings if b.order < order]
                        if before:
                            return [before[-1]]
                    return [bindings[-1]] if current.kind == "module" or not first else list(bindings)
            current = current.parent
            first = False
        return []

    def qualname_of(self, node: cst.CSTNode, scope: Scope, order: Optional[int] = None) -> Optional[str]:
        """Canonical qualified name of a Name/Attribute chain rooted at an import
        (also an import of a module of the project: ``models.Net``)."""
        found = self._head_import(node, scope, order)
        if found is None:
            return None
        dotted, chain, bound = found
        if bound:
            return canonical(chain) if chain is not None else None
        for module in scope.index.star_imports:
            if module.startswith("torch"):
                return canonical(f"{module}.{dotted}")
        head, _, rest = dotted.partition(".")
        alias = scope.index._unbound_torch_aliases().get(head)
        if alias is not None:
            return canonical(alias + ("." + rest if rest else ""))
        return None

    def _head_import(self, node: cst.CSTNode, scope: Scope, order: Optional[int]) -> Optional[Tuple[str, Optional[str], bool]]:
        """For a Name/Attribute chain: (the chain, the chain with its head
        replaced by what an import binds it to or None, whether the head is
        bound at all); None for other expressions."""
        dotted = dotted_name(node)
        if dotted is None:
            return None
        head, _, rest = dotted.partition(".")
        bindings = self.lookup(head, scope, order)
        return dotted, _import_chain(bindings[-1], rest) if bindings else None, bool(bindings)

    def imported(self, binding: Binding) -> Optional[Tuple["ModuleIndex", Optional[str]]]:
        """For an import binding of a module of the same project: that
        module's index and the name the binding refers to there (None: the
        module itself), followed through re-exports to where it is defined.
        None for third-party and unresolvable imports, which stay opaque."""
        resolver = binding.scope.index.imports
        if resolver is None or binding.kind != "import" or binding.qualname is None:
            return None
        return resolver.resolve(binding.scope.index, binding.qualname)

    def imported_symbol(
        self, node: cst.CSTNode, scope: Scope, order: Optional[int] = None
    ) -> Optional[Tuple["ModuleIndex", Optional[str]]]:
        """:meth:`imported` for a Name/Attribute chain (``Net``,
        ``models.Net``, ``utils.evaluate``, a name from ``from utils import *``)."""
        index = scope.index
        found = self._head_import(node, scope, order) if index.imports is not None else None
        if found is None:
            return None
        dotted, chain, bound = found
        if bound:
            return index.imports.resolve(index, chain) if chain is not None else None
        return _star_imported(index, dotted)

    def _unbound_torch_aliases(self) -> Dict[str, str]:
        """``nn``, ``F`` and ``optim`` used but bound nowhere in a file that
        imports torch: a notebook whose import cell was deleted, a cell saved
        as a module without its imports. They can only be the conventional
        aliases; a star import of another module could bind them, so then
        none is assumed."""
        if self._aliases is None:
            self._aliases = {}
            if "torch" in self.imported_roots() and all(m.startswith("torch") for m in self.star_imports):
                bound = {name for scope in self.scopes for name in scope.bindings}
                self._aliases = {name: module for name, module in _TORCH_ALIASES.items() if name not in bound}
        return self._aliases

    def function_named(self, name: str, scope: Scope, order: Optional[int] = None) -> Optional[FunctionInfo]:
        return self._defined(name, scope, order, "def")

    def class_named(self, name: str, scope: Scope, order: Optional[int] = None) -> Optional[ClassInfo]:
        return self._defined(name, scope, order, "class")

    def _defined(self, name: str, scope: Scope, order: Optional[int], kind: str):
        """The function (``def``) or class (``class``) ``name`` refers to, in
        this module or, through an import, in another module of the project."""
        for binding in reversed(self.lookup(name, scope, order) or self.star_bindings(name, scope)):
            if binding.kind == kind:
                index = binding.scope.index
                return (index.function_of if kind == "def" else index.class_of).get(binding.node)
            target = self.imported(binding)
            if target is not None and target[1] is not None:
                module, symbol = target
                return module._defined(symbol, module.module_scope, None, kind)
        return None

    def star_bindings(self, name: str, scope: Scope) -> List[Binding]:
        """The definition of ``name`` in a project module imported with
        ``from module import *``, for a name bound nowhere else."""
        found = _star_imported(scope.index, name)
        if found is None:
            return []
        target, symbol = found
        return target.module_scope.bindings.get(symbol, [])[-1:]

    def enclosing_function(self, scope: Scope) -> Optional[FunctionInfo]:
        current: Optional[Scope] = scope
        while current is not None:
            if current.function is not None:
                return current.function
            current = current.parent
        return None

    def calls_to(self, qualnames: Sequence[str]) -> Iterator[CallSite]:
        wanted = frozenset(qualnames)
        for call in self.calls:
            if call.qualname in wanted:
                yield call

    def method_calls(self, method: str) -> Iterator[CallSite]:
        for call in self.calls:
            if call.method == method:
                yield call

    def release(self) -> None:
        """Break the index's reference cycles (scopes and their children,
        bindings and calls pointing back at scopes and at this index), so
        that it and its tree are freed as soon as nothing else holds them.

        A project keeps many modules alive for a whole run; left to the
        cyclic garbage collector, the ones it drops would pile up (with a
        large live heap, full collections become rare). Only call this on an
        index no analysis is using any more."""
        for scope in self.scopes:
            scope.bindings.clear()
            scope.calls.clear()
            scope.children.clear()
            scope.parent = scope.function = scope.klass = None
            scope.index = None  # type: ignore[assignment]
        for call in self.calls:
            call._index = call.scope = call.loop = None  # type: ignore[assignment]
        for loop in self.loops:
            loop.parent = loop.scope = None  # type: ignore[assignment]
            loop.children.clear()
            loop.calls.clear()
            loop.attr_assigns.clear()
        for assign in self.attr_assigns:
            assign.scope = assign.loop = None  # type: ignore[assignment]
        for function in self.functions:
            function.scope = function.klass = None  # type: ignore[assignment]
        for klass in self.classes:
            klass.scope = None  # type: ignore[assignment]
            klass.methods.clear()
            klass.self_attrs.clear()
        for table in (self.scopes, self.calls, self.loops, self.attr_assigns, self.functions, self.classes):
            table.clear()
        self._call_at = self._calls_by_name = self._import_names = None
        self.function_of.clear()
        self.class_of.clear()
        self._call_at = self._attr_assigns_by_scope = None
        self._loop_nodes.clear()
        self.imports = None


class _Walker:
    """Fills a ModuleIndex in one pass; see the module docstring."""

    def __init__(self, index: ModuleIndex):
        self.index = index
        self.scope = index.module_scope
        self.loop: Optional[LoopInfo] = None
        self.with_items: Tuple[cst.WithItem, ...] = ()
        self.klass: Optional[ClassInfo] = None

    def tick(self) -> int:
        self.index._order += 1
        return self.index._order

    # -- statements -----------------------------------------------------

    def walk_module(self, module: cst.Module) -> None:
        self.walk_body(module.body)

    def walk_body(self, body: Sequence[cst.CSTNode]) -> None:
        for statement in body:
            self.walk_statement(statement)

    def walk_block(self, block: cst.BaseSuite) -> None:
        self.walk_body(block.body)

    def walk_statement(self, node: cst.CSTNode) -> None:
        method = getattr(self, "stmt_" + type(node).__name__, None)
        if method is not None:
            method(node)
        else:
            self.walk_generic(node)

    def stmt_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        for small in node.body:
            self.walk_statement(small)

    def stmt_SimpleStatementSuite(self, node: cst.SimpleStatementSuite) -> None:
        for small in node.body:
            self.walk_statement(small)

    def stmt_IndentedBlock(self, node: cst.IndentedBlock) -> None:
        self.walk_body(node.body)

    def stmt_Expr(self, node: cst.Expr) -> None:
        self.walk_expression(node.value)

    def stmt_Assign(self, node: cst.Assign) -> None:
        self.walk_expression(node.value)
        order = self.tick()
        for target in node.targets:
            self.bind_target(target.target, node.value, "assign", node, order)

    def stmt_AnnAssign(self, node: cst.AnnAssign) -> None:
        if node.value is not None:
            self.walk_expression(node.value)
        self.bind_target(node.target, node.value, "annassign", node, self.tick())

    def stmt_AugAssign(self, node: cst.AugAssign) -> None:
        self.walk_expression(node.value)
        self.walk_expression(node.target)
        self.bind_target(node.target, node.value, "augassign", node, self.tick())

    def stmt_Return(self, node: cst.Return) -> None:
        if node.value is not None:
            self.walk_expression(node.value)
        function = self.scope.function
        if function is not None:
            function.returns.append((node, self.tick()))

    def stmt_Import(self, node: cst.Import) -> None:
        order = self.tick()
        for alias in node.names:
            full = dotted_name(alias.name)
            if full is None:
                continue
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                self.bind(alias.asname.name.value, "import", None, node, order, qualname=full)
            else:
                root = full.split(".")[0]
                self.bind(root, "import", None, node, order, qualname=root)

    def stmt_ImportFrom(self, node: cst.ImportFrom) -> None:
        order = self.tick()
        module = dotted_name(node.module) if node.module is not None else ""
        if node.relative:
            module = "." * len(node.relative) + (module or "")
        if isinstance(node.names, cst.ImportStar):
            if module:
                self.index.star_imports.append(module)
            return
        for alias in node.names:
            name = dotted_name(alias.name)
            if name is None:
                continue
            local = name
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                local = alias.asname.name.value
            # ``from . import net`` -> ``.net``; ``from .net import Net`` -> ``.net.Net``
            joined = module + name if module.endswith(".") else f"{module}.{name}" if module else name
            self.bind(local, "import", None, node, order, qualname=joined)

    def stmt_FunctionDef(self, node: cst.FunctionDef) -> None:
        for decorator in node.decorators:
            self.walk_expression(decorator.decorator)
        params = node.params
        for param in (*params.posonly_params, *params.params, *params.kwonly_params):
            if param.default is not None:
                self.walk_expression(param.default)
        order = self.tick()
        self.bind(node.name.value, "def", None, node, order)
        scope = Scope("function", node, node.name.value, self.scope, self.index)
        self.scope.children.append(scope)
        self.index.scopes.append(scope)
        klass = self.klass if self.scope.kind == "class" else None
        info = FunctionInfo(node, node.name.value, scope, klass, [])
        scope.function = info
        self.index.functions.append(info)
        self.index.function_of[node] = info
        if klass is not None:
            klass.methods[node.name.value] = info
        elif self.klass is not None:
            info.klass = self.klass  # nested function inside a method keeps the class
        for param in (*params.posonly_params, *params.params):
            info.params.append((param.name.value, param, "pos"))
        if isinstance(params.star_arg, cst.Param):
            info.params.append((params.star_arg.name.value, params.star_arg, "star"))
        for param in params.kwonly_params:
            info.params.append((param.name.value, param, "kwonly"))
        if params.star_kwarg is not None:
            info.params.append((params.star_kwarg.name.value, params.star_kwarg, "starstar"))

        saved = (self.scope, self.loop, self.with_items)
        self.scope, self.with_items = scope, ()
        # A loop does not continue into a function defined in it: the def's
        # calls run when the function is called. Calls in a nested def still
        # count as the loop's (closures passed to optimizer.step), so the loop
        # stays set for them; top-level defs have none.
        for name, param, _ in info.params:
            self.bind(name, "param", param.default, param, self.tick())
        self.walk_block(node.body)
        self.scope, self.loop, self.with_items = saved

    def stmt_ClassDef(self, node: cst.ClassDef) -> None:
        for decorator in node.decorators:
            self.walk_expression(decorator.decorator)
        for arg in node.bases:
            self.walk_expression(arg.value)
        order = self.tick()
        self.bind(node.name.value, "class", None, node, order)
        scope = Scope("class", node, node.name.value, self.scope, self.index)
        self.scope.children.append(scope)
        self.index.scopes.append(scope)
        info = ClassInfo(node, node.name.value, scope, [arg.value for arg in node.bases if arg.keyword is None])
        scope.klass = info
        self.index.classes.append(info)
        self.index.class_of[node] = info
        saved = (self.scope, self.klass, self.with_items)
        self.scope, self.klass, self.with_items = scope, info, ()
        self.walk_block(node.body)
        self.scope, self.klass, self.with_items = saved

    def _enter_loop(self, node: Loop) -> LoopInfo:
        loop = LoopInfo(node, self.scope, self.loop, self.tick())
        if self.loop is not None:
            self.loop.children.append(loop)
        self.index.loops.append(loop)
        self.loop = loop
        return loop

    def stmt_For(self, node: cst.For) -> None:
        self.walk_expression(node.iter)
        saved = self.loop
        self._enter_loop(node)
        self.bind_target(node.target, node.iter, "for", node, self.tick())
        self.walk_block(node.body)
        self.loop = saved
        if node.orelse is not None:
            self.walk_block(node.orelse.body)

    def stmt_While(self, node: cst.While) -> None:
        saved = self.loop
        self._enter_loop(node)
        self.walk_expression(node.test)
        self.walk_block(node.body)
        self.loop = saved
        if node.orelse is not None:
            self.walk_block(node.orelse.body)

    def stmt_If(self, node: cst.If) -> None:
        self.walk_expression(node.test)
        self.walk_block(node.body)
        orelse = node.orelse
        if isinstance(orelse, cst.If):
            self.stmt_If(orelse)
        elif orelse is not None:
            self.walk_block(orelse.body)

    def stmt_With(self, node: cst.With) -> None:
        for item in node.items:
            self.walk_expression(item.item)
            if item.asname is not None:
                self.bind_target(item.asname.name, item.item, "with", node, self.tick())
        saved = self.with_items
        self.with_items = saved + tuple(node.items)
        self.walk_block(node.body)
        self.with_items = saved

    def stmt_Try(self, node: cst.Try) -> None:
        self.walk_block(node.body)
        for handler in node.handlers:
            if handler.type is not None:
                self.walk_expression(handler.type)
            if handler.name is not None:
                self.bind_target(handler.name.name, None, "except", handler, self.tick())
            self.walk_block(handler.body)
        if node.orelse is not None:
            self.walk_block(node.orelse.body)
        if node.finalbody is not None:
            self.walk_block(node.finalbody.body)

    stmt_TryStar = stmt_Try

    def walk_generic(self, node: cst.CSTNode) -> None:
        """Statements without a handler: walk their children as expressions,
        except nested suites, which are walked as statements."""
        for name in _child_fields(type(node)):
            value = getattr(node, name)
            if isinstance(value, cst.BaseSuite):
                self.walk_block(value)
            elif isinstance(value, cst.CSTNode):
                if isinstance(value, (cst.BaseStatement, cst.BaseSmallStatement, cst.MatchCase, cst.Else)):
                    self.walk_statement(value)
                else:
                    self.walk_expression(value)
            elif isinstance(value, (tuple, list)):
                for item in value:
                    if isinstance(item, (cst.BaseStatement, cst.BaseSmallStatement, cst.MatchCase)):
                        self.walk_statement(item)
                    elif isinstance(item, cst.CSTNode):
                        self.walk_expression(item)

    def stmt_MatchCase(self, node: cst.CSTNode) -> None:
        guard = getattr(node, "guard", None)
        if guard is not None:
            self.walk_expression(guard)
        self.walk_block(node.body)

    def stmt_Else(self, node: cst.Else) -> None:
        self.walk_block(node.body)

    # -- bindings -------------------------------------------------------

    def bind(self, name, kind, value, node, order, unpack=(), qualname=None) -> None:
        binding = Binding(name, kind, value, node, order, self.scope, unpack, qualname)
        self.scope.bindings.setdefault(name, []).append(binding)

    def bind_target(self, target, value, kind, node, order, unpack=()) -> None:
        if isinstance(target, cst.Name):
            self.bind(target.value, kind, value, node, order, unpack)
        elif isinstance(target, (cst.Tuple, cst.List)):
            for i, element in enumerate(target.elements):
                inner = element.value
                if isinstance(element, cst.StarredElement):
                    self.bind_target(inner, None, kind, node, order)
                else:
                    self.bind_target(inner, value, kind, node, order, unpack + (i,))
        elif isinstance(target, cst.Attribute):
            assign = AttrAssign(target, value if not unpack else None, self.scope, self.loop, order, node)
            self.index.attr_assigns.append(assign)
            if self.loop is not None:
                for loop in (self.loop, *self.loop.ancestors()):
                    loop.attr_assigns.append(assign)
            if self.klass is not None and isinstance(target.value, cst.Name) and target.value.value == "self":
                self.klass.self_attrs.setdefault(assign.attr, []).append(assign)
        elif isinstance(target, cst.Subscript):
            self.index.item_assigns.append(ItemAssign(target, value if not unpack else None, self.scope, order, node))
        elif isinstance(target, cst.StarredElement):
            self.bind_target(target.value, None, kind, node, order)

    # -- expressions ----------------------------------------------------

    def walk_expression(self, root: cst.CSTNode) -> None:
        stack = [root]
        pop, push, extend = stack.pop, stack.append, stack.extend
        node_classes, fields_of = _NODE_CLASSES, _EXPRESSION_FIELDS
        call_class, walrus_class, maybe = cst.Call, cst.NamedExpr, cst.MaybeSentinel
        while stack:
            node = pop()
            cls = type(node)
            if cls is call_class:
                self.record_call(node)
            elif cls is walrus_class:
                self.bind_target(node.target, node.value, "walrus", node, self.tick())
            fields = fields_of.get(cls)
            if fields is None:
                fields = _expression_fields(cls)
            for name in fields:
                value = getattr(node, name)
                kind = type(value)
                if kind in node_classes:
                    push(value)
                elif kind is tuple or kind is list:
                    extend(reversed(value))
                elif value is not None and kind is not maybe and isinstance(value, cst.CSTNode):
                    push(value)  # a node class defined after this module was imported

    def record_call(self, node: cst.Call) -> None:
        func = node.func
        dotted = dotted_name(func)
        method = func.attr.value if isinstance(func, cst.Attribute) else None
        call = CallSite(node, dotted, method, self.scope, self.loop, self.tick(), self.with_items, self.index)
        self.index.calls.append(call)
        self.scope.calls.append(call)
        loop = self.loop
        while loop is not None:
            loop.calls.append(call)
            loop = loop.parent
