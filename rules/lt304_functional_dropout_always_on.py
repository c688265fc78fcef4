from typing import Set

import libcst as cst

from lintorch import torchapi as api
from lintorch.index import iter_nodes
from lintorch.rule import Example, Rule, Severity


class FunctionalDropoutAlwaysOn(Rule):
    """
    **What it does.** Flags `F.dropout(x, p)` (also `dropout1d/2d/3d`,
    `alpha_dropout`, `feature_alpha_dropout`) called in a method of a model
    class without a `training` argument, unless the call is guarded by
    `if self.training:`.

    **Why is this bad?** The functional form does not know the module's
    mode: its `training` argument defaults to `True`, so dropout stays on
    after `model.eval()`. Evaluation and inference are then random and
    worse than they should be.

    **Symptom.** Predictions change from run to run on the same input;
    validation accuracy noisy and lower than training accuracy suggests.

    **Fix.** Pass `training=self.training` (`F.dropout(x, p,
    training=self.training)`) or use an `nn.Dropout` module, which follows
    `model.train()` / `model.eval()`. An explicit `training=True` (Monte
    Carlo dropout) is left alone.
    """

    code = "LT304"
    name = "functional-dropout-always-on"
    severity = Severity.WARNING
    summary = "F.dropout in a model without training=self.training stays active after model.eval()"
    symptom = "predictions change between runs; validation accuracy noisy"
    triggers = ("dropout",)

    bad = [
        Example(
            """
            import torch.nn as nn
            import torch.nn.functional as F

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc1 = nn.Linear(784, 256)
                    self.fc2 = nn.Linear(256, 10)

                def forward(self, x):
                    x = F.dropout(F.relu(self.fc1(x)), p=0.5)
                    return self.fc2(x)
            """
        ),
    ]
    good = [
        Example(
            """
            import torch.nn as nn
            import torch.nn.functional as F

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc1 = nn.Linear(784, 256)
                    self.fc2 = nn.Linear(256, 10)

                def forward(self, x):
                    x = F.dropout(F.relu(self.fc1(x)), p=0.5, training=self.training)
                    return self.fc2(x)
            """
        ),
        Example(
            """
            import torch.nn as nn
            import torch.nn.functional as F

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc1 = nn.Linear(784, 256)
                    self.drop = nn.Dropout(0.5)
                    self.fc2 = nn.Linear(256, 10)

                def forward(self, x):
                    return self.fc2(self.drop(F.relu(self.fc1(x))))
            """
        ),
    ]

    def check(self, analysis):
        index = analysis.index
        guarded_cache = {}
        for call in index.calls_to(api.DROPOUT_FUNCS):
            if call.arg(2, "training") is not None or any(a.star for a in call.node.args):
                continue
            function = index.enclosing_function(call.scope)
            if function is None or function.klass is None:
                continue
            klass = function.klass
            if not (analysis.models.is_module_class(klass) or analysis.values.method_of(klass, "forward") is not None):
                continue
            if function not in guarded_cache:
                guarded_cache[function] = _training_guarded(function.node)
            if id(call.node) in guarded_cache[function]:
                continue
            name = call.qualname.rsplit(".", 1)[-1]
            yield self.report(
                call.node,
                f"{name}() in {klass.name}.{function.name} without training=: dropout stays on in eval mode",
                explanation="The functional form defaults to training=True, so dropout stays on after "
                "model.eval() and evaluation is random (predictions change between runs, validation "
                "accuracy noisy and too low). "
                f"Pass training=self.training or use an nn.{_module_name(name)} module.",
            )


def _training_guarded(function: cst.FunctionDef) -> Set[int]:
    """ids of the calls that only run when the module is training:
    inside `if self.training:` or `... if self.training else ...`."""
    out: Set[int] = set()
    for node in iter_nodes(function.body):
        if isinstance(node, (cst.If, cst.IfExp)) and _mentions_training(node.test):
            body = node.body
            out.update(id(n) for n in iter_nodes(body) if isinstance(n, cst.Call))
    return out


def _mentions_training(test: cst.CSTNode) -> bool:
    for node in iter_nodes(test):
        if isinstance(node, cst.Attribute) and node.attr.value == "training":
            return True
        if isinstance(node, cst.Name) and node.value in ("training", "is_training"):
            return True
    return False


def _module_name(function: str) -> str:
    return {
        "dropout": "Dropout",
        "dropout1d": "Dropout1d",
        "dropout2d": "Dropout2d",
        "dropout3d": "Dropout3d",
        "alpha_dropout": "AlphaDropout",
        "feature_alpha_dropout": "FeatureAlphaDropout",
    }.get(function, "Dropout")
