from lintorch.rule import Example, Rule, Severity
from lintorch.analyze.passes import NO_GRAD_TRIGGERS, PASS_TRIGGERS


class EvalWithoutEvalMode(Rule):
    """
    **What it does.** Flags an evaluation pass that runs a model with
    dropout or batch norm while it is still in training mode. An
    evaluation pass is recognised by what the code does, not by its names:
    a loop or comprehension over a data loader (or any data, in a function
    called between training steps), the evaluation phase of a loop shared
    with training, or a model call outside any data loop under
    `torch.no_grad()` or after the training steps (`out = model(X_test)` in
    a full-batch script, a prediction helper) or one running a pretrained
    model (`pretrained=True`, `weights=`, `from_pretrained`, `torch.hub.load`)
    that nothing in the file trains or is handed (an inference script), that
    runs no `backward()` and no optimizer step. The mode is followed along the code: the last
    `model.eval()` / `model.train()` before the pass wins, through helpers
    (a `validate()` that ends with `model.train()` leaves training mode)
    and callers in this file.

    **Why is this bad?** In training mode dropout keeps zeroing activations
    and batch norm normalises with the statistics of the current batch (and
    updates its running averages with evaluation data). The measured
    accuracy is noisy and lower than the model's real accuracy, single-image
    predictions through batch norm are meaningless, and the batch-norm
    statistics drift towards the evaluation set.

    **Symptom.** Validation accuracy not improving or jumping between
    epochs, predictions that change from run to run on the same input.

    **Fix.** Call `model.eval()` before the pass and `model.train()` before
    training resumes.

    **Severity.** A warning: the weights still learn, but the numbers that
    steer the training (early stopping, learning-rate plateaus, model
    selection) and the predictions are wrong.

    Only models visibly containing dropout or batch norm are flagged (an
    `nn.Sequential` or a module class of this file with such layers,
    torchvision/timm/transformers models); models built without them, or
    whose definition is not visible, are not. Not flagged either: framework
    hooks such as Lightning's `validation_step` (the framework switches
    modes), a function only called from other modules (its caller may set
    the mode), passes whose outputs are thrown away (`update_bn`-style
    batch-norm statistics updates), generators sampling noise, checks on
    the current training batch, a `model.train()` placed right before the
    pass with no optimizer step in between (Monte Carlo dropout, a batch-norm
    refresh), and unit-test files.
    """

    code = "LT301"
    name = "eval-without-eval-mode"
    severity = Severity.WARNING
    summary = "evaluation pass runs a dropout/batch-norm model in training mode (no model.eval() before it)"
    symptom = "validation accuracy not improving or noisy; predictions change between runs"
    triggers = PASS_TRIGGERS + NO_GRAD_TRIGGERS

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
        modes = analysis.modes
        reported = set()
        for found in analysis.passes.evaluation_passes():
            for forward in found.forwards:
                inner = analysis.forwards.model_call_in(forward) or forward  # the model call, also in a helper
                if inner.scope.index is not analysis.index:  # a helper of another module of the project
                    if analysis.evaluated_in_own_module(inner):
                        continue  # reported there, on the helper's model call
                    inner = forward  # reported on the call of the helper, where the mode is wrong
                node = inner.node
                if id(node) in reported:
                    break
                paths = modes.training_mode_paths(forward)
                if not any(mode == "train" and layers is True for mode, layers in paths):
                    continue  # eval mode set, unknown, or no visible dropout/batch norm (eval() changes nothing)
                if modes.train_mode_on_purpose(forward):
                    continue  # model.train() just before: Monte Carlo dropout, a batch-norm refresh
                reported.add(id(node))
                yield self.report(
                    node,
                    f"model called in {found.describe()} (line {{line0}}) while still in training mode",
                    explanation="No model.eval() runs after the last model.train() (or at all) before it, so "
                    "dropout stays active and batch norm uses per-batch statistics (and updates its running "
                    "averages with this data); the measured accuracy is noisy and too low (validation "
                    "accuracy not improving, predictions changing between runs). Call model.eval() before "
                    "it and model.train() before training resumes.",
                    related=(found.node,),
                )
                break

