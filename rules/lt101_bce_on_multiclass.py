from typing import Optional, Tuple

import libcst as cst

from lintorch import torchapi as api
from lintorch.analyze.values import Value
from lintorch.rule import Example, Rule, Severity

ONE_HOT = "one-hot"
INTEGER_LABELS = "integer labels"


class BceOnMulticlass(Rule):
    """
    **What it does.** Flags binary cross-entropy (`nn.BCELoss`,
    `nn.BCEWithLogitsLoss`, `F.binary_cross_entropy*`) used on a single-label
    problem with more than two classes: targets built with
    `one_hot(labels, num_classes=C)` or `torch.eye(C)[labels]` with `C > 2`,
    or integer class labels (`torch.randint(0, C, ...)`) used as targets.

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
            if loss.target is None:
                continue
            evidence = _multiclass_evidence(analysis, Value(loss.target, loss.call.scope, loss.call.order))
            if evidence is None:
                continue
            kind, classes, node = evidence
            if kind == ONE_HOT:
                what = f"one-hot targets over {classes} classes (line {{line0}})"
            else:
                what = f"integer class labels in [0, {classes}) as targets (line {{line0}})"
            yield self.report(
                loss.call.node,
                f"{loss.short_name} on {what}: binary cross-entropy treats each class as an "
                "independent yes/no, so nothing makes the classes compete and the model fails to "
                "learn (accuracy stuck near chance). For single-label classification use "
                "nn.CrossEntropyLoss on raw logits with integer class labels.",
                related=(node,),
            )


def _multiclass_evidence(analysis, target: Value) -> Optional[Tuple[str, int, cst.CSTNode]]:
    index = analysis.index
    for value in analysis.values.definitions(target.expr, target.scope, target.order):
        value = analysis.values.strip_value_preserving(value)
        expr = value.expr
        if isinstance(expr, cst.Subscript):
            # torch.eye(C)[labels]
            eye = analysis.values.definitions(expr.value, value.scope, value.order)
            for candidate in eye:
                if isinstance(candidate.expr, cst.Call) and (
                    index.qualname_of(candidate.expr.func, candidate.scope, candidate.order) == "torch.eye"
                ):
                    classes = _all_above_two(analysis, candidate.expr.args[0].value if candidate.expr.args else None, candidate)
                    if classes is not None:
                        return ONE_HOT, classes, expr
            continue
        if not isinstance(expr, cst.Call):
            continue
        qualname = index.qualname_of(expr.func, value.scope, value.order)
        if qualname in api.ONE_HOT_FUNCS:
            classes = _all_above_two(analysis, _arg(expr, 1, "num_classes"), value)
            if classes is not None:
                return ONE_HOT, classes, expr
        elif qualname == "torch.randint":
            positional = [a for a in expr.args if a.keyword is None]
            high = _arg(expr, None, "high")
            if high is None:
                # randint(high, size) or randint(low, high, size)
                if len(positional) >= 3:
                    high = positional[1].value
                elif len(positional) == 2:
                    high = positional[0].value
            classes = _all_above_two(analysis, high, value)
            if classes is not None:
                return INTEGER_LABELS, classes, expr
    return None


def _arg(call: cst.Call, position, keyword):
    from lintorch.index import call_arg

    return call_arg(call, position, keyword)


def _all_above_two(analysis, expr, where: Value) -> Optional[int]:
    values = analysis.values.int_values(expr, where.scope, where.order)
    if values and all(v > 2 for v in values):
        return min(values)
    return None
