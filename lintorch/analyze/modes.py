"""Modes: train/eval mode, gradient recording, and evaluation passes.

Which mode a call leaves a model in (``model.eval()``, a helper that calls
it), whether autograd is off where a call runs (``no_grad``,
``inference_mode``, a decorator, every caller), and which loops evaluate a
model without training it.
"""

from typing import Dict, FrozenSet, List, NamedTuple, Optional, Set, Tuple

import libcst as cst

from lintorch import torchapi as api
from lintorch.analyze import names
from lintorch.analyze.data import Data
from lintorch.analyze.models import Models
from lintorch.analyze.optim import BACKWARD, STEP, Optimization
from lintorch.analyze.values import Values
from lintorch.index import CallSite, FunctionInfo, LoopInfo, Scope, call_arg, dotted_name


class ValidationLoop(NamedTuple):
    loop: LoopInfo
    forwards: List[CallSite]  # the model calls in the loop
    named: bool  # recognised by a function or loader name
    no_grad: bool  # every model call runs under no-grad
    function: Optional[FunctionInfo]


_NEEDS_GRAD_FUNCS = frozenset({"torch.autograd.grad", "torch.autograd.backward", "torch.enable_grad"})


class Modes:
    def __init__(self, values: Values, models: Models, optim: Optimization, data: Data):
        self.values = values
        self.models = models
        self.optim = optim
        self.data = data
        self.index = values.index

    def _cache(self, name: str) -> dict:
        return self.__dict__.setdefault("_lt3_" + name, {})

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
                mode = call_arg(expr, 0, "mode")
                if isinstance(mode, cst.Name) and mode.value == "False":
                    return True
            return False
        if qualname in api.GRAD_ENABLING:
            return True
        if qualname in api.SET_GRAD_ENABLED and isinstance(expr, cst.Call):
            mode = call_arg(expr, 0, "mode")
            if isinstance(mode, cst.Name) and mode.value == "False":
                return False
            return True  # set_grad_enabled(is_train): may be on
        return None

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
            _created_in = self.models.model_created_in(call) if self.models.is_model_call(call) else set()
        callers = [c for c in self.values.callers(function) if c.scope is not function.scope]
        if not callers:
            if function.scope in _created_in or BACKWARD in self.optim.function_effects(function):
                return False  # the model is built here, or this function trains: autograd is on
            return None
        results = [self.under_no_grad(c, _depth + 1, _created_in) for c in callers]
        if all(r is True for r in results):
            return True
        if any(r is False for r in results):
            return False
        return None

    def call_mode(self, call: CallSite) -> Optional[str]:
        """``train`` | ``eval``: the mode the call leaves a module in, directly
        (``model.eval()``, ``model.train()``, ``model.train(False)``) or
        through a local function (its last mode call wins); None otherwise."""
        kind = mode_call_kind(call)
        if kind is not None:
            return kind
        for callee in self.values.functions_run_by(call):
            net, _ = self.function_modes(callee)
            if net is not None:
                kind = net
        return kind

    def function_modes(self, function: FunctionInfo, _active: Optional[Set[int]] = None) -> Tuple[Optional[str], FrozenSet[str]]:
        """(mode the function leaves the model in: its last mode call, every
        mode it sets anywhere), through local functions it calls."""
        cache = self._cache("function_modes")
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
                for callee in self.values.functions_run_by(call):
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
        return any(mode in self.function_modes(f)[1] for f in self.values.functions_run_by(call))

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
            _created_in = self.models.model_created_in(call)
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
        callers = [c for c in self.values.callers(function) if c.scope is not function.scope]
        if not callers:
            return False if function.scope in _created_in else None
        results = [self.mode_set_before(c, mode, None, _depth + 1, _created_in) for c in callers]
        if all(r is True for r in results):
            return True
        if any(r is False for r in results):
            return False
        return None

    def validation_loops(self) -> List[ValidationLoop]:
        """Loops that evaluate a model on data without training it: ``for``
        loops over a data loader that call a model, run no ``backward()`` or
        optimizer step and need no gradients, and are recognisable as
        validation by their function's name (``validate``, ``evaluate``,
        ``test``...), the loader's name (``val_loader``, ``test_loader``...)
        or a no-grad context. Framework hooks (Lightning ``*_step``
        methods) are left out: the framework sets the modes. Only the
        outermost such loop is returned when they nest."""
        cache = self._cache("validation_loops")
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

    def _validation_loop(self, loop: LoopInfo) -> Optional[ValidationLoop]:
        node = loop.node
        if not isinstance(node, cst.For):
            return None
        witnesses = self.optim.loop_witnesses(loop)
        if BACKWARD in witnesses or STEP in witnesses:
            return None
        for call in loop.calls:
            if call.qualname in _NEEDS_GRAD_FUNCS or call.method in ("requires_grad_", "retain_grad", "register_hook"):
                return None
        if any(a.attr == "requires_grad" for a in loop.attr_assigns):
            return None
        function = self.index.enclosing_function(loop.scope)
        if function is not None and self.framework_managed(function):
            return None
        iter_names = _iterated_names(loop.node.iter)
        loaders = self.data.dataloader_calls(node.iter, loop.scope, loop.order)
        if not loaders and not any(names.is_loader_name(n) for n in iter_names):
            return None
        forwards = [c for c in loop.calls if c.scope is loop.scope and self.models.is_model_call(c)]
        if not forwards:
            return None
        named = any(names.is_validation_loader_name(n) for n in iter_names)
        if not named and any(names.is_training_name(n) for n in iter_names):
            return None
        scope: Optional[Scope] = loop.scope
        while not named and scope is not None and scope.kind == "function":
            named = names.is_validation_function_name(scope.name)
            scope = scope.parent
        no_grad = all(self.under_no_grad(c) is True for c in forwards)
        if not named and not no_grad:
            return None
        return ValidationLoop(loop, forwards, named, no_grad, function)

    def function_mode_events(self, function: FunctionInfo, _active: Optional[Set[int]] = None) -> Tuple[str, ...]:
        """The ordered ``train``/``eval``/``step`` events of one run of the
        function (optimizer steps and mode changes, through local functions)."""
        cache = self._cache("function_events")
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
        if STEP in self.optim.call_effects(call):
            return [("step", call)]
        out: List[Tuple[str, CallSite]] = []
        for callee in self.values.functions_run_by(call):
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

    def framework_managed(self, function: FunctionInfo) -> bool:
        """Lightning-style hooks: the framework sets train/eval modes itself."""
        if function.name.endswith("_step") or function.name.endswith("_epoch_end") or function.name.startswith("on_"):
            return True
        klass = function.klass
        if klass is None:
            return False
        for cls in self.values.local_bases(klass):
            for base in cls.bases:
                name = dotted_name(base) or ""
                if "Lightning" in name or "Callback" in name:
                    return True
        return False


def mode_call_kind(call: CallSite) -> Optional[str]:
    """``eval`` for ``m.eval()`` / ``m.train(False)``, ``train`` for
    ``m.train()`` / ``m.train(True)``; None for anything else (including a
    Hugging Face ``trainer.train()`` and an unknown ``m.train(flag)``)."""
    method = call.method
    if method not in ("eval", "train"):
        return None
    receiver = dotted_name(call.receiver) if call.receiver is not None else None
    if receiver is not None and names.is_not_module_receiver(receiver.rsplit(".", 1)[-1]):
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
