import libcst as cst

from lintorch import torchapi as api
from lintorch.index import dotted_name
from lintorch.rule import Example, Rule, Severity
from lintorch.analyze.branches import exclusive_branches, fixed_across, separating_if
from lintorch.analyze.optim import BACKWARD, SCHEDULER_STEP, STEP

#: Scheduler factories outside torch that return a torch ``LambdaLR``.
_SCHEDULER_FACTORIES = ("transformers.", "diffusers.optimization.")


class SchedulerStepOrder(Rule):
    """
    **What it does.** Flags a learning-rate scheduler's `step()` that runs
    before the optimizer's `step()` in the same pass of a loop, or at the
    start of a function called once per epoch (`train(epoch)`) before the
    optimizer steps of its batch loop (warning). As an error: a
    `scheduler.step()` in a loop that runs `backward()` but never an
    optimizer `step()` anywhere in the file, or one on a path of the loop
    where the optimizer never steps (`if flag: scheduler.step() else:
    optimizer.step()`, with a flag that does not change between
    iterations). A scheduler that is `None` when not configured
    (`if scheduler is not None: scheduler.step()`) is judged by the one it
    is when configured.

    **Why is this bad?** Since PyTorch 1.1 the scheduler must be stepped
    *after* the optimizer: stepping it first skips the first value of the
    schedule (PyTorch prints "Detected call of `lr_scheduler.step()` before
    `optimizer.step()`"), so warm-ups start late and decays come one period
    early. A scheduler only changes the learning rate; it never updates the
    weights, so a loop with `backward()` and `scheduler.step()` but no
    `optimizer.step()` trains nothing.

    **Symptom.** Order: the first epoch(s) run at the wrong learning rate
    and accuracy improves less than expected. Missing optimizer step (or a
    path without one): the loss does not change at all and the model is not
    learning.

    **Fix.** Call `optimizer.step()` after `backward()` and
    `scheduler.step()` after `optimizer.step()` (per batch for per-step
    schedules, after the batch loop for per-epoch ones). Not flagged: a
    scheduler stepped once before the loop to set an initial learning
    rate, `ReduceLROnPlateau`, and loops whose optimizer step happens in a
    closure or a helper (LBFGS, `train_step()`), which count as steps.
    """

    code = "LT203"
    name = "scheduler-step-order"
    severity = Severity.WARNING
    severity_cases = "error when no optimizer step runs on the scheduler's path"
    summary = "scheduler.step() before optimizer.step(), or without any optimizer.step()"
    symptom = "first learning-rate value skipped; or loss not changing, model not learning"
    triggers = ("lr_scheduler", "_schedule_with_warmup", "get_scheduler")

    bad = [
        Example(
            """
            from torch.optim.lr_scheduler import OneCycleLR
            scheduler = OneCycleLR(optimizer, max_lr=0.1, total_steps=1000)
            for x, y in loader:
                optimizer.zero_grad()
                criterion(model(x), y).backward()
                scheduler.step()
                optimizer.step()
            """
        ),
    ]
    good = [
        Example(
            """
            from torch.optim.lr_scheduler import OneCycleLR
            scheduler = OneCycleLR(optimizer, max_lr=0.1, total_steps=1000)
            for x, y in loader:
                optimizer.zero_grad()
                criterion(model(x), y).backward()
                optimizer.step()
                scheduler.step()
            """
        ),
    ]

    def check(self, analysis):
        index = analysis.index
        any_step = None
        for call in index.method_calls("step"):
            if SCHEDULER_STEP not in analysis.optim.call_effects(call):
                continue
            found = analysis.optim.scheduler_constructor(call)
            if found is None:
                continue
            qualname, ctor = found
            if not (qualname.startswith(api.LR_SCHEDULER_PREFIX) or qualname.startswith(_SCHEDULER_FACTORIES)):
                continue
            if call.loop is None:
                if qualname != api.REDUCE_ON_PLATEAU:
                    report = self._before_step_in_each_call(analysis, call, ctor)
                    if report is not None:
                        yield report
                continue
            if any_step is None:
                any_step = any(STEP in analysis.optim.call_effects(c) for c in index.calls) or any(
                    STEP in analysis.optim.loop_witnesses(loop) for loop in index.loops
                )
            report = self._missing_step(analysis, call) if not any_step else self._step_on_other_path(analysis, call)
            if report is not None:
                yield report
                continue
            if not any_step or qualname == api.REDUCE_ON_PLATEAU:
                continue
            report = self._before_step(analysis, call, ctor)
            if report is not None:
                yield report

    def _before_step(self, analysis, call, ctor):
        loop = call.loop
        if loop.scope is not call.scope:
            return None
        if analysis.index.loop_contains(loop, ctor.expr):
            return None  # a scheduler built in this pass and stepped once to set its initial lr
        sequence = analysis.optim.scope_effects(call.scope)
        position = next(i for i, e in enumerate(sequence) if e.call is call)
        target = _scheduler_optimizer(ctor)
        for earlier in sequence[:position]:
            if STEP in earlier.effects and earlier.call.loop is not None and loop.contains(earlier.call.loop):
                return None  # the optimizer already stepped in this pass
        for later in sequence[position + 1:]:
            if later.call.loop is None or not loop.contains(later.call.loop):
                continue
            if STEP not in later.effects:
                continue
            if not _steps_target(analysis, later, target, ctor):
                continue
            if exclusive_branches(loop.node, [call.node, later.call.node]):
                continue
            return self.report(
                call.node,
                f"{dotted_name(call.node.func) or 'scheduler.step'}() runs before the optimizer step "
                "(line {line0}) in each pass of this loop",
                explanation="The first learning-rate value of the schedule is skipped (PyTorch warns about "
                "this order), so warm-up and decay come one period early and accuracy improves less than "
                "it should. Call scheduler.step() after optimizer.step().",
                related=(later.call.node,),
            )
        return None

    def _before_step_in_each_call(self, analysis, call, ctor):
        """``scheduler.step()`` at the top of a function run once per epoch
        (``train(epoch)`` called in the epoch loop), before the optimizer
        steps of that function's batch loop."""
        function = analysis.index.enclosing_function(call.scope)
        if function is None or function.scope is not call.scope or ctor.scope is call.scope:
            return None
        if not any(caller.loop is not None for caller in analysis.values.callers(function)):
            return None
        sequence = analysis.optim.scope_effects(call.scope)
        position = next(i for i, e in enumerate(sequence) if e.call is call)
        if any(STEP in earlier.effects for earlier in sequence[:position]):
            return None
        target = _scheduler_optimizer(ctor)
        for later in sequence[position + 1:]:
            if STEP not in later.effects or not _steps_target(analysis, later, target, ctor):
                continue
            if exclusive_branches(function.node, [call.node, later.call.node]):
                continue
            return self.report(
                call.node,
                f"{dotted_name(call.node.func) or 'scheduler.step'}() runs at the start of {function.name}(), "
                "before its optimizer steps (line {line0})",
                explanation=f"{function.name}() is called once per epoch, so the first learning-rate value "
                "of the schedule is skipped (PyTorch warns about this order): warm-up and decay come one "
                "period early and accuracy improves less than it should. Call scheduler.step() after the "
                f"batch loop, at the end of {function.name}().",
                related=(later.call.node,),
            )
        return None

    def _step_on_other_path(self, analysis, call):
        """``if use_scheduler: scheduler.step() else: optimizer.step()`` in a
        loop that runs backward(): with the flag set, no optimizer step runs."""
        outermost = call.loop
        for loop in call.loop.ancestors():
            if loop.scope is call.scope:
                outermost = loop
        for loop in (call.loop, *call.loop.ancestors()):
            if loop.scope is not call.scope:
                return None
            if BACKWARD in analysis.optim.loop_witnesses(loop):
                break
        else:
            return None
        steps = [
            effect.call for effect in analysis.optim.scope_effects(call.scope)
            if STEP in effect.effects and effect.call.loop is not None and loop.contains(effect.call.loop)
        ]
        if not steps:
            return None
        branch = None
        for step in steps:
            branch = separating_if(loop.node, call.node, step.node)
            if branch is None or not fixed_across(analysis.index, outermost, branch.test):
                return None
        for other in loop.calls:
            if other.scope is not call.scope or exclusive_branches(loop.node, [call.node, other.node]):
                continue
            if other.method == "step" and analysis.optim.receiver_kind(other) is None:
                return None  # engine.step(): may step the optimizer on this path
        return self.report(
            call.node,
            f"{dotted_name(call.node.func) or 'scheduler.step'}() replaces the optimizer step on one path "
            "(the if at line {line0})",
            explanation="When that branch is taken, backward() runs but the optimizer never steps, and a "
            "scheduler only changes the learning rate, so the weights never change and the model is not "
            "learning. Step the optimizer on every path and the scheduler after it.",
            related=(branch,),
            severity=Severity.ERROR,
        )

    def _missing_step(self, analysis, call):
        for loop in (call.loop, *call.loop.ancestors()):
            if loop.scope is not call.scope:
                break
            witnesses = analysis.optim.loop_witnesses(loop)
            if BACKWARD not in witnesses:
                continue
            for other in loop.calls:
                if other.method == "step" and analysis.optim.receiver_kind(other) is None:
                    return None  # engine.step(), trainer.step(): may step the optimizer
                if other.qualname is None and other.method not in ("step", "backward", "zero_grad") and any(
                    _optimizer_like(analysis, arg.value, other) for arg in other.node.args
                ):
                    return None  # the optimizer is handed to something that may step it
            return self.report(
                call.node,
                f"{dotted_name(call.node.func) or 'scheduler.step'}() in a loop that runs backward() "
                "(line {line0}) but never optimizer.step()",
                explanation="A scheduler only changes the learning rate and never updates the weights, so "
                "the loss does not change and the model is not learning. Call optimizer.step() after "
                "backward(), then scheduler.step().",
                related=(witnesses[BACKWARD],),
                severity=Severity.ERROR,
            )
        return None


def _scheduler_optimizer(ctor):
    expr = ctor.expr
    if not isinstance(expr, cst.Call):
        return None
    from lintorch.index import call_arg

    return call_arg(expr, 0, "optimizer")


def _steps_target(analysis, effect, target, ctor) -> bool:
    """Whether this step is (visibly possibly) of the scheduler's optimizer."""
    if target is None:
        return True
    ctor_call = analysis.index.call_at(ctor.expr)
    if ctor_call is None:
        return True
    optimizer = analysis.optim.stepped_optimizer(effect.call)
    if optimizer is not None:
        return analysis.values.same_object(optimizer, effect.call, target, ctor_call)
    # a helper or closure: it must be handed the scheduler's optimizer
    return any(
        isinstance(arg.value, (cst.Name, cst.Attribute))
        and analysis.values.same_object(arg.value, effect.call, target, ctor_call)
        for arg in effect.call.node.args
    ) or not any(True for _ in effect.call.node.args)


def _optimizer_like(analysis, expr, call) -> bool:
    if not isinstance(expr, (cst.Name, cst.Attribute)):
        return False
    last = (dotted_name(expr) or "").rsplit(".", 1)[-1].lower()
    if "opt" in last:
        return True
    return any(
        q.startswith(api.OPTIMIZER_PREFIX) and not q.startswith(api.LR_SCHEDULER_PREFIX)
        for q in analysis.values.instance_qualnames(expr, call.scope, call.order)
    )
