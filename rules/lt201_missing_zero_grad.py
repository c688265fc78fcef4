import libcst as cst

from lintorch import edits
from lintorch.index import dotted_name
from lintorch.rule import Example, Fix, Rule, Severity
from lintorch.analyze.optim import STEP, ZERO_GRAD

#: A loop that stops itself within this many iterations is a timing or smoke
#: run, not training: reported as info.
_FEW_ITERATIONS = 10


class MissingZeroGrad(Rule):
    """
    **What it does.** Flags a training loop, a loop that runs `backward()`
    and an optimizer `step()` (directly, through a function of the same
    module such as `train_one_epoch()`, or through an AMP `scaler.step`),
    in which gradients are never cleared: no `optimizer.zero_grad()`,
    `model.zero_grad()`, `p.grad = None` or `p.grad.zero_()` in the loop.
    With several optimizers (a GAN), each one that steps must be cleared:
    a loop that calls only `optimizer_E.zero_grad()` but steps
    `optimizer_D` as well is flagged at `optimizer_D.step()`. A loop that
    stops itself after a few batches (`if i == 3: break`: a timing or smoke
    run) is reported as info.

    **Why is this bad?** `backward()` adds to `.grad`; it does not overwrite
    it. Without clearing, every step uses the sum of the gradients of all
    previous batches, so the effective step grows without bound and points
    in a stale direction.

    **Symptom.** The loss stops improving, oscillates or diverges to `nan`
    after a few iterations; the model does not learn.

    **Fix.** Call `optimizer.zero_grad()` once per iteration, before
    `backward()` or right after `step()`. Deliberate gradient accumulation
    (`zero_grad()` every N steps inside the loop) is recognised and not
    flagged; so are loops whose clearing happens in a helper or closure.

    **Fix safety.** `--unsafe-fixes` inserts `optimizer.zero_grad()` (the
    optimizer the loop steps) at the top of the loop body when the step is
    written in the loop itself. It is unsafe because it changes the updates
    the loop makes, and it cannot know whether accumulation across the
    whole loop was intended.
    """

    code = "LT201"
    name = "missing-zero-grad"
    severity = Severity.ERROR
    severity_cases = "info in a loop that stops itself after a few batches"
    summary = "training loop calls backward() and optimizer.step() but never clears the gradients"
    symptom = "loss not changing, oscillating or diverging; model not learning"
    triggers = ("backward",)

    bad = [
        Example(
            """
            for epoch in range(10):
                for x, y in loader:
                    loss = criterion(model(x), y)
                    loss.backward()
                    optimizer.step()
            """
        ),
        Example(
            """
            def train_one_epoch(model, loader, optimizer):
                for x, y in loader:
                    loss = F.cross_entropy(model(x), y)
                    loss.backward()
                    optimizer.step()
            """
        ),
    ]
    good = [
        Example(
            """
            for x, y in loader:
                optimizer.zero_grad()
                loss = criterion(model(x), y)
                loss.backward()
                optimizer.step()
            """
        ),
        Example(
            """
            for i, (x, y) in enumerate(loader):
                loss = criterion(model(x), y) / accumulation_steps
                loss.backward()
                if (i + 1) % accumulation_steps == 0:
                    optimizer.step()
                    optimizer.zero_grad()
            """
        ),
    ]

    def check(self, analysis):
        for loop in analysis.optim.innermost_training_loops():
            witnesses = analysis.optim.loop_witnesses(loop)
            limit = analysis.optim.iteration_limit(loop)
            # A loop that stops itself after a few batches (timing, smoke
            # run) accumulates a few gradients and trains nothing that lasts.
            severity = Severity.INFO if limit is not None and limit <= _FEW_ITERATIONS else None
            if ZERO_GRAD not in witnesses:
                yield self.report(
                    witnesses[STEP],
                    "optimizer step in a training loop (line {line0}) that never clears gradients",
                    explanation="backward() accumulates into .grad, so each step applies the sum of all past "
                    "gradients and the loss stops improving or diverges. Call optimizer.zero_grad() "
                    "once per iteration (before backward() or after step()).",
                    related=(loop.node,),
                    fix=_zero_grad_fix(analysis, loop, witnesses[STEP]),
                    severity=severity,
                )
                continue
            for step in analysis.optim.uncleared_steps(loop):
                name = dotted_name(analysis.optim.stepped_optimizer(step)) or "this optimizer"
                yield self.report(
                    step.node,
                    f"{name} steps in a training loop (line {{line0}}) that never calls {name}.zero_grad()",
                    explanation="The loop clears the gradients of other optimizers only, so backward() keeps "
                    f"adding into the .grad of {name}'s parameters and each step applies the sum of all past "
                    "gradients (including those of the other losses); its loss stops improving or diverges. "
                    f"Call {name}.zero_grad() before the backward() whose gradients it should step on.",
                    related=(loop.node,),
                    severity=severity,
                )


def _zero_grad_fix(analysis, loop, step_node):
    """``<optimizer>.zero_grad()`` as the first statement of the loop body,
    when the loop itself calls ``optimizer.step()`` or ``scaler.step(optimizer)``."""
    body = loop.node.body
    if not isinstance(body, cst.IndentedBlock):
        return None
    site = next((call for call in loop.calls if call.node is step_node), None)
    if site is None or site.scope is not loop.scope or site.method != "step":
        return None
    kind = analysis.optim.receiver_kind(site)
    if kind == "optimizer":
        optimizer = site.receiver
    elif kind == "scaler":
        optimizer = site.arg(0, "optimizer")
    else:
        return None
    name = dotted_name(optimizer) if optimizer is not None else None
    if name is None:
        return None
    return Fix(
        body,
        edits.prepend_statement(f"{name}.zero_grad()"),
        safe=False,
        description=f"call {name}.zero_grad() at the top of the loop body",
    )
