"""Evaluation passes: blocks that run a model without training it.

An evaluation pass is recognised by behaviour: code that runs a model (see
``forwards``), never runs ``backward()`` or an optimizer step, needs no
gradients and uses the outputs. Names only add confidence (``named``); a
pass needs evidence that is not a name: it iterates a data loader, the model
was put in eval mode, autograd is off, it runs between training steps, or
it runs a pretrained model that nothing here trains (an inference script).
Kinds: a loop or comprehension over data, the evaluation phase of a loop
shared with training, and a block outside any data loop (a full-batch
evaluation, a prediction helper).
"""

from typing import Dict, FrozenSet, List, NamedTuple, Optional, Set, Tuple

import libcst as cst

from lintorch import torchapi as api
from lintorch.analyze import names
from lintorch.analyze.data import Data
from lintorch.analyze.forwards import Forwards
from lintorch.analyze.models import Models
from lintorch.analyze.modes import Modes
from lintorch.analyze.optim import BACKWARD, STEP, Optimization
from lintorch.analyze.statements import Statements, loops_around, names_in_args
from lintorch.analyze.values import Values
from lintorch.index import (
    CallSite, FunctionInfo, LoopInfo, Scope, call_arg, child_nodes, dotted_name, int_value, iter_nodes,
)

#: Words one of which a file must contain for an evaluation pass that an
#: LT3xx rule can report to exist there: a loader or iterator, a mode call, a
#: training step, a pretrained model. Passes recognised only under no-grad
#: add NO_GRAD_TRIGGERS.
PASS_TRIGGERS = names.LOADER_TRIGGERS + names.ITERATOR_TRIGGERS + (
    ".eval(", ".train(", "backward", "pretrained", "weights=", "hub.load"
)
NO_GRAD_TRIGGERS = ("no_grad", "inference_mode", "set_grad_enabled")

LOOP, COMPREHENSION, PHASE, BLOCK = "loop", "comprehension", "phase", "block"
#: Evidence that a block evaluates (never a name).
LOADER, EVAL_MODE, NO_GRAD, TRAINING, PRETRAINED = "loader", "eval_mode", "no_grad", "training", "pretrained"


class EvalPass(NamedTuple):
    """A block that runs a model on data without training it."""

    #: loop (a ``for`` over data), comprehension, phase (the evaluation phase
    #: of a loop shared with training: ``if phase == "train": loss.backward()``)
    #: or block (model calls outside any loop over data: a full-batch
    #: evaluation, a prediction helper).
    kind: str
    #: The ``for``/comprehension, or the first forward of a block.
    node: cst.CSTNode
    #: The calls that run the model: ``model(x)``, ``model.forward(x)``,
    #: ``self(x)``, or a local function/method that does (``model.validation_step(b)``).
    forwards: Tuple[CallSite, ...]
    function: Optional[FunctionInfo]
    #: The loop of a loop/phase pass (None for the others).
    loop: Optional[LoopInfo]
    #: LOADER, EVAL_MODE, NO_GRAD, TRAINING, PRETRAINED (at least one).
    evidence: FrozenSet[str]
    #: Runs over a dataset (a loader, a whole held-out tensor), not a few samples.
    dataset: bool
    #: A val/test loader, split key or function name agrees.
    named: bool

    def describe(self) -> str:
        """A few words for messages: "a validation/test loop", "an evaluation pass under no_grad"."""
        if self.kind == PHASE:
            return "the evaluation phase of this loop"
        what = "evaluation pass" if self.kind == BLOCK else "evaluation loop"
        if self.named and self.kind != BLOCK:
            return "a validation/test loop"
        return f"an {what} under no_grad" if NO_GRAD in self.evidence else f"an {what}"


_NEEDS_GRAD_FUNCS = frozenset({"torch.autograd.grad", "torch.autograd.backward", "torch.enable_grad"})
_NEEDS_GRAD_METHODS = frozenset({"requires_grad_", "retain_grad", "register_hook"})
#: Inputs that are not data: noise for a generator, a dummy tensor for a shape probe.
_SYNTHETIC = frozenset(
    {
        "torch.randn", "torch.rand", "torch.randint", "torch.normal", "torch.randn_like", "torch.rand_like",
        "torch.zeros", "torch.ones", "torch.empty", "torch.full", "torch.zeros_like", "torch.ones_like",
        "torch.empty_like", "torch.full_like", "torch.randperm",
    }
)
_NUMPY_CONSTANTS = frozenset({"numpy.zeros", "numpy.ones", "numpy.full", "numpy.empty", "numpy.zeros_like", "numpy.ones_like"})
_CONVERTERS = frozenset({"torch.tensor", "torch.as_tensor", "torch.from_numpy", "torch.Tensor", "torch.FloatTensor",
                         "torch.LongTensor", "torch.autograd.Variable", "torch.cuda.FloatTensor"})
_EVIDENCE_METHODS = frozenset({"eval", "train", "backward", "manual_backward", "step"})
_SMALL_PASS = 32  # a loop stopped after at most this many items is a display, not an evaluation
_DETACHING = frozenset({"item", "detach", "data", "numpy", "tolist"})


class Passes:
    def __init__(
        self, values: Values, models: Models, optim: Optimization, data: Data, modes: Modes, forwards: Forwards,
        statements: Statements,
    ):
        self.values = values
        self.models = models
        self.optim = optim
        self.data = data
        self.modes = modes
        self.forwards = forwards
        self.statements = statements
        self.index = values.index

    def _cache(self, name: str) -> dict:
        return self.__dict__.setdefault("_ps_" + name, {})

    def evaluation_passes(self) -> List[EvalPass]:
        """Blocks that run a model without training it (see the module
        docstring): loops and comprehensions over data, the evaluation phase
        of a loop shared with training, and model calls outside loops over
        data (a full-batch evaluation, a prediction helper) that are not a
        training forward, not a generator sampling noise and not a check on
        the current training batch. Left out: unit-test files, framework
        hooks (Lightning's ``validation_step``: the framework sets modes),
        a module's own ``forward``, and passes whose outputs are all thrown
        away (``update_bn``-style statistics updates, warm-up runs). Only
        the outermost pass is kept when passes nest."""
        cache = self._cache("passes")
        if "all" in cache:
            return cache["all"]
        out: List[EvalPass] = []
        if not names.is_test_file_name(self.index.path):
            loops: Dict[int, EvalPass] = {}
            for loop in self.index.loops:
                found = self._loop_pass(loop)
                if found is not None:
                    loops[id(loop)] = found
            out = [p for p in loops.values() if not any(id(a) in loops for a in p.loop.ancestors())]
            covered = {id(c.node) for p in out for c in p.loop.calls}
            evidence = self._evidence_calls_exist()
            if evidence or self._loader_names_exist():
                out.extend(self._comprehension_passes(covered))
            covered |= {id(c.node) for p in out for c in p.forwards}
            if evidence or self._pretrained_models_exist():
                out.extend(self._block_passes(covered, out))
        cache["all"] = out
        return out


    def _loop_pass(self, loop: LoopInfo) -> Optional[EvalPass]:
        node = loop.node
        if not isinstance(node, cst.For) or self._excluded_function(loop.scope):
            return None
        kind = LOOP
        witnesses = self.optim.loop_witnesses(loop)
        train_only: Set[int] = set()
        if BACKWARD in witnesses or STEP in witnesses:
            train_only = self._training_phase_calls(loop)
            if not train_only:
                return None
            kind = PHASE
        if any(self._needs_grad(c) for c in loop.calls if id(c.node) not in train_only):
            return None
        if any(a.attr == "requires_grad" for a in loop.attr_assigns):
            return None
        forwards = [
            c for c in loop.calls
            if c.scope is loop.scope and id(c.node) not in train_only and self.forwards.model_call_in(c) is not None
        ]
        forwards = self._used(forwards)
        if not forwards:
            return None
        if kind == LOOP and all(self.forwards.is_training_forward(c) for c in forwards):
            return None
        targets = self._for_targets(loop)
        iterable = node.iter
        loader = self._loader_evidence(iterable, loop.scope, loop.order)
        if not loader:
            if not any(self._reads(c, loop, targets) == "data" for c in forwards):
                return None
        elif any(self._reads(c, loop, targets) == "carried" for c in forwards):
            return None  # generation: the model's output is its next input
        names_seen = _iterated_names(iterable)
        train_named = any(names.is_training_name(n) or names.is_training_split(n) for n in names_seen)
        evidence = self._evidence(forwards, loop, loader and not train_named)
        if train_named and not evidence & {EVAL_MODE, NO_GRAD}:
            return None  # a train-named loop needs more than behaviour: a hidden backward is likelier
        if not evidence:
            return None
        named = any(names.is_validation_loader_name(n) or names.is_evaluation_split(n) for n in names_seen)
        if self._handed_back_for_training(forwards, evidence, named):
            return None
        dataset = not self._stops_early(loop) and (
            self._covers_dataset(iterable, loop.scope, loop.order) or self._slices_by(loop, targets)
        )
        return EvalPass(
            kind, node, tuple(forwards), self.index.enclosing_function(loop.scope), loop, evidence,
            dataset, named or self._named_scope(loop.scope),
        )


    def _comprehension_passes(self, covered: Set[int]) -> List[EvalPass]:
        """``[model(x) for x, _ in loader]``, ``sum(loss(model(x), y).item() for x, y in val_loader)``."""
        out = []
        for scope in self._scopes_with_model_calls():
            if self._excluded_function(scope):
                continue
            syntax = self.statements.of(scope)
            groups: Dict[int, List[CallSite]] = {}
            comps: Dict[int, cst.BaseComp] = {}
            for call in scope.calls:
                comp = syntax.comprehension.get(id(call.node))
                if comp is None or id(call.node) in covered or self.forwards.model_call_in(call) is None:
                    continue
                groups.setdefault(id(comp), []).append(call)
                comps[id(comp)] = comp
            for key, forwards in groups.items():
                comp = comps[key]
                forwards = self._used(forwards)
                if not forwards:
                    continue
                if any(self.forwards.is_training_forward(c) for c in forwards) or any(self._needs_grad(c) for c in scope.calls if syntax.comprehension.get(id(c.node)) is comp):
                    continue
                iterable = comp.for_in.iter
                first = forwards[0]
                loader = self._loader_evidence(iterable, scope, first.order)
                targets = {n.value for n in iter_nodes(comp.for_in.target) if isinstance(n, cst.Name)}
                if not loader and not any(targets & names_in_args(c) for c in forwards):
                    continue
                evidence = self._evidence(forwards, None, loader)
                if not evidence:
                    continue
                named = any(names.is_validation_loader_name(n) or names.is_evaluation_split(n) for n in _iterated_names(iterable))
                if self._handed_back_for_training(forwards, evidence, named):
                    continue
                dataset = self._covers_dataset(iterable, scope, first.order)
                out.append(EvalPass(COMPREHENSION, comp, tuple(forwards), self.index.enclosing_function(scope), None, evidence, dataset, named or self._named_scope(scope)))
        return out


    def _block_passes(self, covered: Set[int], passes: List[EvalPass]) -> List[EvalPass]:
        """Model calls outside loops over data that evaluate: with eval mode
        set, under no-grad, or after a training step (the full-batch
        ``model.eval(); out = model(X_test)``). One pass per function and loop."""
        helpers = {id(f) for p in passes for c in p.forwards for f in self.forwards.runner_functions(c)}
        groups: Dict[Tuple[int, int], List[Tuple[CallSite, FrozenSet[str]]]] = {}
        for scope in self._scopes_with_model_calls():
            function = self.index.enclosing_function(scope)
            if self._excluded_function(scope) or (function is not None and id(function) in helpers):
                continue
            syntax = self.statements.of(scope)
            for call in scope.calls:
                if id(call.node) in covered or not self.models.is_model_call(call) or not self._used([call]):
                    continue
                if syntax.comprehension.get(id(call.node)) is not None:
                    continue
                if self.forwards.is_training_forward(call) or self._on_training_batch(call) or self._needs_gradients(call):
                    continue
                loops = loops_around(call)
                if loops and self._reads(call, loops[0], self._for_targets(loops[0])) == "carried":
                    continue
                evidence = self._evidence([call], None, False, block=True)
                if evidence:
                    groups.setdefault((id(scope), id(call.loop)), []).append((call, evidence))
        out = []
        for group in groups.values():
            forwards = [call for call, _ in group]
            evidence = frozenset().union(*(e for _, e in group))
            first = forwards[0]
            function = self.index.enclosing_function(first.scope)
            named = self._named_scope(first.scope)
            out.append(EvalPass(BLOCK, first.node, tuple(forwards), function, None, evidence, self._block_dataset(forwards), named))
        return out


    def _handed_back_for_training(self, forwards: List[CallSite], evidence: FrozenSet[str], named: bool) -> bool:
        """A function no code here calls that returns the outputs (or losses
        computed from them) with their graphs, neither named nor set up as an
        evaluation: its caller elsewhere may well backpropagate them
        (``return torch.stack(losses).sum()``)."""
        function = self.index.enclosing_function(forwards[0].scope)
        if function is None or named or EVAL_MODE in evidence or self._named_scope(function.scope):
            return False
        if any(c.scope is not function.scope for c in self.forwards.callers(function)):
            return False
        wanted = {id(c.node) for c in forwards}
        pending = [ret.value for ret, _ in function.returns if ret.value is not None]
        followed: Set[str] = set()
        while pending and len(followed) < 32:
            expr = pending.pop()
            if _detaches(expr):
                continue
            for node in iter_nodes(expr):
                if id(node) in wanted:
                    return True
                if isinstance(node, cst.Name) and node.value not in followed:
                    followed.add(node.value)
                    pending.extend(b.value for b in function.scope.bindings.get(node.value, ()) if b.value is not None)
                    pending.extend(
                        a.value for c in function.scope.calls
                        if c.method in ("append", "extend") and isinstance(c.receiver, cst.Name) and c.receiver.value == node.value
                        for a in c.node.args
                    )
        return False

    def _evidence_calls_exist(self) -> bool:
        """Whether the module has a mode call, a no-grad context or decorator,
        or a backward/step call: without one, only a loop or comprehension
        over a loader can be a pass (a cheap gate for library code)."""
        for call in self.index.calls:
            if call.method in _EVIDENCE_METHODS or call.qualname in api.NO_GRAD_CONTEXTS or call.qualname in api.SET_GRAD_ENABLED:
                return True
        return any(self.modes.function_runs_without_grad(f) for f in self.index.functions if f.node.decorators)


    def _pretrained_models_exist(self) -> bool:
        """Whether the module loads a pretrained model (the gate for
        inference scripts, which have no other evidence call)."""
        return any(_loads_pretrained(call) for call in self.index.calls)

    def _runs_pretrained_untrained(self, call: CallSite) -> bool:
        """``VGG16 = models.vgg16(pretrained=True)`` ... ``VGG16(img)`` in a
        file that never trains it: inference with a pretrained model. A model
        handed to any call (``train(model, ...)``, ``optim.SGD(model.parameters())``)
        may be trained or have its mode set there: not assumed."""
        target = self.forwards.forward_target(call)
        root = dotted_name(target).split(".")[0] if target is not None and dotted_name(target) else None
        if root is None or root == "self" or self.forwards.trained_here(call) or root in self._names_handed_to_calls():
            return False
        values = self.models.module_values(target, call.scope, call.order)
        return bool(values) and all(
            isinstance(v.expr, cst.Call) and _loads_pretrained(self.index.call_at(v.expr))
            for v in (self.values.strip_value_preserving(v) for v in values)
        )

    def _names_handed_to_calls(self) -> FrozenSet[str]:
        """Names read in a call's arguments (``f(model)``, ``SGD(model.parameters())``),
        not as the callee of a call there (``print(model(x))`` runs the model)."""
        cache = self._cache("handed")
        if "names" not in cache:
            names_found: Set[str] = set()
            for call in self.index.calls:
                for arg in call.node.args:
                    nodes = list(iter_nodes(arg.value))
                    callees = {id(n.func) for n in nodes if isinstance(n, cst.Call)}
                    names_found.update(n.value for n in nodes if isinstance(n, cst.Name) and id(n) not in callees)
            cache["names"] = frozenset(names_found)
        return cache["names"]

    def _loader_names_exist(self) -> bool:
        bound = {name for scope in self.index.scopes for name in scope.bindings}
        bound |= {a.attr for a in self.index.attr_assigns}
        return any(names.is_loader_name(n) or names.is_iterator_name(n) for n in bound)


    def _evidence(self, forwards: List[CallSite], loop: Optional[LoopInfo], loader: bool, block: bool = False) -> FrozenSet[str]:
        """What says these forwards evaluate (never a name): a loader, eval
        mode, no-grad, or training steps around them (for a block outside
        any data loop: steps of this very model)."""
        found = {LOADER} if loader else set()
        first = forwards[0]
        if self.modes.mode_at(first) == "eval":
            found.add(EVAL_MODE)
        if all(self.modes.grad_enabled(c) is False for c in forwards):
            found.add(NO_GRAD)
        if self._training_context(first, loop) and (not block or any(self.forwards.trained_here(c) for c in forwards)):
            found.add(TRAINING)
        if block and not found and self._runs_pretrained_untrained(first):
            found.add(PRETRAINED)
        return frozenset(found)


    def _training_context(self, call: CallSite, loop: Optional[LoopInfo], _depth: int = 0) -> bool:
        """The call runs between training steps: inside a training loop, after
        a step earlier in its function (or module), or in a function called so."""
        for enclosing in loops_around(call):
            if enclosing is not loop and enclosing.scope is call.scope and self.optim.is_training_loop(enclosing):
                return True
        for effect in self.optim.scope_effects(call.scope):
            if effect.call.order < call.order and STEP in effect.effects:
                return True
        function = self.index.enclosing_function(call.scope)
        if function is None or _depth >= 3:
            return False
        return any(
            self._training_context(c, None, _depth + 1) for c in self.forwards.callers(function) if c.scope is not function.scope
        )

    # -- what runs the model ----------------------------------------------------


    def _excluded_function(self, scope: Scope) -> bool:
        """Framework hooks and a module's own forward (and what it calls)."""
        function = self.index.enclosing_function(scope)
        if function is None:
            return False
        cache = self._cache("excluded")
        if function not in cache:
            cache[function] = self.modes.framework_managed(function) or self._module_internal(function)
        return cache[function]


    def _module_internal(self, function: FunctionInfo, _depth: int = 0) -> bool:
        """A module's ``forward`` (also a function nested in it, or a method it calls)."""
        outer = function.scope.parent
        enclosing = self.index.enclosing_function(outer) if outer is not None else None
        if enclosing is not None and self._module_internal(enclosing, _depth + 1):
            return True
        klass = function.klass
        if klass is None or not self.models.is_module_class(klass):
            return False
        if function.name in ("forward", "__call__", "_forward_impl") or function.name.startswith("forward_"):
            return True
        if _depth >= 3:
            return False
        callers = [self.index.enclosing_function(c.scope) for c in self.values.callers(function)]
        return any(f is not None and f is not function and self._module_internal(f, _depth + 1) for f in callers)


    def _needs_grad(self, call: CallSite) -> bool:
        return call.qualname in _NEEDS_GRAD_FUNCS or call.method in _NEEDS_GRAD_METHODS


    def _needs_gradients(self, call: CallSite) -> bool:
        """The call sits in a loop that computes gradients without training
        (adversarial examples, saliency: ``backward()`` with no step,
        ``torch.autograd.grad``, ``x.requires_grad = True``)."""
        for loop in loops_around(call):
            witnesses = self.optim.loop_witnesses(loop)
            if BACKWARD in witnesses and STEP not in witnesses:
                return True
            if any(self._needs_grad(c) for c in loop.calls) or any(a.attr == "requires_grad" for a in loop.attr_assigns):
                return True
        return False


    def _used(self, forwards: List[CallSite]) -> List[CallSite]:
        """The forwards whose output is used: not ``model(x)`` alone on a
        line (run for its side effects: batch-norm statistics, hooks,
        warm-up), nor assigned only to names nothing reads. Forwards on
        synthetic input (noise, dummy tensors) are not evaluation either."""
        out = []
        for call in forwards:
            if not self.statements.of(call.scope).value_used(call.node):
                continue
            if self.models.is_model_call(call) and self._synthetic_input(call):
                continue
            out.append(call)
        return out


    def _scopes_with_model_calls(self) -> List[Scope]:
        cache = self._cache("model_scopes")
        if "all" not in cache:
            cache["all"] = [
                scope for scope in self.index.scopes
                if scope.kind != "class"
                and not self._excluded_function(scope)
                and any(self.forwards.model_call_in(c) is not None for c in scope.calls)
            ]
        return cache["all"]


    def _for_targets(self, loop: LoopInfo) -> Set[str]:
        return {
            name for name, bindings in loop.scope.bindings.items()
            if any(b.kind == "for" and b.node is loop.node for b in bindings)
        }


    def _reads(self, call: CallSite, loop: LoopInfo, targets: Set[str]) -> Optional[str]:
        """What the call's arguments read per iteration of ``loop``: ``data``
        (the loop's targets, or a batch fetched in the loop body: ``next(it)``,
        ``data.get_batch()``), ``carried`` (a value the previous iteration
        computed from a model output: autoregressive generation), None
        (loop-invariant). Values computed earlier in the same iteration
        (``decoder(encoder(x))``) are followed."""
        pending = [(n, call.order) for n in names_in_args(call)]
        seen: Set[Tuple[str, int]] = set()
        result = None
        while pending:
            name, order = pending.pop()
            if (name, order) in seen:
                continue
            seen.add((name, order))
            if name in targets:
                result = result or "data"
                continue
            inside = [
                b for b in loop.scope.bindings.get(name, ())
                if b.value is not None and b.kind != "for" and self.index.loop_contains(loop, b.node)
            ]
            before = [b for b in inside if b.order < order]
            carried = not before
            for binding in before[-1:] or inside:
                for node in iter_nodes(binding.value):
                    if not isinstance(node, cst.Call):
                        continue
                    inner = self.index.call_at(node)
                    if carried and inner is not None and self.forwards.model_call_in(inner) is not None:
                        return "carried"
                    fetched = dotted_name(node.func) or ""
                    if fetched == "next" or names.is_batch_fetch_name(fetched.rsplit(".", 1)[-1]):
                        result = result or "data"
                pending.extend((n.value, binding.order) for n in iter_nodes(binding.value) if isinstance(n, cst.Name))
        return result


    def _covers_dataset(self, iterable: cst.BaseExpression, scope: Scope, order: int) -> bool:
        """A DataLoader, or something named as a loader, dataset, batch
        iterator or evaluation split (``valid_data``), also behind a variable
        (``tk = tqdm(self.testloader)``): the pass goes over a dataset. A
        list of files or an unknown iterable does not say so."""
        if self.data.dataloader_calls(iterable, scope, order):
            return True
        return any(
            names.is_loader_name(n) or names.is_iterator_name(n) or names.is_validation_loader_name(n)
            for n in self._source_names(iterable, scope, order)
        )

    def _source_names(self, iterable: cst.BaseExpression, scope: Scope, order: int) -> List[str]:
        """:func:`_iterated_names` of the loop's iterable and of what it was
        assigned from (through ``enumerate``, ``tqdm`` and variables)."""
        found = _iterated_names(iterable)
        for value in self.values.iterated_values(iterable, scope, order):
            found.extend(_iterated_names(value.expr))
        for node in iter_nodes(iterable):
            if isinstance(node, cst.Name):  # tk = tqdm(self.testloader): the loader may not be traceable further
                for binding in self.index.lookup(node.value, scope, order):
                    if binding.kind in ("assign", "annassign") and binding.value is not None:
                        found.extend(_iterated_names(binding.value))
        return found

    def _slices_by(self, loop: LoopInfo, targets: Set[str]) -> bool:
        """``for i in range(0, n, 64): model(x[i:i + 64])``: batches cut by the loop variable."""
        for node in iter_nodes(loop.node.body):
            if isinstance(node, cst.Slice) and any(
                isinstance(n, cst.Name) and n.value in targets for part in (node.lower, node.upper) if part is not None
                for n in iter_nodes(part)
            ):
                return True
        return False


    def _loader_evidence(self, iterable: cst.BaseExpression, scope: Scope, order: int) -> bool:
        """A DataLoader (traced, also through a dict of loaders) or a name
        that says loader, dataset or batch iterator."""
        if self.data.dataloader_calls(iterable, scope, order):
            return True
        return any(names.is_loader_name(n) or names.is_iterator_name(n) for n in self._source_names(iterable, scope, order))


    def _training_phase_calls(self, loop: LoopInfo) -> Set[int]:
        """For a loop shared by training and evaluation phases: the calls in
        its branches that run only while training (``if phase == "train":
        loss.backward(); optimizer.step()``). Empty when some backward or
        step is not behind such a test."""
        guarded: Set[int] = set()
        for call in loop.calls:
            effects = set(self.optim.call_effects(call))
            for function in self.values.functions_run_by(call):
                effects |= self.optim.function_effects(function)
            if not effects & {BACKWARD, STEP}:
                continue
            branch = self._training_branch(call, loop)
            if branch is None:
                return set()
            guarded |= {id(n) for n in iter_nodes(branch) if isinstance(n, cst.Call)}
        return guarded


    def _training_branch(self, call: CallSite, loop: LoopInfo) -> Optional[cst.CSTNode]:
        for node, branch in self.values.enclosing_blocks(call):
            if not isinstance(node, cst.If) or not self.index.loop_contains(loop, node):
                continue
            polarity = _phase_test(node.test)
            if polarity is True and branch == "body":
                return node.body
            if polarity is False and branch == "orelse":
                return node.orelse
        return None


    def _stops_early(self, loop: LoopInfo) -> bool:
        """A loop that stops after a few items: an unconditional ``break``,
        or one behind a comparison with a small literal (``if i == 5: break``),
        or ``range(n)`` with a small literal n."""
        node = loop.node
        if isinstance(node.iter, cst.Call) and dotted_name(node.iter.func) == "range" and len(node.iter.args) == 1:
            bound = int_value(node.iter.args[0].value)
            if bound is not None and bound <= _SMALL_PASS:
                return True
        stack: List[Tuple[cst.CSTNode, Optional[cst.BaseExpression]]] = [(s, None) for s in node.body.body]
        while stack:
            current, test = stack.pop()
            if isinstance(current, (cst.FunctionDef, cst.ClassDef, cst.For, cst.While)):
                continue
            if isinstance(current, cst.Break):
                if test is None or _small_bound(test):
                    return True
                continue
            inner_test = current.test if isinstance(current, cst.If) else test
            stack.extend((child, inner_test) for child in child_nodes(current))
        return False


    def _synthetic_input(self, call: CallSite) -> bool:
        """The first argument is not data: a few hand-written values
        (``torch.tensor([[1.0], [2.0]])``), or noise or a constant tensor made
        for this call (a generator sampling, a shape probe): built inline, in
        the same function or loop iteration, or kept in a variable named like
        noise (``fixed_noise``, ``z``). A module-level ``X = torch.randn(...)``
        in a demo script is the data."""
        args = [a.value for a in call.node.args if a.keyword is None and not a.star]
        if not args:
            return False
        first = args[0]
        kind = self._synthetic_kind(first, call.scope, call.order, 0)
        if kind is None:
            return False
        if kind == "literal" or not isinstance(first, cst.Name) or names.is_noise_name(first.value):
            return True
        loops = loops_around(call)
        for binding in self.index.lookup(first.value, call.scope, call.order):
            local = binding.scope.kind == "function" and binding.scope is call.scope
            if not local and not any(self.index.loop_contains(loop, binding.node) for loop in loops):
                return False
        return True

    def _synthetic_kind(self, expr, scope: Scope, order: int, depth: int) -> Optional[str]:
        """``literal`` (numbers written in the code), ``made`` (a random or
        constant factory), None (anything else: data)."""
        if depth > 4:
            return None
        values = self.values.definitions(expr, scope, order)
        kinds = set()
        for value in values:
            node = value.expr
            if depth and isinstance(node, (cst.List, cst.Tuple)):
                numbers = [n for n in iter_nodes(node) if isinstance(n, (cst.Integer, cst.Float))]
                containers = all(isinstance(n, (cst.List, cst.Tuple, cst.Element, cst.Integer, cst.Float, cst.UnaryOperation, cst.Minus))
                                 for n in iter_nodes(node))
                if numbers and containers:
                    kinds.add("literal")
                    continue
                return None
            if not isinstance(node, cst.Call):
                return None
            qualname = self.index.qualname_of(node.func, value.scope, value.order) or ""
            if qualname in _SYNTHETIC or qualname.startswith("numpy.random.") or qualname in _NUMPY_CONSTANTS:
                kinds.add("made")
                continue
            inner = None
            if qualname in _CONVERTERS or dotted_name(node.func) in ("Variable", "FloatTensor", "Tensor"):
                inner = node.args[0].value if node.args else None
            elif isinstance(node.func, cst.Attribute) and node.func.attr.value in api.VALUE_PRESERVING_METHODS:
                inner = node.func.value
            kind = self._synthetic_kind(inner, value.scope, value.order, depth + 1) if inner is not None else None
            if kind is None:
                return None
            kinds.add(kind)
        if not kinds:
            return None
        return "made" if "made" in kinds else "literal"

    def _on_training_batch(self, call: CallSite) -> bool:
        """A forward on the batch of the training loop around it (training
        accuracy, a teacher's targets): monitoring, not evaluation."""
        for loop in loops_around(call):
            if self.optim.is_training_loop(loop) and self._reads(call, loop, self._for_targets(loop)) == "data":
                return True
        return False


    def _block_dataset(self, forwards: List[CallSite]) -> bool:
        """A block pass costs more than hygiene only when its outputs are
        collected in a loop (``predictions.append(model(x_test))``): every
        graph stays alive. One forward holds one graph, freed with its
        outputs: no more memory than a training step on the same input."""
        return any(call.loop is not None and self._collected(call) for call in forwards)


    def _collected(self, call: CallSite) -> bool:
        """The output is appended to a list in the loop, graph and all (not
        through ``.item()``, ``.detach()``, ``.data``, ``.numpy()``)."""
        bound = set(self.values.bound_names(call.node, call.scope))
        if bound and any(_detaches(b.value) for n in bound for b in call.scope.bindings.get(n, ()) if b.value is call.node):
            return False
        for other in call.loop.calls:
            if other.method not in ("append", "extend"):
                continue
            for arg in other.node.args:
                nodes = list(iter_nodes(arg.value))
                reads = {n.value for n in nodes if isinstance(n, cst.Name)}
                if (bound & reads or any(n is call.node for n in nodes)) and not _detaches(arg.value):
                    return True
        return False


    def _named_scope(self, scope: Scope) -> bool:
        current: Optional[Scope] = scope
        while current is not None and current.kind == "function":
            if names.is_validation_function_name(current.name):
                return True
            current = current.parent
        return False



def _loads_pretrained(call: Optional[CallSite]) -> bool:
    """A model zoo constructor asked for pretrained weights
    (``pretrained=True``, ``weights=...``), ``from_pretrained`` or
    ``torch.hub.load``."""
    if call is None or call.qualname is None:
        return False
    qualname = call.qualname
    if qualname.endswith(".from_pretrained"):
        return not qualname.startswith("torch.nn.")  # nn.Embedding.from_pretrained: an embedding
    if qualname == "torch.hub.load":
        return True
    if not qualname.startswith(api.MODEL_ZOO_PREFIXES):
        return False
    for keyword in ("pretrained", "weights"):
        arg = call_arg(call.node, None, keyword)
        if arg is not None and not (isinstance(arg, cst.Name) and arg.value in ("False", "None")):
            return True
    return False


def _phase_test(test: cst.BaseExpression) -> Optional[bool]:
    """True for a test that holds while training (``phase == "train"``,
    ``is_train``), False for one that holds while evaluating (``split ==
    "val"``, ``not training``, ``phase != "train"``), None otherwise."""
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        inner = _phase_test(test.expression)
        return None if inner is None else not inner
    name = dotted_name(test)
    if name is not None:
        return True if names.is_training_flag_name(name.rsplit(".", 1)[-1]) else None
    if isinstance(test, cst.Comparison) and len(test.comparisons) == 1:
        comparison = test.comparisons[0]
        literal = next(
            (s.evaluated_value for s in (test.left, comparison.comparator) if isinstance(s, cst.SimpleString)), None
        )
        if not isinstance(literal, str):
            return None
        if names.is_training_split(literal):
            polarity = True
        elif names.is_evaluation_split(literal):
            polarity = False
        else:
            return None
        if isinstance(comparison.operator, (cst.Equal, cst.Is)):
            return polarity
        if isinstance(comparison.operator, (cst.NotEqual, cst.IsNot)):
            return not polarity
    return None


def _small_bound(test: cst.BaseExpression) -> bool:
    """``i == 4``, ``count >= 10``: a comparison with a small literal operand."""
    if not isinstance(test, cst.Comparison):
        return False
    operands = [test.left] + [c.comparator for c in test.comparisons]
    return any(int_value(o) is not None and 0 <= int_value(o) <= _SMALL_PASS for o in operands)


def _detaches(expr: cst.BaseExpression) -> bool:
    """``out.item()``, ``out.detach()``, ``out.data``: no graph is kept."""
    return any(isinstance(n, cst.Attribute) and n.attr.value in _DETACHING for n in iter_nodes(expr))



def _iterated_names(expr: cst.BaseExpression) -> List[str]:
    """Names of what a ``for`` iterates, looking inside ``enumerate(...)``,
    ``tqdm(...)``, ``zip(...)`` and subscripts: ``val_loader``,
    ``self.test_dl``, ``loaders`` and ``"valid"`` for ``loaders["valid"]``."""
    out = []
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, cst.Call):
            stack.extend(a.value for a in node.args if a.keyword is None)
            continue
        if isinstance(node, cst.Subscript):
            stack.append(node.value)
            for element in node.slice:
                index = element.slice
                if isinstance(index, cst.Index) and isinstance(index.value, cst.SimpleString):
                    key = index.value.evaluated_value
                    if isinstance(key, str):
                        out.append(key)
            continue
        name = dotted_name(node)
        if name:
            out.append(name.rsplit(".", 1)[-1])
    return out

