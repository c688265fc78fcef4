"""Modes: train/eval mode and gradient recording.

Which mode a call leaves a model in (``model.eval()``, or a helper that
calls it, read with the literal arguments of each call: ``net_mode(False)``),
which mode a model is in when it runs (the last mode set on each path to
the call, through helpers and callers), whether autograd is off where a call
runs (``no_grad``, ``inference_mode``, a decorator, every caller), and which
functions a framework calls with modes of its own choosing.
"""

from typing import Dict, FrozenSet, List, Optional, Set, Tuple

import libcst as cst

from lintorch import torchapi as api
from lintorch.analyze import names
from lintorch.analyze.forwards import Forwards
from lintorch.analyze.models import Models
from lintorch.analyze.optim import BACKWARD, STEP, Optimization
from lintorch.analyze.statements import Statements, loops_around, names_in_args
from lintorch.analyze.values import Values
from lintorch.index import CallSite, FunctionInfo, LoopInfo, Scope, call_arg, dotted_name, int_value, iter_nodes

MODE_UNKNOWN = "mode?"  # a mode set by an argument the call does not fix
_UNKNOWN = object()


class Modes:
    def __init__(self, values: Values, models: Models, optim: Optimization, forwards: Forwards, statements: Statements):
        self.values = values
        self.models = models
        self.optim = optim
        self.forwards = forwards
        self.statements = statements
        self.index = values.index

    def _cache(self, name: str) -> dict:
        return self.__dict__.setdefault("_lt3_" + name, {})

    # -- gradient recording ---------------------------------------------------


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


    def under_no_grad(
        self, call: CallSite, _depth: int = 0, _created_in: Optional[Set[Scope]] = None, uncalled: Optional[bool] = None
    ) -> Optional[bool]:
        """Whether autograd is off when ``call`` runs: a no-grad ``with``
        around it, a no-grad decorator on an enclosing function, an earlier
        ``torch.set_grad_enabled(False)`` in its function, or (for a
        function called in this module) every caller under no-grad.
        For a function never called in this module (and that neither trains
        nor builds the model) the answer is ``uncalled``: None (unknown) by
        default, False where the caller elsewhere is assumed to leave autograd
        at its default. None also when ``set_grad_enabled(flag)`` decides."""
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
            return uncalled
        results = [self.under_no_grad(c, _depth + 1, _created_in, uncalled) for c in callers]
        if all(r is True for r in results):
            return True
        if any(r is False for r in results):
            return False
        return None


    def grad_enabled(self, forward: CallSite) -> Optional[bool]:
        """Whether a forward of an evaluation pass records the autograd graph:
        True unless autograd is visibly off (see :meth:`under_no_grad`; a
        function only called from other modules is assumed to run with
        autograd at its default, on). For a helper that runs the model
        (``model.validation_step(batch)``), a no-grad context inside the
        helper counts too."""
        inner = self.forwards.model_call_in(forward)
        if inner is not None and inner is not forward and self.grad_disabled_by(inner) is not None:
            return False
        # A notebook function that no cell calls never runs; a module's may be called from elsewhere.
        uncalled = None if self.index.path.endswith(".ipynb") else False
        state = self.under_no_grad(forward, uncalled=uncalled)
        return None if state is None else not state

    # -- train/eval mode ------------------------------------------------------


    def call_mode(self, call: CallSite) -> Optional[str]:
        """``train`` | ``eval``: the mode the call leaves a module in, directly
        (``model.eval()``, ``model.train()``, ``model.train(False)``) or
        through a local function (its last mode call wins, branches on the
        call's literal arguments resolved); ``mode?`` when that depends on an
        argument the call does not fix; None when it sets no mode."""
        net = None
        for event in self.call_mode_events(call):
            if event != STEP:
                net = event
        return net


    def function_modes(self, function: FunctionInfo) -> Tuple[Optional[str], FrozenSet[str]]:
        """(mode a call of the function with its default arguments leaves
        the model in, every mode it may set), through local functions."""
        events = [e for e in self.function_mode_events(function) if e != STEP]
        return (events[-1] if events else None), frozenset(events)


    def function_mode_events(
        self, function: FunctionInfo, env: Optional[Dict[str, object]] = None, _active: Optional[Set[int]] = None
    ) -> Tuple[str, ...]:
        """The ordered ``train``/``eval``/``step``/``mode?`` events of one run
        of the function (optimizer steps and mode changes, through local
        functions). ``env`` gives literal values of its parameters (defaults
        fill the rest): ``if train: net.train() else: net.eval()`` keeps only
        the branch they select, and a mode chosen by a parameter that is not
        known is ``mode?``."""
        env = dict(self._parameter_defaults(function), **(env or {}))
        key = (function, tuple(sorted(env.items(), key=lambda kv: kv[0])))
        cache = self._cache("function_events")
        if key in cache:
            return cache[key]
        active = _active if _active is not None else set()
        if id(function) in active:
            return ()
        active.add(id(function))
        params = {name for name, _, _ in function.params}
        events: List[str] = []
        for call in function.scope.calls:
            taken = self._branch_taken(call, env, params)
            if taken is False:
                continue
            for kind in self._call_events(call, env, params, active):
                events.append(MODE_UNKNOWN if taken is None and kind != STEP else kind)
        active.discard(id(function))
        result = tuple(events)
        if not active:
            cache[key] = result
        return result


    def call_mode_events(self, call: CallSite, _active: Optional[Set[int]] = None) -> Tuple[str, ...]:
        """The mode/step events one execution of ``call`` causes."""
        return tuple(self._call_events(call, {}, set(), _active if _active is not None else set()))


    def loop_mode_events(self, loop: LoopInfo) -> List[Tuple[str, CallSite]]:
        """``(train|eval|step|mode?, call in the loop)`` in the order one
        iteration runs them (calls of local functions expanded in place,
        with their literal arguments)."""
        out: List[Tuple[str, CallSite]] = []
        for call in loop.calls:
            if call.scope is loop.scope:
                out.extend((kind, call) for kind in self.call_mode_events(call))
        return out


    def _call_events(self, call: CallSite, env: Dict[str, object], params: Set[str], active: Set[int]) -> List[str]:
        kind = mode_call_kind(call)
        if kind is not None:
            return [kind]
        if call.method == "train" and len(call.node.args) == 1 and mode_call_kind(call, probe=True):
            flag = call_arg(call.node, 0, "mode")
            if isinstance(flag, cst.Name) and flag.value in params:
                value = env.get(flag.value, _UNKNOWN)
                if isinstance(value, bool):
                    return ["train" if value else "eval"]
                return [MODE_UNKNOWN]
        if STEP in self.optim.call_effects(call):
            return [STEP]
        out: List[str] = []
        for callee in self.values.functions_run_by(call):
            out.extend(self.function_mode_events(callee, self._call_env(call, callee, env), active))
        return out


    def _parameter_defaults(self, function: FunctionInfo) -> Dict[str, object]:
        out = {}
        for name, param, _ in function.params:
            if param.default is not None:
                value = _literal(param.default)
                if value is not _UNKNOWN:
                    out[name] = value
        return out


    def _call_env(self, call: CallSite, callee: FunctionInfo, outer: Dict[str, object]) -> Dict[str, object]:
        """Literal arguments of ``call`` by the callee's parameter names
        (a parameter of the caller passed on keeps its known value)."""
        env: Dict[str, object] = {}
        positional = [name for name, _ in callee.positional_params()]
        for name, _, kind in callee.params:
            if kind not in ("pos", "kwonly"):
                continue
            arg = call_arg(call.node, positional.index(name) if name in positional else None, name)
            if arg is None:
                continue
            value = _literal(arg)
            if value is _UNKNOWN and isinstance(arg, cst.Name):
                value = outer.get(arg.value, _UNKNOWN)
            env[name] = value
        return {k: v for k, v in env.items() if v is not _UNKNOWN}


    def _branch_taken(self, call: CallSite, env: Dict[str, object], params: Set[str]) -> Optional[bool]:
        """Whether the ``if`` branches around ``call`` in its function run
        for parameter values ``env``: False when a test on the parameters
        excludes it, None when such a test cannot be decided, True otherwise
        (tests on anything else count as taken)."""
        taken: Optional[bool] = True
        for node, branch in self.values.enclosing_blocks(call):
            if not isinstance(node, cst.If):
                continue
            reads = {n.value for n in iter_nodes(node.test) if isinstance(n, cst.Name)}
            if not reads & params:
                continue
            result = _evaluate(node.test, env)
            if result is None:
                taken = None
            elif result != (branch == "body"):
                return False
        return taken


    def mode_at(self, call: CallSite, _depth: int = 0) -> Optional[str]:
        """``train`` | ``eval``: the mode the model run by ``call`` is in when
        the call runs, following the last mode set on each path to it:
        mode calls earlier in its function (and, in a loop, later in the loop
        body, which run before the next iteration), calls of helpers (their
        last mode, so a ``validate()`` that ends with ``model.train()``
        leaves training mode), then the callers of its function. A mode set
        in only one branch of an ``if`` that does not contain the call makes
        it unknown. ``train`` when some path certainly runs it in training
        mode, None when unknown (a function only called from other modules,
        except where the model is built: a new module trains)."""
        target = self.forwards.forward_target(call)
        return self._mode_at(call, target, _depth)


    def training_mode_paths(self, forward: CallSite) -> List[Tuple[Optional[str], Optional[bool]]]:
        """(mode, :meth:`Models.mode_layers`) of the module a forward runs,
        per caller when it runs a parameter (``evaluate(net)`` called with a
        dropout model in training mode and with a plain one in eval mode are
        two paths), else one pair. A forward through a helper function is
        followed to the model call inside it."""
        call = forward
        if self.forwards.forward_target(forward) is None:
            call = self.forwards.model_call_in(forward) or forward
        target = self.forwards.forward_target(call)
        function = self.index.enclosing_function(call.scope)
        name = dotted_name(target) if target is not None else None
        if function is not None and name is not None and any(n == name for n, _, _ in function.params):
            paths = []
            callers = self.forwards.callers(function)
            if call is not forward and any(c is forward for c in callers):
                callers = [forward]  # the pass runs the helper itself: its other callers (training) are other paths
            for caller in callers:
                if caller.scope is function.scope:
                    continue
                outer = self._target_at_caller(target, function, caller)
                if outer is None:
                    return [(self.mode_at(call), self.forwards.forward_mode_layers(call))]
                entry = self._mode_at(caller, outer, 1)
                paths.append((self._mode_at(call, target, 0, entry), self.models.mode_layers(outer, caller.scope, caller.order)))
            if paths:
                return paths
        return [(self.mode_at(call), self.forwards.forward_mode_layers(call))]


    def train_mode_on_purpose(self, forward: CallSite) -> bool:
        """The pass's own function puts the model in training mode right
        before it, with no optimizer step between: Monte Carlo dropout,
        a batch-norm statistics refresh. (A ``model.train()`` followed by
        training steps, or one left behind by a helper, is not.)"""
        call = forward if self.forwards.forward_target(forward) is not None else (self.forwards.model_call_in(forward) or forward)
        target = self.forwards.forward_target(call)
        last = None
        for event, kind in sorted(self._mode_events_before(call, target), key=lambda e: e[0].order):
            if event.order < call.order and not self.conditional_to(event, call):
                last = (event, kind)
        if last is None or last[1] != "train" or mode_call_kind(last[0]) != "train":
            return False
        return not any(
            last[0].order < effect.call.order < call.order and STEP in effect.effects
            for effect in self.optim.scope_effects(call.scope)
        )


    def _mode_at(
        self, call: CallSite, target: Optional[cst.BaseExpression], depth: int, entry: object = _UNKNOWN
    ) -> Optional[str]:
        cache = self._cache("mode_at")
        key = (id(call.node), id(target), entry)
        if key in cache:
            return cache[key]
        cache[key] = None  # a recursion through callers answers "unknown"
        if entry is _UNKNOWN:
            entry = self._entry_mode(call, target, depth)
        loops = [loop for loop in loops_around(call) if loop.scope is call.scope]
        events = self._mode_events_before(call, target)
        events.sort(key=lambda e: e[0].order)
        first = _run_events(entry, [e for e in events if e[0].order < call.order], self, call)
        result = first
        if loops:
            outer = loops[-1]
            inside = [e for e in events if self.index.loop_contains(outer, e[0].node)]
            later = [e for e in inside if e[0].order > call.order]
            if later:
                # the rest of this iteration, then the next one up to the call
                again = _run_events(first, later + [e for e in inside if e[0].order < call.order], self, call)
                result = first if first == again else ("train" if "train" in (first, again) else None)
        cache[key] = result
        return result


    def _entry_mode(self, call: CallSite, target: Optional[cst.BaseExpression], depth: int) -> Optional[str]:
        function = self.index.enclosing_function(call.scope)
        if function is None:
            return "train"  # a module is built in training mode
        callers = [c for c in self.forwards.callers(function) if c.scope is not function.scope]
        if not callers:
            created = self.models.model_created_in(call) if target is not None else set()
            if function.scope in created or self._never_in_eval(target, call):
                return "train"
            return None
        if depth >= 3:
            return None
        results = [self._mode_at(c, self._target_at_caller(target, function, c), depth + 1) for c in callers]
        if "train" in results:
            return "train"
        return "eval" if results and all(r == "eval" for r in results) else None


    def _never_in_eval(self, target, call: CallSite) -> bool:
        """A module-level model that nothing in this module ever puts in eval
        mode: whenever the function runs, the model trains (a new module does)."""
        name = dotted_name(target) if target is not None else None
        if name is None or "." in name:
            return False
        bindings = self.index.lookup(name, call.scope, call.order)
        if not bindings or any(b.scope.kind != "module" or b.kind in ("param", "import") for b in bindings):
            return False
        for other in self.index.calls:
            kind = self.call_mode(other)
            if kind not in ("eval", MODE_UNKNOWN):
                continue
            if mode_call_kind(other, probe=True) is not None:
                if self._same_module(other, target, call, "eval"):
                    return False
            elif name in names_in_args(other) or any(
                name in {(dotted_name(c.receiver) or "").split(".")[0] for c in f.scope.calls if c.receiver is not None}
                for f in self.values.functions_run_by(other)
            ):
                return False  # a helper given the model, or one that switches it itself
        return True


    def _target_at_caller(self, target, function: FunctionInfo, caller: CallSite) -> Optional[cst.BaseExpression]:
        """The expression at the call site for a target rooted at a parameter
        (``net`` in ``evaluate(net, loader)`` called as ``evaluate(model, ...)``,
        ``self`` in a method called as ``model.evaluate(...)``)."""
        name = dotted_name(target) if target is not None else None
        if name is None:
            return None
        root = name.split(".")[0]
        if root == "self" and function.is_method:
            receiver = caller.receiver if caller.method == function.name else None
            return receiver if name == "self" and isinstance(receiver, (cst.Name, cst.Attribute)) else None
        positional = [n for n, _ in function.positional_params()]
        if not any(root == n for n, _, _ in function.params):
            return target  # a global or self attribute: the same expression
        arg = call_arg(caller.node, positional.index(root) if root in positional else None, root)
        return arg if isinstance(arg, (cst.Name, cst.Attribute)) and "." not in name else None


    def _mode_events_before(self, call: CallSite, target) -> List[Tuple[CallSite, str]]:
        out = []
        for other in call.scope.calls:
            if other is call:
                continue
            kind = self.call_mode(other)
            if kind is None:
                continue
            direct = mode_call_kind(other) is not None
            if direct and not self._same_module(other, target, call, kind):
                continue
            out.append((other, kind))
        return out


    def _same_module(self, mode_call: CallSite, target, call: CallSite, kind: str) -> bool:
        """Whether ``receiver.eval()`` changes the module ``target`` (run at ``call``)."""
        receiver = mode_call.receiver
        a = dotted_name(receiver) if receiver is not None else None
        b = dotted_name(target) if target is not None else None
        if a is None or b is None or a == b or b.startswith(a + "."):
            return True
        if a.startswith(b + "."):
            return kind == "eval"  # a submodule in eval mode: not evidence of training mode
        return self.values.same_object(receiver, mode_call, target, call)


    def conditional_to(self, event: CallSite, call: CallSite) -> bool:
        """Whether ``event`` sits in an ``if`` branch (or a conditional
        expression arm) that does not contain ``call`` (same scope)."""
        blocks = {(id(n), b) for n, b in self.values.enclosing_blocks(call) if isinstance(n, cst.If)}
        if any(isinstance(n, cst.If) and (id(n), b) not in blocks for n, b in self.values.enclosing_blocks(event)):
            return True
        syntax = self.statements.of(event.scope)
        return not set(syntax.arms.get(id(event.node), ())) <= set(syntax.arms.get(id(call.node), ()))

    # -- evaluation passes ------------------------------------------------------


    def framework_managed(self, function: FunctionInfo) -> bool:
        """Lightning-style hooks: the framework sets train/eval modes itself.
        Hook names (``*_step``, ``*_epoch_end``, ``on_*``) count only in a
        class that is not visibly a plain ``torch.nn.Module``."""
        klass = function.klass
        hook = function.name.endswith("_step") or function.name.endswith("_epoch_end") or function.name.startswith("on_")
        if klass is None:
            return False
        plain = True
        for cls in self.values.local_bases(klass):
            for base in cls.bases:
                name = dotted_name(base) or ""
                if "Lightning" in name or "Callback" in name:
                    return True
                if isinstance(base, cst.Name) and self.index.class_named(base.value, cls.scope.parent or self.index.module_scope):
                    continue
                qualname = self.index.qualname_of(base, cls.scope.parent or self.index.module_scope)
                if qualname is None or not qualname.startswith("torch.nn."):
                    plain = False
        return hook and not plain



def _literal(expr: cst.BaseExpression) -> object:
    if isinstance(expr, cst.Name) and expr.value in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[expr.value]
    if isinstance(expr, cst.SimpleString):
        return expr.evaluated_value
    number = int_value(expr)
    return number if number is not None else _UNKNOWN



def _evaluate(test: cst.BaseExpression, env: Dict[str, object]) -> Optional[bool]:
    """The truth of an ``if`` test over literal parameter values; None when unknown."""
    if isinstance(test, cst.Name):
        value = env.get(test.value, _UNKNOWN) if test.value not in ("True", "False", "None") else _literal(test)
        return None if value is _UNKNOWN else bool(value)
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        inner = _evaluate(test.expression, env)
        return None if inner is None else not inner
    if isinstance(test, cst.BooleanOperation):
        left, right = _evaluate(test.left, env), _evaluate(test.right, env)
        if isinstance(test.operator, cst.And):
            return False if False in (left, right) else (None if None in (left, right) else True)
        return True if True in (left, right) else (None if None in (left, right) else False)
    if isinstance(test, cst.Comparison) and len(test.comparisons) == 1:
        left = env.get(test.left.value, _UNKNOWN) if isinstance(test.left, cst.Name) and test.left.value in env else _literal(test.left)
        right_node = test.comparisons[0].comparator
        right = env.get(right_node.value, _UNKNOWN) if isinstance(right_node, cst.Name) and right_node.value in env else _literal(right_node)
        if left is _UNKNOWN or right is _UNKNOWN:
            return None
        operator = test.comparisons[0].operator
        if isinstance(operator, (cst.Equal, cst.Is)):
            return left == right
        if isinstance(operator, (cst.NotEqual, cst.IsNot)):
            return left != right
    return None



def _run_events(state: Optional[str], events, modes: "Modes", call: CallSite) -> Optional[str]:
    """Apply mode events in the order given: an unconditional one sets the
    mode, one in a branch that does not contain ``call`` makes a different
    mode unknown."""
    for event, kind in events:
        if kind == MODE_UNKNOWN:
            state = None
        elif modes.conditional_to(event, call):
            if kind != state:
                state = None
        else:
            state = kind
    return state



def mode_call_kind(call: CallSite, probe: bool = False) -> Optional[str]:
    """``eval`` for ``m.eval()`` / ``m.train(False)``, ``train`` for
    ``m.train()`` / ``m.train(True)``; None for anything else (including a
    Hugging Face ``trainer.train()`` and an unknown ``m.train(flag)``).
    With ``probe``, any truthy result for ``m.train(flag)`` on a module."""
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
    return MODE_UNKNOWN if probe else None

