import libcst as cst

from lintorch import torchapi as api
from lintorch.index import dotted_name, iter_nodes, number_value
from lintorch.rule import Example, Rule, Severity
from lintorch.analyze.branches import enclosing_if_tests
from lintorch.analyze.optim import SCHEDULER_STEP

#: The argument that sets each epoch scheduler's period (or decay rate).
_PERIOD_ARG = {
    "torch.optim.lr_scheduler.StepLR": (1, "step_size"),
    "torch.optim.lr_scheduler.MultiStepLR": (1, "milestones"),
    "torch.optim.lr_scheduler.CosineAnnealingLR": (1, "T_max"),
    "torch.optim.lr_scheduler.ExponentialLR": (1, "gamma"),
}
#: Words that say a length is counted in optimizer steps, not epochs.
_STEP_WORDS = ("len", "step", "iter", "batch", "total", "update", "num_training", "n_train", "sample")
#: A period this long (or a decay this slow) only makes sense per step.
_STEP_SCALE = 1000


class EpochSchedulerPerBatch(Rule):
    """
    **What it does.** Flags `StepLR`, `MultiStepLR`, `ExponentialLR` and
    `CosineAnnealingLR` stepped inside the batch loop (the loop that runs
    one optimizer step per iteration inside an epoch loop, or over a data
    loader) when their period is visibly counted in epochs: a small literal
    (`step_size=30`, `milestones=[30, 60]`, `T_max=100`), a value named
    after epochs (`T_max=num_epochs`), or a per-epoch decay (`gamma=0.9`).

    **Why is this bad?** These schedules are written in epochs. Stepped
    once per batch, `StepLR(step_size=30)` decays after 30 *batches*, and
    `ExponentialLR(gamma=0.9)` shrinks the learning rate by 10x every 22
    batches: within the first epoch the rate is essentially zero.

    **Symptom.** The loss drops briefly and then stops changing; the model
    stops learning after the first epoch, accuracy not improving.

    **Fix.** Call `scheduler.step()` once per epoch, after the batch loop,
    or express the period in steps (`T_max=epochs * len(loader)`). Not
    flagged: `OneCycleLR`, `CyclicLR`, warm-up/`LambdaLR` schedules,
    `CosineAnnealingWarmRestarts` with fractional epochs, periods counted in
    steps (`len(loader)`, `total_steps`, `num_training_steps`, literals of
    1000 or more), a step guarded by an end-of-epoch test, and full-batch
    loops where one iteration is one epoch.
    """

    code = "LT204"
    name = "epoch-scheduler-per-batch"
    severity = Severity.WARNING
    summary = "epoch-based scheduler (StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR) stepped every batch"
    symptom = "learning rate decays to ~0 within the first epoch; loss stops changing, model not learning"
    triggers = ("StepLR", "ExponentialLR", "CosineAnnealingLR")

    bad = [
        Example(
            """
            from torch.optim.lr_scheduler import StepLR
            scheduler = StepLR(optimizer, step_size=30, gamma=0.1)
            for epoch in range(90):
                for x, y in loader:
                    optimizer.zero_grad()
                    criterion(model(x), y).backward()
                    optimizer.step()
                    scheduler.step()
            """
        ),
    ]
    good = [
        Example(
            """
            from torch.optim.lr_scheduler import StepLR
            scheduler = StepLR(optimizer, step_size=30, gamma=0.1)
            for epoch in range(90):
                for x, y in loader:
                    optimizer.zero_grad()
                    criterion(model(x), y).backward()
                    optimizer.step()
                scheduler.step()
            """
        ),
        Example(
            """
            from torch.optim.lr_scheduler import CosineAnnealingLR
            scheduler = CosineAnnealingLR(optimizer, T_max=len(loader) * epochs)
            for epoch in range(epochs):
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
        for call in index.method_calls("step"):
            loop = call.loop
            if loop is None or loop.scope is not call.scope or call.node.args:
                continue
            if SCHEDULER_STEP not in analysis.optim.call_effects(call):
                continue
            found = analysis.optim.scheduler_constructor(call)
            if found is None or found[0] not in api.EPOCH_SCHEDULERS:
                continue
            qualname, ctor = found
            why = _epoch_period(analysis, qualname, ctor)
            if why is None:
                continue
            if not analysis.optim.is_batch_loop(loop):
                continue
            if any(_epoch_guard(test) for test in enclosing_if_tests(loop.node.body, call.node)):
                continue
            short = qualname.rsplit(".", 1)[-1]
            yield self.report(
                call.node,
                f"{short} ({why}) is stepped inside the batch loop (line {{line0}})",
                explanation="Its epoch-based schedule then runs per batch: the learning rate decays to "
                "almost zero within the first epoch, the loss stops changing and the model stops learning. "
                "Step it once per epoch, after the batch loop, or give its period in steps (e.g. "
                "T_max=epochs * len(loader)).",
                related=(loop.node,),
            )


def _epoch_period(analysis, qualname, ctor):
    """A short description when the period is visibly in epochs, else None."""
    index = analysis.index
    expr = ctor.expr
    if not isinstance(expr, cst.Call):
        return None
    position, keyword = _PERIOD_ARG[qualname]
    from lintorch.index import call_arg

    arg = call_arg(expr, position, keyword)
    if arg is None:
        return None
    label = f"{keyword}={_source(index, arg)}"
    names = _names_read(analysis, arg, ctor)
    if any(word in name for name in names for word in _STEP_WORDS):
        return None
    if keyword == "gamma":
        values = _numbers(analysis, arg, ctor)
        if values and all(v < 0.99 for v in values):
            return label
        return None
    if any("epoch" in name for name in names):
        return label
    values = _numbers(analysis, arg, ctor)
    if values and all(0 < v < _STEP_SCALE for v in values):
        return label
    return None


def _source(index, node) -> str:
    try:
        text = index.module.code_for_node(node)
    except Exception:  # pragma: no cover
        return "..."
    return text if len(text) <= 30 else text[:27] + "..."


def _names_read(analysis, expr, ctor, depth=0):
    """Lower-cased names (and attribute chains) ``expr`` reads, following
    local assignments a few levels."""
    out = set()
    for node in iter_nodes(expr):
        if isinstance(node, (cst.Name, cst.Attribute)):
            dotted = dotted_name(node)
            if dotted:
                out.add(dotted.lower())
            if isinstance(node, cst.Name) and depth < 3:
                for value in analysis.values.definitions(node, ctor.scope, ctor.order):
                    if value.expr is not node:
                        out |= _names_read(analysis, value.expr, value, depth + 1)
    return out


def _numbers(analysis, expr, ctor):
    values = []
    targets = [expr]
    if isinstance(expr, cst.Name):
        targets = [v.expr for v in analysis.values.definitions(expr, ctor.scope, ctor.order)]
    for target in targets:
        if isinstance(target, (cst.List, cst.Tuple)):
            items = [number_value(e.value) for e in target.elements]
        else:
            items = [number_value(target)]
        if not items or any(v is None for v in items):
            return []
        values.extend(items)
    return values


def _epoch_guard(test) -> bool:
    """``if i == len(loader) - 1``, ``if (i + 1) % iters_per_epoch == 0``."""
    for node in iter_nodes(test):
        if isinstance(node, cst.Name) and ("epoch" in node.value.lower() or node.value == "len"):
            return True
    return False
