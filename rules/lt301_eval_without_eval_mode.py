from lintorch.rule import Example, Rule, Severity
from lintorch.analyze.names import LOADER_TRIGGERS


class EvalWithoutEvalMode(Rule):
    """
    **What it does.** Flags a validation or test loop (a loop over a data
    loader that calls the model without training it, under `torch.no_grad()`
    or in a function named like `validate`/`evaluate`/`test`, or over a
    loader named like `val_loader`/`test_loader`) when nothing puts the
    model in evaluation mode first: no `model.eval()` / `model.train(False)`
    earlier in the function, in the loop, or before every call of the
    function in this file.

    **Why is this bad?** In training mode dropout keeps zeroing activations
    and batch norm normalises with the statistics of the current batch (and
    updates its running averages with validation data). The measured
    accuracy is noisy and lower than the model's real accuracy, and the
    batch-norm statistics drift towards the validation set.

    **Symptom.** Validation accuracy not improving or jumping between
    epochs, predictions that change from run to run on the same input.

    **Fix.** Call `model.eval()` before the loop and `model.train()` before
    training resumes. Only models visibly containing dropout or batch norm
    are flagged (an `nn.Sequential` or a module class of this file with such
    layers, torchvision/timm/transformers models); models built without
    them, or whose definition is not visible, are not, and neither are
    framework hooks such as Lightning's `validation_step`, whose framework
    switches modes itself. When the loop's function is only called from
    other modules, the caller may set the mode, so it is not flagged either.
    """

    code = "LT301"
    name = "eval-without-eval-mode"
    severity = Severity.WARNING
    summary = "validation/test loop runs the model in training mode (no model.eval() before it)"
    symptom = "validation accuracy not improving or noisy; predictions change between runs"
    triggers = LOADER_TRIGGERS

    bad = [
        Example(
            """
            import torch
            import torch.nn as nn

            model = nn.Sequential(nn.Linear(20, 64), nn.Dropout(0.5), nn.Linear(64, 2))

            def evaluate(model, loader):
                correct = 0
                with torch.no_grad():
                    for x, y in loader:
                        correct += (model(x).argmax(1) == y).sum().item()
                return correct

            accuracy = evaluate(model, val_loader)
            """
        ),
    ]
    good = [
        Example(
            """
            import torch
            import torch.nn as nn

            model = nn.Sequential(nn.Linear(20, 64), nn.Dropout(0.5), nn.Linear(64, 2))

            def evaluate(model, loader):
                model.eval()
                correct = 0
                with torch.no_grad():
                    for x, y in loader:
                        correct += (model(x).argmax(1) == y).sum().item()
                return correct

            accuracy = evaluate(model, val_loader)
            """
        ),
        Example(
            """
            import torch
            import torch.nn as nn

            model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 2))

            with torch.no_grad():
                for x, y in test_loader:
                    predictions = model(x).argmax(1)
            """
        ),
    ]

    def check(self, analysis):
        for found in analysis.modes.validation_loops():
            for forward in found.forwards:
                if analysis.models.mode_layers(forward.node.func, forward.scope, forward.order) is not True:
                    continue  # no visible dropout/batch norm: eval() may change nothing
                if analysis.modes.mode_set_before(forward, "eval", found.loop) is not False:
                    continue
                why = "under no_grad" if found.no_grad and not found.named else "a validation/test loop"
                yield self.report(
                    forward.node,
                    f"model called in {why} (line {{line0}}) while still in training mode: nothing calls "
                    "model.eval() before it, so dropout stays active and batch norm uses per-batch "
                    "statistics (and updates its running averages with this data); the measured accuracy "
                    "is noisy and too low (validation accuracy not improving, predictions changing between "
                    "runs). Call model.eval() before the loop and model.train() before training resumes.",
                    related=(found.loop.node,),
                )
                break
