from lintorch import torchapi as api
from lintorch.analyze.losses import INTEGER_LABELS, ONE_HOT
from lintorch.rule import Example, Rule, Severity


class BceOnMulticlass(Rule):
    """
    **What it does.** Flags binary cross-entropy (`nn.BCELoss`,
    `nn.BCEWithLogitsLoss`, `F.binary_cross_entropy*`) used on a single-label
    problem with more than two classes: targets built with
    `one_hot(labels, num_classes=C)` or `torch.eye(C)[labels]` with `C > 2`
    (or with `C` left to PyTorch, `F.one_hot(y)`, when the model's output is
    visibly `C > 2` wide or the labels come from a classification dataset
    such as MNIST), integer class labels used as targets
    (`torch.randint(0, C, ...)`, the labels of a torchvision classification
    dataset's `DataLoader`), or a `C`-way output whose `argmax` is compared
    with the labels as the predicted class.

    **Why is this bad?** Binary cross-entropy scores every class as an
    independent yes/no question. For a task where exactly one class is right,
    nothing makes the outputs compete, the loss is dominated by the many
    easy "no" answers, and with integer labels the targets are not even
    probabilities.

    **Symptom.** The model fails to learn: accuracy stays near chance or the
    model predicts the majority class for every input.

    **Fix.** Use `nn.CrossEntropyLoss` on raw logits with integer class
    labels (no one-hot, no sigmoid). Binary tasks (one output) and
    multi-label tasks (float multi-hot targets) are fine with BCE and are not
    flagged.
    """

    code = "LT101"
    name = "bce-on-multiclass"
    severity = Severity.ERROR
    summary = "binary cross-entropy used for single-label classification with more than two classes"
    symptom = "model not learning; accuracy stuck near chance"
    triggers = ("BCE", "binary_cross_entropy")

    bad = [
        Example(
            """
            import torch
            import torch.nn as nn
            import torch.nn.functional as F

            num_classes = 3
            criterion = nn.BCELoss()
            targets = F.one_hot(labels, num_classes=num_classes).float()
            loss = criterion(torch.sigmoid(model(x)), targets)
            """
        ),
        Example(
            """
            import torch
            import torch.nn.functional as F

            y = torch.randint(0, 10, (64,))
            loss = F.binary_cross_entropy_with_logits(model(x), y.float())
            """
        ),
    ]
    good = [
        Example(
            """
            import torch.nn as nn

            criterion = nn.CrossEntropyLoss()
            loss = criterion(model(x), labels)
            """
        ),
        Example(
            """
            import torch.nn as nn

            # GAN discriminator: one real/fake output per sample
            adversarial_loss = nn.BCEWithLogitsLoss()
            loss = adversarial_loss(discriminator(images), torch.ones(batch, 1))
            """
        ),
    ]

    def check(self, analysis):
        for loss in analysis.losses.loss_calls(api.BCE_MODULES, api.BCE_FUNCS):
            evidence = analysis.losses.multiclass_evidence(loss)
            if evidence is None:
                continue
            if evidence.kind == ONE_HOT:
                what = f"one-hot targets over {evidence.classes} classes (line {{line0}})"
            elif evidence.kind == INTEGER_LABELS:
                what = f"integer class labels in [0, {evidence.classes}) as targets (line {{line0}})"
            else:
                what = f"a {evidence.classes}-way output scored by its argmax (line {{line0}})"
            yield self.report(
                loss.call.node,
                f"{loss.short_name} on {what}",
                explanation="Binary cross-entropy treats each class as an independent yes/no, so nothing "
                "makes the classes compete and the model fails to learn (accuracy stuck near chance). "
                "For single-label classification use nn.CrossEntropyLoss on raw logits with integer "
                "class labels.",
                related=(evidence.node,),
            )
