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
    * `dim=0` (a wrong dim, distinct from a missing one) on what is
      visibly a `[batch, classes]` model output: `F.softmax(model(x),
      dim=0)` / `model(x).log_softmax(0)` where `model` is a module instance
      called on a batch from a `DataLoader` (or on a tensor such as
      `torch.randn(64, 10)`) whose output visibly has more than one column
      (a final `nn.Linear(h, C)` with `C > 1`), and a model whose own output
      activation is a softmax over dim 0 (`nn.Softmax(dim=0)` ending an
      `nn.Sequential`, `F.softmax(self.fc(h), dim=0)` returned by
      `forward`, also through factories and wrappers) called on such
      batches. The tensor's rank comes from the shapes domain (factories,
      `view`, `flatten`, `squeeze`, indexing, `torch.cat`, layers and the
      call sites of a module such as `nn.Softmax()`).

    `dim=0` on anything else is not flagged: attention weights over a 1-D
    sequence, `F.softmax(output[0], dim=0)` for one sample's scores,
    `[n, 1]` scores normalised over a set of items (attention pooling,
    ListNet ranking), and a softmax inside a module's methods that is not
    the output activation of a model called on batches, where the tensor
    layout is not visible.

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
    also `info` when the number of dimensions is not visible: most such
    tensors are `[batch, classes]` logits (on labelled real code every one
    was), and PyTorch itself warns about the implicit choice at run time.
    Ranks come from factories, reshapes, layers (a recurrent layer's output
    is 3-D) and a module's call sites.

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
    severity = Severity.ERROR
    severity_cases = "info without dim= on 1-D/2-D input or where the rank is not visible"
    summary = "softmax/log_softmax without dim=, or over dim=0 of [batch, classes] logits"
    symptom = "probabilities not summing to 1 per sample; accuracy not improving"
    triggers = ("softmax", "Softmax", "softmin", "Softmin")

    bad = [
        Example(
            """
            import torch
            import torch.nn.functional as F

            scores = torch.randn(32, 20, 5)  # [batch, seq, classes]
            probs = F.softmax(scores)
            """
        ),
        Example(
            """
            import torch.nn as nn

            class Tagger(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.lstm = nn.LSTM(32, 64, batch_first=True)
                    self.out = nn.Sequential(nn.Linear(64, 9), nn.LogSoftmax())

                def forward(self, x):
                    h, _ = self.lstm(x)
                    return self.out(h)
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
            else:
                continue
            if data is None or analysis.values.int_values(dim, call.scope, call.order) != [0]:
                continue
            klass = analysis.values.enclosing_class(call.scope)
            if klass is not None and analysis.models.is_module_class(klass):
                continue  # the model's own output activation: see _dim0_output_activations
            model_call = analysis.shapes.batched_model_output(data, call.scope, call.order)
            if model_call is not None:
                yield self._batch_axis(dim, model_call)
        yield from self._dim0_output_activations(analysis)

    def _dim0_output_activations(self, analysis):
        """A model whose output activation is a softmax over dim 0
        (``nn.Softmax(dim=0)`` ending an ``nn.Sequential``, ``F.softmax(h,
        dim=0)`` returned by ``forward``), called on batches: its output is
        ``[batch, classes]``, so dim 0 is the batch."""
        reported = set()
        for use in analysis.index.calls:
            if not use.node.args:
                continue
            klass = analysis.values.enclosing_class(use.scope)
            if klass is not None and analysis.models.is_module_class(klass):
                continue
            if analysis.shapes.batched_model_output(use.node, use.scope, use.order) is None:
                continue
            activation = analysis.models.activation(use.node, use.scope, use.order)
            node = activation.node if activation is not None and activation.kind in ("softmax", "log_softmax") else None
            site = analysis.index.call_at(node) if isinstance(node, cst.Call) else None
            dim = _activation_dim(site) if site is not None else None
            if dim is None or id(dim) in reported or analysis.values.int_values(dim, site.scope, site.order) != [0]:
                continue
            reported.add(id(dim))
            yield self._batch_axis(dim, use.node)

    def _batch_axis(self, dim, model_call):
        return self.report(
            dim,
            severity=Severity.ERROR,
            message="softmax over dim=0, the batch axis of a model output on a batch (line {line0})",
            explanation="Dim 0 is the batch axis of [batch, classes] logits, so each class is normalised "
            "across the samples instead of each sample across its classes; probabilities do not sum to 1 "
            "per sample and predictions depend on the rest of the batch (accuracy not improving). Use "
            "dim=1 (or -1).",
            related=(model_call,),
            fix=_dim1_fix(dim),
        )

    def _no_dim(self, node: cst.Call, qualname: str, rank: Optional[int]):
        short = qualname.replace("torch.nn.functional.", "F.").replace("torch.nn.", "nn.")
        position = 0 if qualname in api.IMPLICIT_DIM_SOFTMAX_MODULES else 1
        if rank in (1, 2):
            severity = Severity.INFO
            message = f"{short} without dim= on a {rank}-D tensor (PyTorch picks dim={rank - 1}, right here)"
            explanation = (
                "The implicit dim is deprecated (PyTorch warns), and on 3-D input the same call would "
                f"normalise over dim 0, the batch axis. Pass dim={rank - 1} (or dim=-1) explicitly."
            )
        elif rank == 3:
            severity = Severity.ERROR
            message = f"{short} without dim= on a 3-D tensor: PyTorch picks dim=0, the batch axis"
            explanation = (
                "Dim 0 is the batch (or time) axis, so probabilities are normalised across samples instead "
                "of over the classes and do not sum to 1 per sample; the model does not learn what you "
                "expect. Pass the class axis (dim=-1)."
            )
        else:
            severity = Severity.INFO
            message = f"{short} without dim= on a tensor of unseen rank (PyTorch guesses the axis)"
            explanation = (
                "The implicit dim is deprecated and PyTorch guesses it: dim=1 for [batch, classes] logits, "
                "but dim=0, the batch, for 3-D input. Pass dim explicitly."
            )
        return self.report(
            node,
            message,
            explanation=explanation,
            severity=severity,
            fix=Fix(
                node,
                lambda updated: edits.with_argument(updated, "dim", position, "-1"),
                safe=False,
                description="pass dim=-1",
            ),
        )

def _arg(call: cst.Call, position: int, keyword: str) -> Optional[cst.BaseExpression]:
    from lintorch.index import call_arg

    return call_arg(call, position, keyword)


def _dim_missing(node: cst.Call, position: int) -> bool:
    if any(arg.star for arg in node.args):
        return False  # *args / **kwargs may carry dim
    dim = _arg(node, position, "dim")
    return dim is None or (isinstance(dim, cst.Name) and dim.value == "None")


def _activation_dim(call) -> Optional[cst.BaseExpression]:
    """The ``dim`` argument of a softmax-family call or module."""
    if call.qualname in _DIM0_FUNCS:
        return call.arg(1, "dim")
    if call.qualname in api.SOFTMAX_MODULES | api.LOG_SOFTMAX_MODULES or (call.qualname is None and call.method in _DIM0_METHODS):
        return call.arg(0, "dim")
    return None


def _dim1_fix(dim: cst.BaseExpression) -> Fix:
    """``dim=0`` -> ``dim=1`` on a [batch, classes] tensor."""
    return Fix(dim, edits.keep_outer_parens(dim, cst.Integer("1")), safe=False, description="use dim=1")
