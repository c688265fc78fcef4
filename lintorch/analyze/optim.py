"""Optimisation: optimizers, their steps, schedulers and training loops.

What each call does to training (``backward()``, an optimizer ``step()``,
``zero_grad()``, a scheduler step), directly or through the local functions
it runs (``train_one_epoch()``, closures passed to ``optimizer.step``,
``self.training_step``), and which loops therefore train.
"""

from typing import Dict, FrozenSet, List, NamedTuple, Optional, Set, Tuple

import libcst as cst

from lintorch import torchapi as api
from lintorch.analyze import names
from lintorch.analyze.data import Data
from lintorch.analyze.values import Value, Values
from lintorch.index import AttrAssign, CallSite, FunctionInfo, LoopInfo, Scope, dotted_name, int_value, iter_nodes

BACKWARD = "backward"
STEP = "step"
ZERO_GRAD = "zero_grad"
SCHEDULER_STEP = "scheduler_step"

#: effect -> the call (or attribute assignment) in the analysed body that
#: causes it, directly or through a local function.
Witnesses = Dict[str, cst.CSTNode]


class EffectCall(NamedTuple):
    """A call with training effects, in statement order (``scope_effects``)."""

    call: CallSite
    #: Everything the call causes, itself or through local functions it runs.
    effects: FrozenSet[str]
    #: What the call itself does (``optimizer.step()`` -> STEP), without
    #: the effects of local functions it runs.
    own: FrozenSet[str]


class Optimization:
    def __init__(self, values: Values, data: Data):
        self.values = values
        self.data = data
        self.index = values.index
        self._function_effects: Dict[FunctionInfo, FrozenSet[str]] = {}
        self._cut_by_cycle = False  # the function being summarised reached one still in progress
        self._loop_effects: Dict[LoopInfo, Witnesses] = {}
        self._receiver_kinds: Dict[int, Optional[str]] = {}

    def receiver_kind(self, call: CallSite) -> Optional[str]:
        """``optimizer`` | ``scheduler`` | ``scaler`` | None for ``x.method()``."""
        key = id(call.node)
        if key in self._receiver_kinds:
            return self._receiver_kinds[key]
        kind = None
        receiver = call.receiver
        if receiver is not None:
            for qualname in self.values.instance_qualnames(receiver, call.scope, call.order):
                if qualname.startswith(api.LR_SCHEDULER_PREFIX):
                    kind = "scheduler"
                elif qualname in api.GRAD_SCALERS:
                    kind = "scaler"
                elif qualname.startswith(api.OPTIMIZER_PREFIX):
                    kind = "optimizer"
            if kind is None:
                kind = names.optimisation_kind(dotted_name(receiver))
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

    def function_effects(self, function: FunctionInfo, _active: Optional[Set[int]] = None) -> FrozenSet[str]:
        cached = self._function_effects.get(function)
        if cached is not None:
            return cached
        active = _active if _active is not None else set()
        if id(function) in active:
            self._cut_by_cycle = True
            return frozenset()
        active.add(id(function))
        outer_cut, self._cut_by_cycle = self._cut_by_cycle, False
        effects: Set[str] = set()
        scopes = function.scope.with_descendants()
        for scope in scopes:
            for call in scope.calls:
                effects |= self.call_effects(call)
                for callee in self.values.functions_run_by(call):
                    effects |= self.function_effects(callee, active)
            for assign in self.index.attr_assigns_in(scope):
                if _clears_grad(assign):
                    effects.add(ZERO_GRAD)
        active.discard(id(function))
        cut, self._cut_by_cycle = self._cut_by_cycle, outer_cut or self._cut_by_cycle
        result = frozenset(effects)
        # Cached unless a recursive call cut it short: the outermost call's
        # result is whole, as is one that met no function in progress.
        if not active or not cut:
            self._function_effects[function] = result
        return result

    def loop_witnesses(self, loop: LoopInfo) -> Witnesses:
        """What the loop does per iteration, with the node responsible."""
        cached = self._loop_effects.get(loop)
        if cached is not None:
            return cached
        witnesses: Witnesses = {}
        for call in loop.calls:
            for effect in self.call_effects(call):
                witnesses.setdefault(effect, call.node)
            for callee in self.values.functions_run_by(call):
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

    def scope_effects(self, scope: Scope) -> List[EffectCall]:
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
            for callee in self.values.functions_run_by(call):
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

    def steps_per_iteration(self, loop: LoopInfo) -> bool:
        """Whether one iteration of ``loop`` runs an optimizer step outside
        any nested loop: directly, or through a local function that steps
        without looping itself (``train_step(batch)``, not ``train_one_epoch()``)."""
        for call in loop.calls:
            if call.loop is not loop:
                continue
            if STEP in self.call_effects(call):
                return True
            if any(self._steps_outside_loops(f) for f in self.values.functions_run_by(call)):
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
                for callee in self.values.functions_run_by(call):
                    if callee is not function and self._steps_outside_loops(callee, _depth + 1):
                        return True
        return False

    def uncleared_steps(self, loop: LoopInfo) -> List[CallSite]:
        """The optimizer steps in ``loop`` whose optimizer no gradient clearing
        in the loop covers, when every clearing in it is visibly
        ``other_optimizer.zero_grad()``: in a GAN that clears only
        ``optimizer_E``, ``optimizer_D.step()`` applies ever-growing
        gradients. Empty when any clearing could cover every parameter
        (``model.zero_grad()``, ``p.grad = None``, a helper)."""
        if any(_clears_grad(assign) for assign in loop.attr_assigns):
            return []
        cleared: List[Set[int]] = []
        steps: List[Tuple[CallSite, Set[int]]] = []
        for call in loop.calls:
            if any(ZERO_GRAD in self.function_effects(f) for f in self.values.functions_run_by(call)):
                return []
            own = self.call_effects(call)
            if ZERO_GRAD in own:
                constructions = self._optimizer_constructions(call.receiver, call) if call.method == "zero_grad" else None
                if not constructions:
                    return []  # model.zero_grad(), p.grad.zero_(), an unknown receiver: may clear everything
                cleared.append(constructions)
            if STEP in own:
                optimizer = self.stepped_optimizer(call)
                constructions = self._optimizer_constructions(optimizer, call) if optimizer is not None else None
                if constructions:
                    steps.append((call, constructions))
        if not cleared:
            return []
        return [call for call, built in steps if not any(built & other for other in cleared)]

    def _optimizer_constructions(self, expr: Optional[cst.BaseExpression], call: CallSite) -> Optional[Set[int]]:
        """Ids of the ``torch.optim`` constructor calls ``expr`` may be; None
        unless every definition visibly is one."""
        if expr is None:
            return None
        out: Set[int] = set()
        for value in self.values.definitions(expr, call.scope, call.order):
            qualname, _ = self.values.constructor(value)
            if qualname is None or not qualname.startswith(api.OPTIMIZER_PREFIX) or qualname.startswith(
                api.LR_SCHEDULER_PREFIX
            ):
                return None
            out.add(id(value.expr))
        return out or None

    def iteration_limit(self, loop: LoopInfo) -> Optional[int]:
        """How many iterations a ``for`` loop visibly runs at most when it
        stops itself after a literal count: ``for i, batch in
        enumerate(loader): ... if i == 3: break`` (a timing or smoke run)."""
        node = loop.node
        if not isinstance(node, cst.For) or not isinstance(node.body, cst.IndentedBlock):
            return None
        iterable, target = node.iter, node.target
        if not (
            isinstance(iterable, cst.Call)
            and dotted_name(iterable.func) == "enumerate"
            and len(iterable.args) == 1
            and isinstance(target, cst.Tuple)
            and target.elements
            and isinstance(target.elements[0].value, cst.Name)
        ):
            return None
        counter = target.elements[0].value.value
        for statement in node.body.body:
            limit = _break_at_count(statement, counter)
            if limit is not None:
                return limit
        return None

    def is_batch_loop(self, loop: LoopInfo) -> bool:
        """A loop whose iterations are mini-batches: it steps the optimizer
        once per iteration and either runs inside another loop (the epoch
        loop, possibly in a caller) or iterates over a data loader."""
        if not self.steps_per_iteration(loop):
            return False
        if loop.parent is not None and loop.parent.scope is loop.scope:
            return True
        if isinstance(loop.node, cst.For) and self.data.iterates_loader(loop):
            return True
        function = self.index.enclosing_function(loop.scope)
        if function is not None and loop.parent is None:
            return any(call.loop is not None for call in self.values.callers(function))
        return False

    def scheduler_constructor(self, call: CallSite) -> Optional[Tuple[str, Value]]:
        """For ``scheduler.step()``: the torch scheduler class and the
        constructor call that built the receiver, when unique and visible
        (a ``None`` for "no scheduler configured" does not count)."""
        receiver = call.receiver
        if receiver is None:
            return None
        found = []
        values = self.values.definitions(receiver, call.scope, call.order)
        if isinstance(receiver, cst.Name) and values and all(_is_none(v.expr) for v in values):
            # ``scheduler = MultiStepLR(...)`` in one branch, ``scheduler = None``
            # in the other: the step (guarded by ``if scheduler``) runs on the first.
            for scope in (call.scope, *([call.scope.parent] if call.scope.parent else [])):
                for binding in scope.bindings.get(receiver.value, ()):
                    if binding.kind == "assign" and binding.value is not None and not binding.unpack:
                        values.extend(self.values.definitions(binding.value, binding.scope, binding.order))
        for value in values:
            if _is_none(value.expr):
                continue
            value = self.values.strip_value_preserving(value)
            qualname, _ = self.values.constructor(value)
            found.append((qualname, value))
        if len(found) != 1 or found[0][0] is None:
            return None
        return found[0]

    def backpropagated_bindings(self, scope: Scope) -> Set[int]:
        """Ids of the bindings in ``scope`` whose value flows into a
        ``backward()`` call there (``loss = ...`` before ``loss.backward()``,
        and what that assignment reads), binding by binding: a training
        ``loss`` and an evaluation ``loss`` later in the same notebook are
        told apart."""
        cache = self.__dict__.setdefault("_backprop_bindings", {})
        cached = cache.get(scope)
        if cached is not None:
            return cached
        found: Set[int] = set()
        todo: List[Tuple[cst.CSTNode, int]] = []
        for call in scope.calls:
            if BACKWARD in self.call_effects(call):
                todo.append((call.receiver if call.receiver is not None and call.method else call.node, call.order))
        while todo and len(found) < 64:
            root, order = todo.pop()
            for node in iter_nodes(root):
                if not isinstance(node, cst.Name):
                    continue
                for binding in self.index.lookup(node.value, scope, order):
                    if binding.scope is scope and id(binding) not in found:
                        found.add(id(binding))
                        if binding.value is not None:
                            todo.append((binding.value, binding.order))
                        if binding.kind == "augassign":
                            todo.append((cst.Name(binding.name), binding.order))
        cache[scope] = found
        return found

    @staticmethod
    def optimized_module(params: Optional[cst.BaseExpression]) -> Optional[str]:
        """The dotted name of the module whose parameters an optimizer's
        ``params`` argument holds: ``model.parameters()``,
        ``filter(lambda p: p.requires_grad, model.parameters())``,
        ``[p for p in model.parameters() if p.requires_grad]``."""
        if isinstance(params, cst.Call) and isinstance(params.func, cst.Name) and params.func.value == "filter":
            params = params.args[1].value if len(params.args) == 2 else None
        if isinstance(params, (cst.ListComp, cst.GeneratorExp)) and params.for_in.inner_for_in is None:
            element, target = params.elt, params.for_in.target
            if isinstance(element, cst.Name) and isinstance(target, cst.Name) and element.value == target.value:
                params = params.for_in.iter
            else:
                return None
        if (
            isinstance(params, cst.Call)
            and not params.args
            and isinstance(params.func, cst.Attribute)
            and params.func.attr.value == "parameters"
        ):
            return dotted_name(params.func.value)
        return None

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


def _break_at_count(statement: cst.CSTNode, counter: str) -> Optional[int]:
    """``if i == 3: break`` / ``if i >= 3: break`` at the top level of a loop
    body: the number of iterations the loop runs (4 here)."""
    if not isinstance(statement, cst.If) or statement.orelse is not None:
        return None
    first = statement.body.body[0] if statement.body.body else None  # a suite or an indented block
    if isinstance(first, cst.SimpleStatementLine):
        first = first.body[0] if first.body else None
    if not isinstance(first, cst.Break):
        return None
    test = statement.test
    if not (isinstance(test, cst.Comparison) and len(test.comparisons) == 1):
        return None
    if not (isinstance(test.left, cst.Name) and test.left.value == counter):
        return None
    operator, count = test.comparisons[0].operator, int_value(test.comparisons[0].comparator)
    if count is None or count < 0:
        return None
    if isinstance(operator, (cst.Equal, cst.GreaterThanEqual)):
        return count + 1
    if isinstance(operator, cst.GreaterThan):
        return count + 2
    return None


def _is_none(node: cst.CSTNode) -> bool:
    return isinstance(node, cst.Name) and node.value == "None"


def _is_grad_attr(node: Optional[cst.BaseExpression]) -> bool:
    """``p.grad`` or ``p.grad.data``."""
    if isinstance(node, cst.Attribute) and node.attr.value == "data":
        node = node.value
    return isinstance(node, cst.Attribute) and node.attr.value == "grad"


def _clears_grad(assign: AttrAssign) -> bool:
    """``p.grad = None`` / ``p.grad = torch.zeros_like(p)``."""
    return assign.attr == "grad"


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
    name = (dotted_name(call.receiver) or "").rsplit(".", 1)[-1]
    if call.node.args and names.is_backward_runner_name(name):
        return call.arg(0, "loss")
    return _unscaled(call.receiver)


def _unscaled(receiver: Optional[cst.BaseExpression]) -> Optional[cst.BaseExpression]:
    if (
        isinstance(receiver, cst.Call)
        and isinstance(receiver.func, cst.Attribute)
        and receiver.func.attr.value == "scale"
        and len(receiver.args) == 1
    ):
        return receiver.args[0].value
    return receiver

