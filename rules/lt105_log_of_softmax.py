import libcst as cst

from lintorch import edits

from lintorch import torchapi as api
from lintorch.index import iter_nodes
from lintorch.rule import Example, Fix, Rule, Severity


class LogOfSoftmax(Rule):
    """
    **What it does.** Flags the logarithm of a softmax computed in two
    steps: `torch.log(F.softmax(x, dim=1))`, `x.softmax(1).log()`, or
    `torch.log(probs)` where `probs` is the output of `softmax`, of an
    `nn.Softmax` layer, or of a model whose last layer is `nn.Softmax`;
    also of selected probabilities (`torch.log(probs.gather(1, a))`,
    `-torch.log(torch.gather(probs, 1, a))`, `torch.log(probs[:, -1])`,
    directly or through a variable holding the selection).

    **Why is this bad?** `softmax` rounds the probabilities of unlikely
    classes to exactly 0 in float32 (any logit gap above ~104), and
    `log(0)` is `-inf`. The loss becomes `inf`/`nan`, and before that the
    two-step computation loses precision and gives noisy gradients.
    `log_softmax` computes the same value with the log-sum-exp trick and
    never underflows.

    **Symptom.** The loss turns into `nan` or `inf` after a while, or stops
    changing; the model stops learning.

    **Fix.** Use `F.log_softmax(x, dim=...)` (or `nn.LogSoftmax`), or
    return raw logits and use `nn.CrossEntropyLoss`. Code that already
    guards the log (`torch.log(probs + 1e-8)`, `probs.clamp(min=eps).log()`)
    is not flagged.

    **Fix safety.** `--fix` rewrites `torch.log(torch.softmax(x, dim))` and
    `x.softmax(dim).log()` to `torch.log_softmax(x, dim)` /
    `x.log_softmax(dim)` when the softmax call is the log's whole operand
    (same value, computed stably): a safe fix. A log of selected
    probabilities is reported without a fix.
    """

    code = "LT105"
    name = "log-of-softmax"
    severity = Severity.WARNING
    summary = "log of a softmax computed in two steps instead of log_softmax"
    symptom = "loss becomes nan or inf; model not learning"
    triggers = ("softmax", "Softmax")

    bad = [
        Example(
            """
            import torch
            import torch.nn.functional as F

            log_probs = torch.log(F.softmax(logits, dim=1))
            """
        ),
        Example(
            """
            probs = logits.softmax(dim=-1)
            loss = -(targets * probs.log()).sum(dim=-1).mean()
            """
        ),
    ]
    good = [
        Example(
            """
            import torch.nn.functional as F

            log_probs = F.log_softmax(logits, dim=1)
            """
        ),
        Example(
            """
            import torch

            probs = torch.softmax(logits, dim=1)
            log_probs = torch.log(probs + 1e-8)
            """
        ),
    ]

    def check(self, analysis):
        index = analysis.index
        for call in index.calls:
            if call.qualname in api.LOG_FUNCS:
                operand = call.arg(0, "input")
            elif call.method == "log" and not call.node.args and call.qualname is None:
                operand = call.receiver
            else:
                continue
            if operand is None:
                continue
            activation = analysis.losses.probability_activation(operand, call.scope, call.order)
            if activation is None or activation.kind != "softmax":
                continue
            inline = any(node is activation.node for node in iter_nodes(operand))
            yield self.report(
                call.node,
                f"log of a softmax in two steps ({activation.brief(inline)})",
                explanation=activation.origin()
                + "Probabilities of unlikely classes underflow to 0 and log(0) = -inf, so the loss "
                "turns into nan/inf or stops changing. Use log_softmax(x, dim=...) (nn.LogSoftmax), or raw "
                "logits with nn.CrossEntropyLoss.",
                related=() if inline else (activation.node,),
                fix=_log_softmax_fix(index, call, operand, activation) if inline else None,
            )


def _log_softmax_fix(index, call, operand, activation):
    """``torch.log(F.softmax(x, 1))`` -> ``F.log_softmax(x, 1)``; only when
    the log's operand is the softmax call itself."""
    softmax = activation.node
    if operand is not softmax or not isinstance(softmax, cst.Call):
        return None
    if call.qualname is not None and (len(call.node.args) != 1 or call.node.args[0].star):
        return None  # torch.log(x, out=...)
    qualname = index.qualname_of(softmax.func, call.scope, call.order)
    if qualname is not None:
        if qualname not in api.SOFTMAX_FUNCS:
            return None
    elif not (isinstance(softmax.func, cst.Attribute) and softmax.func.attr.value == "softmax"):
        return None
    new = edits.renamed_method(softmax, "log_softmax")
    if new is None:
        return None
    if call.qualname is not None and new.args:
        # torch.log(  # comment\n    F.softmax(x, 1)\n): keep the log call's
        # spacing and comments around the arguments.
        outer = call.node.args[0]
        last = new.args[-1].with_changes(whitespace_after_arg=outer.whitespace_after_arg)
        new = new.with_changes(whitespace_before_args=call.node.whitespace_before_args, args=[*new.args[:-1], last])
    return Fix(call.node, edits.keep_outer_parens(call.node, new), safe=True, description="use log_softmax")
