"""Training-loop recognition: which loops run ``backward()`` and an optimizer
``step()``, and what else happens in them, following calls into functions
of the same module (``train_one_epoch()``, closures passed to
``optimizer.step(closure)``, ``self.training_step(...)``).
"""

import re
from typing import Dict, FrozenSet, List, NamedTuple, Optional, Set, Tuple

import libcst as cst

from lintorch import torchapi as api
from lintorch.dataflow import Dataflow, Value
from lintorch.index import (
    AttrAssign,
    CallSite,
    FunctionInfo,
    LoopInfo,
    ModuleIndex,
    Scope,
    call_arg,
    child_nodes,
    dotted_name,
    iter_nodes,
)

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
        scopes = function.scope.with_descendants()
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
        scopes = function.scope.with_descendants()
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


    # -- train/eval mode and validation loops (LT3xx) ---------------------

    def _lt3_cache(self, name: str) -> dict:
        return self.__dict__.setdefault("_lt3_" + name, {})

    def call_mode(self, call: CallSite) -> Optional[str]:
        """``train`` | ``eval``: the mode the call leaves a module in, directly
        (``model.eval()``, ``model.train()``, ``model.train(False)``) or
        through a local function (its last mode call wins); None otherwise."""
        kind = mode_call_kind(call)
        if kind is not None:
            return kind
        for callee in self._local_functions_reached(call):
            net, _ = self.function_modes(callee)
            if net is not None:
                kind = net
        return kind

    def function_modes(self, function: FunctionInfo, _active: Optional[Set[int]] = None) -> Tuple[Optional[str], FrozenSet[str]]:
        """(mode the function leaves the model in: its last mode call, every
        mode it sets anywhere), through local functions it calls."""
        cache = self._lt3_cache("function_modes")
        if function in cache:
            return cache[function]
        active = _active if _active is not None else set()
        if id(function) in active:
            return None, frozenset()
        active.add(id(function))
        net: Optional[str] = None
        seen: Set[str] = set()
        for call in function.scope.calls:
            kind = mode_call_kind(call)
            if kind is None:
                for callee in self._local_functions_reached(call):
                    inner_net, inner_seen = self.function_modes(callee, active)
                    seen |= inner_seen
                    if inner_net is not None:
                        kind = inner_net
            if kind is not None:
                net = kind
                seen.add(kind)
        active.discard(id(function))
        result = (net, frozenset(seen))
        if not active:
            cache[function] = result
        return result

    def call_sets_mode(self, call: CallSite, mode: str) -> bool:
        """The call sets ``mode`` at some point (directly or in a local function)."""
        if mode_call_kind(call) == mode:
            return True
        return any(mode in self.function_modes(f)[1] for f in self._local_functions_reached(call))

    def is_no_grad_expr(self, expr: cst.BaseExpression, scope: Scope, order: Optional[int]) -> bool:
        """``torch.no_grad()``, ``torch.inference_mode()``, ``torch.set_grad_enabled(False)``
        (as a context manager or decorator, with or without the call)."""
        func = expr.func if isinstance(expr, cst.Call) else expr
        qualname = self.index.qualname_of(func, scope, order)
        if qualname in api.NO_GRAD_CONTEXTS:
            if isinstance(expr, cst.Call) and qualname.endswith("inference_mode"):
                mode = call_arg(expr, 0, "mode")
                return not (isinstance(mode, cst.Name) and mode.value == "False")
            return True
        if qualname in api.SET_GRAD_ENABLED and isinstance(expr, cst.Call):
            mode = call_arg(expr, 0, "mode")
            return isinstance(mode, cst.Name) and mode.value == "False"
        return False

    def function_runs_without_grad(self, function: FunctionInfo) -> bool:
        """Decorated with ``@torch.no_grad()`` / ``@torch.inference_mode()``."""
        outer = function.scope.parent or self.index.module_scope
        return any(self.is_no_grad_expr(d.decorator, outer, None) for d in function.node.decorators)

    def under_no_grad(self, call: CallSite, _depth: int = 0, _created_in: Optional[Set[Scope]] = None) -> Optional[bool]:
        """Whether autograd is off when ``call`` runs: a no-grad ``with``
        around it, a no-grad decorator on an enclosing function, an earlier
        ``torch.set_grad_enabled(False)`` in its function, or (for a
        function called in this module) every caller under no-grad.
        None when that depends on callers this module does not show."""
        grad_mode_unknown = False
        for item in call.with_items:
            if self.is_no_grad_expr(item.item, call.scope, call.order):
                return True
            expr = item.item
            if isinstance(expr, cst.Call) and self.index.qualname_of(expr.func, call.scope, call.order) in api.SET_GRAD_ENABLED:
                grad_mode_unknown = True  # set_grad_enabled(is_training): either way
        if grad_mode_unknown:
            return None
        scope: Optional[Scope] = call.scope
        while scope is not None and scope.kind != "module":
            function = scope.function
            if function is not None and self.function_runs_without_grad(function):
                return True
            scope = scope.parent
        for other in call.scope.calls:
            if other.order < call.order and other.qualname in api.SET_GRAD_ENABLED and self.is_no_grad_expr(other.node, other.scope, other.order):
                return True
        function = self.index.enclosing_function(call.scope)
        if function is None:
            return False
        if _depth >= 3:
            return None
        if _created_in is None:
            _created_in = self.model_created_in(call) if self.is_model_call(call) else set()
        callers = [c for c in self.flow.callers(function) if c.scope is not function.scope]
        if not callers:
            if function.scope in _created_in or BACKWARD in self.function_effects(function):
                return False  # the model is built here, or this function trains: autograd is on
            return None
        results = [self.under_no_grad(c, _depth + 1, _created_in) for c in callers]
        if all(r is True for r in results):
            return True
        if any(r is False for r in results):
            return False
        return None

    def mode_set_before(
        self, call: CallSite, mode: str, loop: Optional[LoopInfo] = None, _depth: int = 0, _created_in: Optional[Set[Scope]] = None
    ) -> Optional[bool]:
        """Whether ``mode`` (``eval``/``train``) is set before ``call`` (a
        model call) runs: by a call earlier in its function (or in ``loop``,
        which repeats), or, for a function called in this module, before
        every call of it. None when that depends on callers this module does
        not show, except in the function that builds the model (nothing
        outside it can have set the mode)."""
        if _created_in is None:
            _created_in = self.model_created_in(call)
        if loop is not None and any(self.call_sets_mode(c, mode) for c in loop.calls):
            return True
        for other in call.scope.calls:
            if other.order < call.order and self.call_sets_mode(other, mode):
                return True
        if call.loop is not None:
            for enclosing in (call.loop, *call.loop.ancestors()):
                if enclosing.scope is call.scope and any(self.call_sets_mode(c, mode) for c in enclosing.calls):
                    return True
        function = self.index.enclosing_function(call.scope)
        if function is None:
            return False
        if _depth >= 3:
            return None
        callers = [c for c in self.flow.callers(function) if c.scope is not function.scope]
        if not callers:
            return False if function.scope in _created_in else None
        results = [self.mode_set_before(c, mode, None, _depth + 1, _created_in) for c in callers]
        if all(r is True for r in results):
            return True
        if any(r is False for r in results):
            return False
        return None

    def is_model_call(self, call: CallSite) -> bool:
        """``model(x)``, ``self.net(x)``: a call of a module instance (traced
        to a module construction, or named like a model)."""
        func = call.node.func
        if call.qualname is not None or not call.node.args:
            return False
        if isinstance(func, cst.Name):
            name = func.value
        elif isinstance(func, cst.Attribute) and isinstance(func.value, (cst.Name, cst.Attribute)):
            name = func.attr.value
        else:
            return False
        cache = self._lt3_cache("model_calls")
        key = id(call.node)
        if key in cache:
            return cache[key]
        result = False
        if not _NOT_MODEL_NAME.search(name):
            for value in self.flow.definitions(func, call.scope, call.order):
                value = self.flow.strip_value_preserving(value)
                qualname, klass = self.flow.constructor(value)
                if qualname is not None:
                    if (qualname.startswith("torch.nn.") and not qualname.endswith("Loss")) or qualname.startswith(api.MODEL_ZOO_PREFIXES):
                        result = True
                elif klass is not None and self.flow.is_torch_module_class(klass) and not klass.name.endswith("Loss"):
                    result = True
                elif isinstance(value.expr, cst.Call) and isinstance(value.expr.func, cst.Attribute) and value.expr.func.attr.value == "from_pretrained":
                    result = True
            if not result and _MODEL_NAME.search(name):
                result = True
        cache[key] = result
        return result

    def validation_loops(self) -> List["ValidationLoop"]:
        """Loops that evaluate a model on data without training it: ``for``
        loops over a data loader that call a model, run no ``backward()`` or
        optimizer step and need no gradients, and are recognisable as
        validation by their function's name (``validate``, ``evaluate``,
        ``test``...), the loader's name (``val_loader``, ``test_loader``...)
        or a no-grad context. Framework hooks (Lightning ``*_step``
        methods) are left out: the framework sets the modes. Only the
        outermost such loop is returned when they nest."""
        cache = self._lt3_cache("validation_loops")
        if "all" in cache:
            return cache["all"]
        candidates: Dict[int, ValidationLoop] = {}
        for loop in self.index.loops:
            found = self._validation_loop(loop)
            if found is not None:
                candidates[id(loop)] = found
        out = [v for v in candidates.values() if not any(id(a) in candidates for a in v.loop.ancestors())]
        cache["all"] = out
        return out

    def _validation_loop(self, loop: LoopInfo) -> Optional["ValidationLoop"]:
        node = loop.node
        if not isinstance(node, cst.For):
            return None
        witnesses = self.loop_witnesses(loop)
        if BACKWARD in witnesses or STEP in witnesses:
            return None
        for call in loop.calls:
            if call.qualname in _NEEDS_GRAD_FUNCS or call.method in ("requires_grad_", "retain_grad", "register_hook"):
                return None
        if any(a.attr == "requires_grad" for a in loop.attr_assigns):
            return None
        function = self.index.enclosing_function(loop.scope)
        if function is not None and _framework_managed(self, function):
            return None
        iter_names = _iterated_names(loop.node.iter)
        loaders = self.flow.dataloader_calls(node.iter, loop.scope, loop.order)
        if not loaders and not any(_LOADER_NAME.search(n) for n in iter_names):
            return None
        forwards = [c for c in loop.calls if c.scope is loop.scope and self.is_model_call(c)]
        if not forwards:
            return None
        named = any(_VAL_LOADER_NAME.search(n) for n in iter_names)
        if not named and any(_TRAIN_LOADER_NAME.search(n) for n in iter_names):
            return None
        scope: Optional[Scope] = loop.scope
        while not named and scope is not None and scope.kind == "function":
            named = bool(_VAL_FUNCTION_NAME.search(scope.name))
            scope = scope.parent
        no_grad = all(self.under_no_grad(c) is True for c in forwards)
        if not named and not no_grad:
            return None
        return ValidationLoop(loop, forwards, named, no_grad, function)


    def function_mode_events(self, function: FunctionInfo, _active: Optional[Set[int]] = None) -> Tuple[str, ...]:
        """The ordered ``train``/``eval``/``step`` events of one run of the
        function (optimizer steps and mode changes, through local functions)."""
        cache = self._lt3_cache("function_events")
        if function in cache:
            return cache[function]
        active = _active if _active is not None else set()
        if id(function) in active:
            return ()
        active.add(id(function))
        events: List[str] = []
        for call in function.scope.calls:
            events.extend(kind for kind, _ in self._call_mode_events(call, active))
        active.discard(id(function))
        result = tuple(events)
        if not active:
            cache[function] = result
        return result

    def _call_mode_events(self, call: CallSite, active: Set[int]) -> List[Tuple[str, CallSite]]:
        kind = mode_call_kind(call)
        if kind is not None:
            return [(kind, call)]
        if STEP in self.call_effects(call):
            return [("step", call)]
        out: List[Tuple[str, CallSite]] = []
        for callee in self._local_functions_reached(call):
            out.extend((event, call) for event in self.function_mode_events(callee, active))
        return out

    def loop_mode_events(self, loop: LoopInfo) -> List[Tuple[str, CallSite]]:
        """``(train|eval|step, call in the loop)`` in the order one
        iteration runs them (calls of local functions expanded in place)."""
        out: List[Tuple[str, CallSite]] = []
        for call in loop.calls:
            if call.scope is loop.scope:
                out.extend(self._call_mode_events(call, set()))
        return out

    def model_created_in(self, call: CallSite) -> Set[Scope]:
        """The function scopes where the module called by ``call`` is
        constructed, when every definition of it is a construction there."""
        out: Set[Scope] = set()
        for value in self.flow.definitions(call.node.func, call.scope, call.order):
            value = self.flow.strip_value_preserving(value)
            if not isinstance(value.expr, cst.Call) or value.scope.kind != "function":
                return set()
            out.add(value.scope)
        return out

    def functions_run_by(self, call: CallSite) -> List[FunctionInfo]:
        """Local functions a call runs: its callee and functions passed to it."""
        return self._local_functions_reached(call)


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


# -- shared by the optimisation-loop rules (LT2xx) ---------------------------



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
        stack.extend((child, path) for child in child_nodes(node))
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
        stack.extend((child, tests) for child in child_nodes(node))
    return []

# -- train/eval mode and validation loops (LT3xx) ------------------------------



class ValidationLoop(NamedTuple):
    loop: LoopInfo
    forwards: List[CallSite]  # the model calls in the loop
    named: bool  # recognised by a function or loader name
    no_grad: bool  # every model call runs under no-grad
    function: Optional[FunctionInfo]


def mode_call_kind(call: CallSite) -> Optional[str]:
    """``eval`` for ``m.eval()`` / ``m.train(False)``, ``train`` for
    ``m.train()`` / ``m.train(True)``; None for anything else (including a
    Hugging Face ``trainer.train()`` and an unknown ``m.train(flag)``)."""
    method = call.method
    if method not in ("eval", "train"):
        return None
    receiver = dotted_name(call.receiver) if call.receiver is not None else None
    if receiver is not None and _NOT_MODE_RECEIVER.search(receiver.rsplit(".", 1)[-1]):
        return None
    if call.qualname is not None:
        return None  # a module-level function: builtins.eval, some_lib.train
    args = call.node.args
    if method == "eval":
        return "eval" if not args else None
    if not args:
        return "train"
    mode = call_arg(call.node, 0, "mode")
    if isinstance(mode, cst.Name) and mode.value in ("True", "False"):
        return "train" if mode.value == "True" else "eval"
    return None


def _framework_managed(facts: "TrainingFacts", function: FunctionInfo) -> bool:
    """Lightning-style hooks: the framework sets train/eval modes itself."""
    if function.name.endswith("_step") or function.name.endswith("_epoch_end") or function.name.startswith("on_"):
        return True
    klass = function.klass
    if klass is None:
        return False
    for cls in facts.flow.local_bases(klass):
        for base in cls.bases:
            name = dotted_name(base) or ""
            if "Lightning" in name or "Callback" in name:
                return True
    return False


def _iterated_names(expr: cst.BaseExpression) -> List[str]:
    """Names of what a ``for`` iterates, looking inside ``enumerate(...)``,
    ``tqdm(...)``, ``zip(...)``: ``val_loader``, ``self.test_dl``."""
    out = []
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, cst.Call):
            stack.extend(a.value for a in node.args if a.keyword is None)
            continue
        name = dotted_name(node)
        if name:
            out.append(name.rsplit(".", 1)[-1])
    return out


_NOT_MODE_RECEIVER = re.compile(r"trainer|engine|pipeline|runner|learner|estimator|session|tuner|agent|solver", re.I)
_NOT_MODEL_NAME = re.compile(r"loss|criterion|metric|optim|sched|transform|augment|loader|collate|fn$|func", re.I)
_MODEL_NAME = re.compile(r"^(?:model|net|network|classifier|clf|encoder|decoder|backbone|generator|discriminator|student|module)$|model$|net$", re.I)
_LOADER_NAME = re.compile(r"loader|_dl$|^dl$|dataset|_ds$|^ds$|batches", re.I)
#: Words one of which a file must contain to hold a validation loop (see
#: ``_LOADER_NAME``; ``DataLoader`` covers loops traced to a loader): rules
#: built on :meth:`TrainingFacts.validation_loops` use them as triggers.
VALIDATION_LOOP_TRIGGERS = ("loader", "Loader", "dataset", "_dl", "_ds", " dl", " ds", "(dl", "(ds", "batches")
_VAL_LOADER_NAME = re.compile(r"^(?:val|valid|validation|test|testing|eval|evaluation|dev|holdout)_?(?:loader|dataloader|dl|ds|dataset|data|set|batches|iter)s?$|(?:val|valid|test|eval)(?:_)?loader$", re.I)
_TRAIN_LOADER_NAME = re.compile(r"^train", re.I)
_VAL_FUNCTION_NAME = re.compile(
    r"^_?(?:run_|do_)?(?:val|valid|validate|validation|eval|evaluate|evaluation)(?:_|$)"
    r"|^_?(?:run_|do_)?test(?:_(?:model|epoch|one_epoch|loop|net|network|accuracy))?$"
    r"|_(?:val|valid|validate|validation|eval|evaluate|evaluation)$",
    re.I,
)
_NEEDS_GRAD_FUNCS = frozenset({"torch.autograd.grad", "torch.autograd.backward", "torch.enable_grad"})


def in_test_code(index: ModuleIndex, scope: Scope) -> bool:
    """Unit-test code (``test_*.py``/``*_test.py`` files, ``test*``
    functions): tiny loops with deliberately large steps, where warnings about
    training quality or memory growth are noise."""
    name = (index.path or "").replace("\\", "/").rsplit("/", 1)[-1]
    if name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py":
        return True
    function = index.enclosing_function(scope)
    while function is not None:
        if function.name.startswith("test"):
            return True
        parent = function.scope.parent
        function = index.enclosing_function(parent) if parent is not None else None
    return False


def backward_target(call: CallSite) -> Optional[cst.BaseExpression]:
    """The loss a backward call differentiates: ``loss`` in ``loss.backward()``,
    ``scaler.scale(loss).backward()``, ``accelerator.backward(loss)``,
    ``fabric.backward(loss)``, ``model_engine.backward(loss)``,
    ``self.manual_backward(loss)`` and ``torch.autograd.backward(loss)``."""
    if call.qualname == "torch.autograd.backward":
        return call.arg(0, "tensors")
    if call.method == "manual_backward":
        return call.arg(0, "loss")
    if call.method != "backward":
        return None
    name = (dotted_name(call.receiver) or "").rsplit(".", 1)[-1].lower()
    if call.node.args and any(word in name for word in _BACKWARD_RUNNERS):
        return call.arg(0, "loss")
    return _unscaled(call.receiver)


_BACKWARD_RUNNERS = ("accelerator", "fabric", "engine", "trainer", "strategy")


def _unscaled(receiver: Optional[cst.BaseExpression]) -> Optional[cst.BaseExpression]:
    if (
        isinstance(receiver, cst.Call)
        and isinstance(receiver.func, cst.Attribute)
        and receiver.func.attr.value == "scale"
        and len(receiver.args) == 1
    ):
        return receiver.args[0].value
    return receiver
