"""Training-loop recognition: which loops run ``backward()`` and an optimizer
``step()``, and what else happens in them, following calls into functions
of the same module (``train_one_epoch()``, closures passed to
``optimizer.step(closure)``, ``self.training_step(...)``).
"""

from typing import Dict, FrozenSet, List, Optional, Set, Tuple

import libcst as cst

from lintorch import torchapi as api
from lintorch.dataflow import Dataflow
from lintorch.index import AttrAssign, CallSite, FunctionInfo, LoopInfo, ModuleIndex, Scope, dotted_name

BACKWARD = "backward"
STEP = "step"
ZERO_GRAD = "zero_grad"
SCHEDULER_STEP = "scheduler_step"

#: effect -> the call (or attribute assignment) in the analysed body that
#: causes it, directly or through a local function.
Witnesses = Dict[str, cst.CSTNode]


class TrainingFacts:
    def __init__(self, index: ModuleIndex, flow: Dataflow):
        self.index = index
        self.flow = flow
        self._function_effects: Dict[FunctionInfo, FrozenSet[str]] = {}
        self._loop_effects: Dict[LoopInfo, Witnesses] = {}
        self._receiver_kinds: Dict[int, Optional[str]] = {}
        self._scope_attr_assigns: Optional[Dict[Scope, List[AttrAssign]]] = None

    # -- what one call does ---------------------------------------------

    def receiver_kind(self, call: CallSite) -> Optional[str]:
        """``optimizer`` | ``scheduler`` | ``scaler`` | None for ``x.method()``."""
        key = id(call.node)
        if key in self._receiver_kinds:
            return self._receiver_kinds[key]
        kind = None
        receiver = call.receiver
        if receiver is not None:
            for qualname in self.flow.instance_qualnames(receiver, call.scope, call.order):
                if qualname.startswith(api.LR_SCHEDULER_PREFIX):
                    kind = "scheduler"
                elif qualname in api.GRAD_SCALERS:
                    kind = "scaler"
                elif qualname.startswith(api.OPTIMIZER_PREFIX):
                    kind = "optimizer"
            if kind is None:
                kind = _kind_from_name(dotted_name(receiver))
        self._receiver_kinds[key] = kind
        return kind

    def call_effects(self, call: CallSite) -> Set[str]:
        method = call.method
        effects: Set[str] = set()
        if method in ("backward", "manual_backward"):
            # Distributed autograd keeps gradients per context, not in .grad.
            if not (call.qualname or "").startswith("torch.distributed.autograd."):
                effects.add(BACKWARD)
        elif method == "step":
            kind = self.receiver_kind(call)
            if kind == "optimizer" or (kind == "scaler" and call.node.args):
                effects.add(STEP)
            elif kind == "scheduler":
                effects.add(SCHEDULER_STEP)
        elif method == "zero_grad":
            effects.add(ZERO_GRAD)
        elif method in ("zero_", "detach_", "fill_", "requires_grad_") and _is_grad_attr(call.receiver):
            effects.add(ZERO_GRAD)
        elif call.qualname in ("torch.autograd.backward",):
            effects.add(BACKWARD)
        elif call.qualname in ("torch._foreach_zero_",):
            effects.add(ZERO_GRAD)
        return effects

    # -- bodies -----------------------------------------------------------

    def _attr_assigns_by_scope(self) -> Dict[Scope, List[AttrAssign]]:
        if self._scope_attr_assigns is None:
            self._scope_attr_assigns = {}
            for assign in self.index.attr_assigns:
                self._scope_attr_assigns.setdefault(assign.scope, []).append(assign)
        return self._scope_attr_assigns

    def function_effects(self, function: FunctionInfo, _active: Optional[Set[int]] = None) -> FrozenSet[str]:
        cached = self._function_effects.get(function)
        if cached is not None:
            return cached
        active = _active if _active is not None else set()
        if id(function) in active:
            return frozenset()
        active.add(id(function))
        effects: Set[str] = set()
        scopes = _scope_and_descendants(function.scope)
        by_scope = self._attr_assigns_by_scope()
        for scope in scopes:
            for call in scope.calls:
                effects |= self.call_effects(call)
                for callee in self._local_functions_reached(call):
                    effects |= self.function_effects(callee, active)
            for assign in by_scope.get(scope, ()):
                if _clears_grad(assign):
                    effects.add(ZERO_GRAD)
        active.discard(id(function))
        result = frozenset(effects)
        if not active:  # only cache results not truncated by recursion
            self._function_effects[function] = result
        return result

    def _local_functions_reached(self, call: CallSite) -> List[FunctionInfo]:
        """Local functions a call runs: its callee, and the closure passed to
        ``optimizer.step(closure)``. (Functions handed to ``rpc_async``,
        threads or ``Engine(update)`` run elsewhere, not per iteration.)"""
        reached = []
        callee = self.flow.local_callee(call)
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

    def loop_witnesses(self, loop: LoopInfo) -> Witnesses:
        """What the loop does per iteration, with the node responsible."""
        cached = self._loop_effects.get(loop)
        if cached is not None:
            return cached
        witnesses: Witnesses = {}
        for call in loop.calls:
            for effect in self.call_effects(call):
                witnesses.setdefault(effect, call.node)
            for callee in self._local_functions_reached(call):
                for effect in self.function_effects(callee):
                    witnesses.setdefault(effect, call.node)
        for assign in loop.attr_assigns:
            if _clears_grad(assign):
                witnesses.setdefault(ZERO_GRAD, assign.node)
        self._loop_effects[loop] = witnesses
        return witnesses

    def is_training_loop(self, loop: LoopInfo) -> bool:
        witnesses = self.loop_witnesses(loop)
        return BACKWARD in witnesses and STEP in witnesses

    def training_loops(self) -> List[LoopInfo]:
        return [loop for loop in self.index.loops if self.is_training_loop(loop)]

    def innermost_training_loops(self) -> List[LoopInfo]:
        """Training loops with no nested training loop: where steps happen."""
        training = self.training_loops()
        nested = set()
        for loop in training:
            for ancestor in loop.ancestors():
                nested.add(id(ancestor))
        return [loop for loop in training if id(loop) not in nested]

    # -- statement order, loop roles, grad mode, schedulers (LT2xx) -------

    def scope_effects(self, scope: Scope) -> List["EffectCall"]:
        """The calls made directly in ``scope`` (not in nested functions), in
        statement order, that have a training effect, by themselves or
        through the local functions they run (``train_step(...)``,
        ``optimizer.step(closure)``)."""
        cache = self.__dict__.setdefault("_scope_effects", {})
        cached = cache.get(scope)
        if cached is not None:
            return cached
        out: List[EffectCall] = []
        for call in scope.calls:
            own = frozenset(self.call_effects(call))
            reached: Set[str] = set()
            for callee in self._local_functions_reached(call):
                reached |= self.function_effects(callee)
            if own or reached:
                out.append(EffectCall(call, own | frozenset(reached), own))
        cache[scope] = out
        return out

    def stepped_optimizer(self, call: CallSite) -> Optional[cst.BaseExpression]:
        """The optimizer expression a STEP call steps: the receiver of
        ``optimizer.step()``, the argument of ``scaler.step(optimizer)``."""
        if call.method != "step":
            return None
        kind = self.receiver_kind(call)
        if kind == "optimizer":
            return call.receiver
        if kind == "scaler":
            return call.arg(0, "optimizer")
        return None

    def same_object(self, a: cst.BaseExpression, a_call: CallSite, b: cst.BaseExpression, b_call: CallSite) -> bool:
        """Whether two expressions (evaluated at two calls) visibly denote the
        same object: the same dotted name in the same scope, or a common
        definition (``optimizer`` built in ``main()`` and passed as a parameter)."""
        da, db = dotted_name(a), dotted_name(b)
        if da is not None and da == db and a_call.scope is b_call.scope:
            return True
        defs_a = {id(v.expr) for v in self.flow.definitions(a, a_call.scope, a_call.order)}
        defs_b = {id(v.expr) for v in self.flow.definitions(b, b_call.scope, b_call.order)}
        return bool(defs_a & defs_b)

    def call_at(self, node: cst.CSTNode) -> Optional[CallSite]:
        """The CallSite recorded for a ``cst.Call`` node."""
        table = self.__dict__.get("_call_at")
        if table is None:
            table = {id(call.node): call for call in self.index.calls}
            self.__dict__["_call_at"] = table
        return table.get(id(node))

    def grad_disabled_by(self, call: CallSite) -> Optional[cst.CSTNode]:
        """The ``with torch.no_grad()`` / ``inference_mode()`` item (or the
        ``@torch.no_grad()`` decorator of the enclosing function) under which
        ``call`` runs with gradient recording off; None when recording is on
        or re-enabled inside (``enable_grad``, ``set_grad_enabled(True)``)."""
        for item in reversed(call.with_items):
            state = self._grad_mode_of(item.item, call.scope, call.order)
            if state is True:
                return None
            if state is False:
                return item
        function = self.index.enclosing_function(call.scope)
        if function is not None and function.scope is call.scope:
            parent = function.scope.parent or self.index.module_scope
            for decorator in function.node.decorators:
                state = self._grad_mode_of(decorator.decorator, parent, None)
                if state is True:
                    return None
                if state is False:
                    return decorator
        return None

    def _grad_mode_of(self, expr: cst.BaseExpression, scope: Scope, order: Optional[int]) -> Optional[bool]:
        """False for a grad-disabling manager, True for a grad-enabling one."""
        func = expr.func if isinstance(expr, cst.Call) else expr
        qualname = self.index.qualname_of(func, scope, order)
        if qualname in api.GRAD_DISABLING:
            if qualname.endswith("inference_mode") and isinstance(expr, cst.Call):
                mode = call_arg_value(expr, 0, "mode")
                if isinstance(mode, cst.Name) and mode.value == "False":
                    return True
            return False
        if qualname in api.GRAD_ENABLING:
            return True
        if qualname in api.SET_GRAD_ENABLED and isinstance(expr, cst.Call):
            mode = call_arg_value(expr, 0, "mode")
            if isinstance(mode, cst.Name) and mode.value == "False":
                return False
            return True  # set_grad_enabled(is_train): may be on
        return None

    def steps_per_iteration(self, loop: LoopInfo) -> bool:
        """Whether one iteration of ``loop`` runs an optimizer step outside
        any nested loop: directly, or through a local function that steps
        without looping itself (``train_step(batch)``, not ``train_one_epoch()``)."""
        for call in loop.calls:
            if call.loop is not loop:
                continue
            if STEP in self.call_effects(call):
                return True
            if any(self._steps_outside_loops(f) for f in self._local_functions_reached(call)):
                return True
        return False

    def _steps_outside_loops(self, function: FunctionInfo, _depth: int = 0) -> bool:
        if _depth > 6:
            return False
        scopes = _scope_and_descendants(function.scope)
        own = {id(s) for s in scopes}
        for scope in scopes:
            for call in scope.calls:
                if call.loop is not None and id(call.loop.scope) in own:
                    continue
                if STEP in self.call_effects(call):
                    return True
                for callee in self._local_functions_reached(call):
                    if callee is not function and self._steps_outside_loops(callee, _depth + 1):
                        return True
        return False

    def is_batch_loop(self, loop: LoopInfo) -> bool:
        """A loop whose iterations are mini-batches: it steps the optimizer
        once per iteration and either runs inside another loop (the epoch
        loop, possibly in a caller) or iterates over a data loader."""
        if not self.steps_per_iteration(loop):
            return False
        if loop.parent is not None and loop.parent.scope is loop.scope:
            return True
        if isinstance(loop.node, cst.For) and _iterates_loader(self, loop):
            return True
        function = self.index.enclosing_function(loop.scope)
        if function is not None and loop.parent is None:
            return any(call.loop is not None for call in self.flow.callers(function))
        return False

    def scheduler_constructor(self, call: CallSite) -> Optional[Tuple[str, "Value"]]:
        """For ``scheduler.step()``: the torch scheduler class and the
        constructor call that built the receiver, when unique and visible."""
        receiver = call.receiver
        if receiver is None:
            return None
        found = []
        for value in self.flow.definitions(receiver, call.scope, call.order):
            value = self.flow.strip_value_preserving(value)
            qualname, _ = self.flow.constructor(value)
            found.append((qualname, value))
        if len(found) != 1 or found[0][0] is None:
            return None
        return found[0]

    def backpropagated_names(self, scope: Scope) -> Set[str]:
        """Names in ``scope`` whose value flows into a ``backward()`` call in
        that scope: the receiver's names and, transitively, the names their
        assignments in the scope read (``loss = sum(losses) / n``)."""
        cache = self.__dict__.setdefault("_backprop_names", {})
        cached = cache.get(scope)
        if cached is not None:
            return cached
        names: Set[str] = set()
        todo: List[cst.CSTNode] = []
        for call in scope.calls:
            if BACKWARD in self.call_effects(call):
                todo.append(call.receiver if call.receiver is not None and call.method else call.node)
        seen_nodes: Set[int] = set()
        while todo:
            root = todo.pop()
            if root is None or id(root) in seen_nodes:
                continue
            seen_nodes.add(id(root))
            for node in iter_nodes(root):
                if isinstance(node, cst.Name) and node.value not in names:
                    names.add(node.value)
                    for binding in scope.bindings.get(node.value, ()):
                        if binding.value is not None:
                            todo.append(binding.value)
        cache[scope] = names
        return names

    def loop_contains_node(self, loop: LoopInfo, node: cst.CSTNode) -> bool:
        """Whether ``node`` lies in the body of ``loop`` (scans the loop once)."""
        cache = self.__dict__.setdefault("_loop_nodes", {})
        ids = cache.get(id(loop))
        if ids is None:
            ids = {id(n) for n in iter_nodes(loop.node.body)}
            cache[id(loop)] = ids
        return id(node) in ids


def _kind_from_name(dotted: Optional[str]) -> Optional[str]:
    if not dotted:
        return None
    last = dotted.rsplit(".", 1)[-1].lower()
    if "sched" in last:
        return "scheduler"
    if "scaler" in last:
        return "scaler"
    if "opt" in last:
        return "optimizer"
    return None


def _is_grad_attr(node: Optional[cst.BaseExpression]) -> bool:
    """``p.grad`` or ``p.grad.data``."""
    if isinstance(node, cst.Attribute) and node.attr.value == "data":
        node = node.value
    return isinstance(node, cst.Attribute) and node.attr.value == "grad"


def _clears_grad(assign: AttrAssign) -> bool:
    """``p.grad = None`` / ``p.grad = torch.zeros_like(p)``."""
    return assign.attr == "grad"


def _scope_and_descendants(scope: Scope) -> List[Scope]:
    out = [scope]
    stack = list(scope.children)
    while stack:
        child = stack.pop()
        out.append(child)
        stack.extend(child.children)
    return out


def loop_header_range(loop: LoopInfo) -> Tuple[cst.CSTNode, ...]:
    node = loop.node
    if isinstance(node, cst.For):
        return (node.target, node.iter)
    return (node.test,)


# -- shared by the optimisation-loop rules (LT2xx) ---------------------------

from typing import NamedTuple  # noqa: E402

from lintorch.dataflow import Value  # noqa: E402,F401
from lintorch.index import _child_fields, call_arg, iter_nodes  # noqa: E402


class EffectCall(NamedTuple):
    """A call with training effects, in statement order (``scope_effects``)."""

    call: CallSite
    #: Everything the call causes, itself or through local functions it runs.
    effects: FrozenSet[str]
    #: What the call itself does (``optimizer.step()`` -> STEP), without
    #: the effects of local functions it runs.
    own: FrozenSet[str]


def call_arg_value(call: cst.Call, position: Optional[int], keyword: Optional[str] = None):
    return call_arg(call, position, keyword)


_LOADER_WORDS = ("loader", "batches", "batch_iter", "dataloader")
_ITER_WRAPPERS = frozenset({"enumerate", "tqdm", "zip", "iter", "islice", "trange"})


def _iterates_loader(facts: "TrainingFacts", loop: LoopInfo) -> bool:
    """``for x, y in loader``, ``enumerate(tqdm(train_dl))``, a DataLoader."""
    for node in iter_nodes(loop.node.iter):
        if isinstance(node, cst.Call):
            continue
        if isinstance(node, (cst.Name, cst.Attribute)):
            last = (dotted_name(node) or "").rsplit(".", 1)[-1].lower()
            if last in _ITER_WRAPPERS:
                continue
            if any(word in last for word in _LOADER_WORDS) or last in ("dl", "train_dl"):
                return True
            if isinstance(node, cst.Name):
                qualnames = facts.flow.instance_qualnames(node, loop.scope, loop.order)
                if qualnames & api.TORCH_DATALOADER:
                    return True
    return False


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
        for name in _child_fields(type(node)):
            value = getattr(node, name)
            if isinstance(value, cst.CSTNode):
                stack.append((value, path))
            elif isinstance(value, (tuple, list)):
                for item in value:
                    if isinstance(item, cst.CSTNode):
                        stack.append((item, path))
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
        for name in _child_fields(type(node)):
            value = getattr(node, name)
            if isinstance(value, cst.CSTNode):
                stack.append((value, tests))
            elif isinstance(value, (tuple, list)):
                for item in value:
                    if isinstance(item, cst.CSTNode):
                        stack.append((item, tests))
    return []
