from typing import Optional

import libcst as cst

from lintorch import edits
from lintorch import torchapi as api
from lintorch.analyze.values import Value
from lintorch.rule import Example, Fix, Rule, Severity

_DIM0_FUNCS = api.SOFTMAX_FUNCS | api.LOG_SOFTMAX_FUNCS | frozenset({"torch.nn.functional.softmin"})
_DIM0_METHODS = frozenset({"softmax", "log_softmax"})


class SoftmaxDim(Rule):
    """
    **What it does.** Flags two ways of normalising over the wrong axis:

    * `F.softmax(x)`, `F.log_softmax(x)`, `F.softmin(x)`, `nn.Softmax()`,
      `nn.LogSoftmax()`, `nn.Softmin()` without `dim=` (or with
      `dim=None`). (`torch.softmax(x)` and `x.softmax()` require `dim` and
      fail loudly, so they are not this rule's business.)
    * `dim=0` on what is visibly a `[batch, classes]` model output:
      `F.softmax(model(x), dim=0)` / `model(x).softmax(0)` where `model` is a
      module instance called on a batch from a `DataLoader` (or on a tensor
      such as `torch.randn(64, 10)`) whose output visibly has more than one
      column (a final `nn.Linear(h, C)` with `C > 1`), and an
      `nn.Softmax(dim=0)` / `nn.LogSoftmax(dim=0)` ending an `nn.Sequential`
      right after such a linear layer, called on such batches.

    `dim=0` on anything else is not flagged: attention weights over a 1-D
    sequence, `F.softmax(output[0], dim=0)` for one sample's scores,
    `[n, 1]` scores normalised over a set of items (attention pooling,
    ListNet ranking), and anything inside a module's own methods, where the
    tensor layout is not visible.

    **Why is this bad?** Without `dim`, PyTorch guesses (and warns that the
    implicit choice is deprecated): `dim=0` for 0-, 1- and 3-D input, `dim=1`
    otherwise. For a `[batch, seq, classes]` tensor that normalises across
    the batch. `dim=0` on `[batch, classes]` makes each class's column sum
    to 1 over the batch instead of each sample's row over the classes: every
    prediction depends on the other samples in the batch.

    **Symptom.** Probabilities that do not sum to 1 per sample, predictions
    that change with the batch composition, a model that does not learn or
    accuracy that does not improve.

    **Severity.** `dim=0` over the batch axis is an `error`. A missing `dim`
    is an `error` on a visibly 3-D tensor (PyTorch picks dim 0, the batch),
    `info` (off by default) on a visibly 1- or 2-D tensor, where PyTorch's
    implicit choice is the right axis and only the deprecation remains, and
    a `warning` when the number of dimensions is not visible.

    **Fix.** Always pass `dim` explicitly: `dim=1` (or `dim=-1`) for
    `[batch, classes]` logits, the class axis in general.

    **Fix safety.** `--unsafe-fixes` adds `dim=-1` where `dim` is missing
    (the last axis: the classes of `[batch, classes]` and
    `[batch, seq, classes]`; review it for `[N, C, H, W]` images, where the
    class axis is 1) and turns `dim=0` on a `[batch, classes]` output into
    `dim=1`. Unsafe: the values change (that is the bug being fixed).
    """

    code = "LT107"
    name = "softmax-dim"
    severity = Severity.WARNING
    severity_cases = "error over the batch axis; info without dim= on 1-D/2-D input"
    summary = "softmax/log_softmax without dim=, or over dim=0 of [batch, classes] logits"
    symptom = "probabilities not summing to 1 per sample; accuracy not improving"
    triggers = ("softmax", "Softmax", "softmin", "Softmin")

    bad = [
        Example(
            """
            import torch.nn.functional as F

            probs = F.softmax(logits)
            """
        ),
        Example(
            """
            import torch.nn as nn

            model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 3), nn.LogSoftmax())
            """
        ),
        Example(
            """
            import torch
            import torch.nn as nn

            model = nn.Linear(10, 3)
            for x, y in train_loader:
                probs = torch.softmax(model(x), dim=0)
            """
        ),
    ]
    good = [
        Example(
            """
            import torch
            import torch.nn.functional as F

            probs = F.softmax(logits, dim=1)
            scores = torch.randn(12)
            weights = scores.softmax(0)  # a 1-D vector: dim 0 is the only axis
            """
        ),
    ]

    def check(self, analysis):
        index = analysis.index
        for call in index.calls:
            qualname = call.qualname
            if qualname in api.IMPLICIT_DIM_SOFTMAX_FUNCS:
                if _dim_missing(call.node, 1):
                    data = call.arg(0, "input")
                    rank = analysis.shapes.rank(data, call.scope, call.order) if data is not None else None
                    yield self._no_dim(call.node, qualname, rank)
                    continue
            elif qualname in api.IMPLICIT_DIM_SOFTMAX_MODULES:
                if _dim_missing(call.node, 0):
                    rank = analysis.shapes.module_input_rank(Value(call.node, call.scope, call.order))
                    yield self._no_dim(call.node, qualname, rank)
                    continue
            if qualname in _DIM0_FUNCS:
                data, dim = call.arg(0, "input"), call.arg(1, "dim")
            elif qualname is None and call.method in _DIM0_METHODS:
                data, dim = call.receiver, call.arg(0, "dim")
            elif qualname in api.SEQUENTIAL:
                report = self._sequential_dim0(analysis, call)
                if report is not None:
                    yield report
                continue
            else:
                continue
            if data is None or analysis.values.int_values(dim, call.scope, call.order) != [0]:
                continue
            klass = analysis.values.enclosing_class(call.scope)
            if klass is not None and analysis.models.is_module_class(klass):
                continue
            model_call = _batched_model_output(analysis, Value(data, call.scope, call.order))
            if model_call is None:
                continue
            yield self.report(
                dim,
                severity=Severity.ERROR,
                message="softmax over dim=0 of a model output computed on a batch (line {line0}): dim 0 is the "
                "batch axis of [batch, classes] logits, so each class is normalised across the samples "
                "instead of each sample across its classes; probabilities do not sum to 1 per sample and "
                "predictions depend on the rest of the batch (accuracy not improving). Use dim=1 (or -1).",
                related=(model_call,),
                fix=_dim1_fix(dim),
            )

    def _no_dim(self, node: cst.Call, qualname: str, rank: Optional[int]):
        short = qualname.replace("torch.nn.functional.", "F.").replace("torch.nn.", "nn.")
        position = 0 if qualname in api.IMPLICIT_DIM_SOFTMAX_MODULES else 1
        if rank in (1, 2):
            severity = Severity.INFO
            message = (
                f"{short} without dim= on a {rank}-D tensor: PyTorch picks dim={rank - 1}, the right axis "
                "here, but the implicit dim is deprecated. Pass it explicitly."
            )
        elif rank == 3:
            severity = Severity.ERROR
            message = (
                f"{short} without dim= on a 3-D tensor: PyTorch picks dim=0, the batch (or time) axis, so "
                "probabilities are normalised across samples instead of over the classes and do not sum to "
                "1 per sample; the model does not learn what you expect. Pass the class axis (dim=-1)."
            )
        else:
            severity = Severity.WARNING
            message = (
                f"{short} without dim=: the implicit dim is deprecated and PyTorch guesses it (dim=0 for "
                "0-, 1- and 3-D input, so a [batch, seq, classes] tensor is normalised across the batch): "
                "probabilities may not sum to 1 per sample and the model does not learn what you expect. "
                "Pass dim explicitly (dim=1 or dim=-1 for [batch, classes])."
            )
        return self.report(
            node,
            message,
            severity=severity,
            fix=Fix(
                node,
                lambda updated: edits.with_argument(updated, "dim", position, "-1"),
                safe=False,
                description="pass dim=-1",
            ),
        )

    def _sequential_dim0(self, analysis, call):
        index = analysis.index
        positional = [a for a in call.node.args if a.keyword is None]
        if len(positional) < 2 or any(a.star for a in positional):
            return None
        last, before = positional[-1].value, positional[-2].value
        if not isinstance(last, cst.Call) or not isinstance(before, cst.Call):
            return None
        if index.qualname_of(last.func, call.scope, call.order) not in (
            api.SOFTMAX_MODULES | api.LOG_SOFTMAX_MODULES
        ) or index.qualname_of(before.func, call.scope, call.order) not in api.LINEAR:
            return None
        dim = _arg(last, 0, "dim")
        if analysis.values.int_values(dim, call.scope, call.order) != [0]:
            return None
        width = analysis.values.int_values(_arg(before, 1, "out_features"), call.scope, call.order)
        if len(width) != 1 or width[0] < 2:
            return None  # a softmax over the items of a set of [n, 1] scores (attention pooling)
        for use in index.calls:
            if not isinstance(use.node.func, (cst.Name, cst.Attribute)) or not use.node.args:
                continue
            ctor = analysis.models.module_instance(use.node.func, use.scope, use.order)
            if ctor is None or ctor.expr is not call.node:
                continue
            klass = analysis.values.enclosing_class(use.scope)
            if klass is not None and analysis.models.is_module_class(klass):
                continue
            if analysis.data.batch_source(use.node.args[0].value, use.scope, use.order) is not None:
                return self.report(
                    dim,
                    severity=Severity.ERROR,
                    message="softmax layer over dim=0 at the end of an nn.Sequential that is called on batches "
                    "(line {line0}): dim 0 is the batch axis of the linear layer's [batch, classes] "
                    "output, so each class is normalised across the samples; probabilities do not sum to "
                    "1 per sample and the model does not learn properly. Use dim=1 (or -1).",
                    related=(use.node,),
                    fix=_dim1_fix(dim),
                )
        return None


def _arg(call: cst.Call, position: int, keyword: str) -> Optional[cst.BaseExpression]:
    from lintorch.index import call_arg

    return call_arg(call, position, keyword)


def _dim_missing(node: cst.Call, position: int) -> bool:
    if any(arg.star for arg in node.args):
        return False  # *args / **kwargs may carry dim
    dim = _arg(node, position, "dim")
    return dim is None or (isinstance(dim, cst.Name) and dim.value == "None")


def _batched_model_output(analysis, data: Value) -> Optional[cst.Call]:
    """The model call producing ``data`` when it is a module instance (not a
    ``self.<layer>``) applied to a visible batch."""
    found = None
    values = analysis.values.definitions(data.expr, data.scope, data.order)
    if not values:
        return None
    for value in values:
        value = analysis.values.strip_value_preserving(value)
        expr = value.expr
        if not isinstance(expr, cst.Call) or not expr.args or not isinstance(expr.func, (cst.Name, cst.Attribute)):
            return None
        func = expr.func
        if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value == "self":
            return None
        ctor = analysis.models.module_instance(func, value.scope, value.order)
        if ctor is None:
            return None
        width = analysis.models.output_width(ctor)
        if width is None or width < 2:
            return None  # [batch, classes] not visible; [n, 1] scores (ListNet, attention pooling)
        if analysis.data.batch_source(expr.args[0].value, value.scope, value.order) is None:
            return None
        found = found or expr
    return found


def _dim1_fix(dim: cst.BaseExpression) -> Fix:
    """``dim=0`` -> ``dim=1`` on a [batch, classes] tensor."""
    return Fix(dim, edits.keep_outer_parens(dim, cst.Integer("1")), safe=False, description="use dim=1")
