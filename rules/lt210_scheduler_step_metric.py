import re

import libcst as cst

from lintorch import torchapi as api
from lintorch.index import iter_nodes
from lintorch.rule import Example, Rule, Severity


class SchedulerStepMetric(Rule):
    """
    **What it does.** Flags `scheduler.step(value)` where `value` is a
    metric (a loss, an accuracy, a score, `loss.item()`, the result of an
    `evaluate()`/`validate()` function) and the scheduler is a torch
    scheduler other than `ReduceLROnPlateau`.

    **Why is this bad?** Only `ReduceLROnPlateau.step()` takes a metric.
    Every other scheduler's optional argument is the *epoch*: the loss is
    taken as the epoch number, so the schedule is evaluated at "epoch 0.43"
    on every call (for `StepLR` that is always before the first decay) and
    the learning rate never follows the intended schedule.

    **Symptom.** The learning rate stays at its initial value (or jumps
    around with the loss); training plateaus and accuracy stops improving
    where the schedule should have helped.

    **Fix.** Call `scheduler.step()` without arguments once per epoch, or
    switch to `ReduceLROnPlateau` if the intent is to lower the lr when the
    validation loss stalls. `ReduceLROnPlateau.step(val_loss)` is correct and
    not flagged. `scheduler.step(epoch)` (an epoch counter, deprecated since
    PyTorch 1.1 but still honoured through the closed-form schedule) is left
    alone: it is not a metric, and `CosineAnnealingWarmRestarts.step(epoch + i / iters)`
    is documented usage. Schedulers from other libraries (timm's
    `scheduler.step(epoch, metric)`) have their own signatures and are not
    checked.
    """

    code = "LT210"
    name = "scheduler-step-metric"
    severity = Severity.ERROR
    summary = "scheduler.step(metric) on a scheduler that is not ReduceLROnPlateau"
    symptom = "learning rate never follows the schedule; training plateaus, accuracy not improving"
    triggers = ("lr_scheduler",)

    bad = [
        Example(
            """
            from torch.optim.lr_scheduler import StepLR
            scheduler = StepLR(optimizer, step_size=10, gamma=0.1)
            for epoch in range(30):
                val_loss = evaluate(model, val_loader)
                scheduler.step(val_loss)
            """
        ),
    ]
    good = [
        Example(
            """
            from torch.optim.lr_scheduler import ReduceLROnPlateau
            scheduler = ReduceLROnPlateau(optimizer, "min", patience=3)
            for epoch in range(30):
                val_loss = evaluate(model, val_loader)
                scheduler.step(val_loss)
            """
        ),
    ]

    def check(self, analysis):
        index = analysis.index
        for call in index.method_calls("step"):
            metric = call.arg(0, "metrics") or call.arg(None, "epoch")
            if metric is None:
                continue
            found = analysis.optim.scheduler_constructor(call)
            if found is None:
                continue
            qualname, _ = found
            if not qualname.startswith(api.LR_SCHEDULER_PREFIX) or qualname == api.REDUCE_ON_PLATEAU:
                continue
            if not _metric_like(analysis, metric, call):
                continue
            short = qualname.rsplit(".", 1)[-1]
            yield self.report(
                metric,
                f"{short}.step() is given a metric, but it takes an epoch number",
                explanation="The value is used as the epoch, so the learning rate never follows the "
                "schedule and training plateaus (accuracy not improving). Call scheduler.step() without "
                "arguments, or use ReduceLROnPlateau if the lr should drop when the validation loss stalls.",
            )


_METRIC_TOKENS = frozenset(
    {
        "loss", "losses", "acc", "accuracy", "metric", "metrics", "score", "err", "error", "f1", "auc", "dice",
        "iou", "miou", "psnr", "ppl", "perplexity", "bleu", "map", "recall", "precision", "mae", "mse", "rmse",
        "top1", "top5", "prec1",
    }
)
_EPOCH_TOKENS = frozenset(
    {"epoch", "epochs", "ep", "step", "steps", "iter", "iters", "iteration", "idx", "count", "batch", "i", "e",
     "it", "n", "t", "k"}
)
_EVAL_FUNCS = ("evaluate", "validate", "valid", "eval", "test", "loss", "accuracy", "score", "metric")


def _word_kind(name: str):
    """metric | epoch | None, from the tokens of the last name part
    (``epoch_val_loss`` is a metric, ``epoch + 1`` an epoch)."""
    last = name.rsplit(".", 1)[-1].lower()
    tokens = {t for t in re.split(r"[_\W]+", last) if t}
    tokens |= {t.rstrip("0123456789") for t in tokens}
    if tokens & _METRIC_TOKENS:
        return "metric"
    if tokens & _EPOCH_TOKENS:
        return "epoch"
    return None


def _metric_like(analysis, expr, call, _depth=0) -> bool:
    """Whether ``expr`` visibly holds a metric, not an epoch counter."""
    if _depth > 3:
        return False
    for node in iter_nodes(expr):
        if isinstance(node, (cst.Name, cst.Attribute)):
            from lintorch.index import dotted_name

            dotted = dotted_name(node)
            if dotted and _word_kind(dotted) == "epoch":
                return False
    if isinstance(expr, cst.Call):
        func = expr.func
        if isinstance(func, cst.Attribute) and func.attr.value == "item":
            return True
        if isinstance(func, cst.Attribute) and func.attr.value in ("mean", "sum", "cpu", "float", "detach"):
            return _metric_like(analysis, func.value, call, _depth + 1)
        from lintorch.index import dotted_name

        name = (dotted_name(func) or "").rsplit(".", 1)[-1].lower()
        return any(word in name for word in _EVAL_FUNCS)
    if isinstance(expr, (cst.Name, cst.Attribute)):
        from lintorch.index import dotted_name

        if _word_kind(dotted_name(expr) or "") == "metric":
            return True
        if isinstance(expr, cst.Name):
            for value in analysis.values.definitions(expr, call.scope, call.order):
                if value.expr is not expr and _metric_like(analysis, value.expr, call, _depth + 1):
                    return True
        return False
    if isinstance(expr, cst.Subscript):
        return _metric_like(analysis, expr.value, call, _depth + 1)
    return False
