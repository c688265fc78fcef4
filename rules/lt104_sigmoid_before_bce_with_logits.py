from lintorch import torchapi as api
from lintorch.rule import Example, Rule, Severity


class SigmoidBeforeBceWithLogits(Rule):
    """
    **What it does.** Flags a `BCEWithLogitsLoss` /
    `F.binary_cross_entropy_with_logits` whose input has already been through
    `sigmoid`: inline, through a variable, as the last layer of an
    `nn.Sequential` (`nn.Sigmoid`), or returned by the model's `forward`.
    Only the loss *input* is checked: a sigmoid applied to the target (soft
    labels from a teacher) or used for metrics is fine.

    **Why is this bad?** The "with logits" loss applies the sigmoid itself.
    A second sigmoid squashes the predictions into [0.5, 0.73], so the loss
    can never reach its minimum and the gradients shrink by a factor of at
    least four at every step.

    **Symptom.** The loss plateaus at a high value and stops changing;
    predictions are nearly identical for every input and accuracy does not
    improve.

    **Fix.** Pass the raw logits to `BCEWithLogitsLoss` and apply `sigmoid`
    only for metrics and inference, or keep the sigmoid and switch to
    `nn.BCELoss` (less numerically stable).
    """

    code = "LT104"
    name = "sigmoid-before-bce-with-logits"
    severity = Severity.ERROR
    summary = "sigmoid output fed to BCEWithLogitsLoss, which applies the sigmoid itself"
    symptom = "loss stuck high and not changing; identical predictions"
    triggers = ("binary_cross_entropy_with_logits", "BCEWithLogitsLoss")

    bad = [
        Example(
            """
            import torch
            import torch.nn as nn

            criterion = nn.BCEWithLogitsLoss()
            loss = criterion(torch.sigmoid(model(x)), y)
            """
        ),
        Example(
            """
            import torch.nn.functional as F

            probs = model(x).sigmoid()
            loss = F.binary_cross_entropy_with_logits(probs, y)
            """
        ),
    ]
    good = [
        Example(
            """
            import torch
            import torch.nn as nn

            criterion = nn.BCEWithLogitsLoss()
            logits = model(x)
            loss = criterion(logits, y)
            accuracy = ((torch.sigmoid(logits) > 0.5) == y).float().mean()
            """
        ),
    ]

    def check(self, analysis):
        for loss, activation, inline in analysis.losses.activated_loss_inputs(
            api.BCE_WITH_LOGITS_MODULES, api.BCE_WITH_LOGITS_FUNCS, frozenset({"sigmoid"})
        ):
            yield self.report(
                loss.input,
                f"{loss.short_name} receives sigmoid output ({activation.brief(inline)})",
                explanation=activation.origin()
                + f"{loss.short_name} applies the sigmoid itself: the doubled sigmoid squeezes "
                "predictions into [0.5, 0.73], so the loss stays high and stops changing and predictions "
                "look identical. Pass the raw logits (apply sigmoid only for metrics), or use nn.BCELoss "
                "on the probabilities.",
                related=() if inline else (activation.node,),
            )
