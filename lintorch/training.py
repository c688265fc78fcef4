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
