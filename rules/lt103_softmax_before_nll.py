from lintorch import torchapi as api
from lintorch.rule import Example, Rule, Severity


class SoftmaxBeforeNll(Rule):
    """
    **What it does.** Flags an `NLLLoss` / `F.nll_loss` whose input is the
    output of `softmax` (not `log_softmax`): inline, through a variable, as
    the last layer of an `nn.Sequential` (`nn.Softmax`), or returned by the
    model's `forward`.

    **Why is this bad?** `NLLLoss` expects log-probabilities: it returns
    `-input[target]`. Given probabilities in [0, 1] it minimises `-p`, a
    loss that is bounded in [-1, 0], has no log to sharpen it and whose
    gradient through the softmax vanishes as soon as one class dominates.

    **Symptom.** The loss goes negative and then stops changing; accuracy
    plateaus well below what the model can reach, or the model does not
    learn at all.

    **Fix.** Replace `softmax` with `log_softmax` (or `nn.Softmax` with
    `nn.LogSoftmax`), or drop it and use `nn.CrossEntropyLoss` on raw
    logits. `log_softmax` into `NLLLoss` is correct and not flagged.
    """

    code = "LT103"
    name = "softmax-before-nll"
    severity = Severity.ERROR
    summary = "softmax output fed to NLLLoss, which expects log-probabilities"
    symptom = "loss goes negative and stops changing; model not learning"
    triggers = ("nll_loss", "NLLLoss")

    bad = [
        Example(
            """
            import torch.nn as nn
            import torch.nn.functional as F

            probs = F.softmax(model(x), dim=1)
            loss = F.nll_loss(probs, y)
            """
        ),
        Example(
            """
            import torch.nn as nn

            model = nn.Sequential(nn.Linear(20, 5), nn.Softmax(dim=1))
            criterion = nn.NLLLoss()
            loss = criterion(model(x), y)
            """
        ),
    ]
    good = [
        Example(
            """
            import torch.nn as nn
            import torch.nn.functional as F

            log_probs = F.log_softmax(model(x), dim=1)
            loss = F.nll_loss(log_probs, y)
            """
        ),
    ]

    def check(self, analysis):
        for loss, activation, inline in analysis.losses.activated_loss_inputs(
            api.NLL_MODULES, api.NLL_FUNCS, frozenset({"softmax"})
        ):
            yield self.report(
                loss.input,
                f"{loss.short_name} receives softmax output ({activation.brief(inline)})",
                explanation=activation.origin()
                + f"{loss.short_name} expects log-probabilities: on probabilities the loss is just "
                "-p, goes negative and its gradient vanishes, so the loss stops changing and the model "
                "does not learn. Use log_softmax (nn.LogSoftmax) instead of softmax, or "
                "nn.CrossEntropyLoss on raw logits.",
                related=() if inline else (activation.node,),
            )
