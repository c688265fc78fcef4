from lintorch.rule import Example, Rule, Severity
from lintorch.analyze.names import LOADER_TRIGGERS


class EvalWithoutNoGrad(Rule):
    """
    **What it does.** Flags the model calls of a validation or test loop
    (a loop over a data loader, in a function named like `validate`,
    `evaluate` or `test` or over a loader named like `val_loader` or
    `test_loader`, that never runs `backward()` or an optimizer step) when
    autograd is still on: no `with torch.no_grad()` /
    `torch.inference_mode()` around them, no such decorator on the
    function, and not every call of the function in this file is made
    under no-grad.

    **Why is this bad?** Every forward pass records the autograd graph and
    keeps all intermediate activations alive until the outputs are freed:
    evaluation needs several times the memory it should (often an
    out-of-memory error on the first validation run) and runs slower. When
    the outputs are accumulated (`all_outputs.append(out)`), the graphs of
    the whole validation set stay in memory.

    **Symptom.** Out-of-memory during validation, slow evaluation.

    **Fix.** Wrap the loop in `with torch.no_grad():` (or
    `torch.inference_mode()`), or decorate the function with
    `@torch.no_grad()`. Loops that need gradients (adversarial examples,
    saliency maps: they call `backward()` or set `requires_grad`) are not
    flagged.
    """

    code = "LT302"
    name = "eval-without-no-grad"
    severity = Severity.WARNING
    summary = "validation/test forward passes run with autograd on (no torch.no_grad())"
    symptom = "out-of-memory or slow validation"
    triggers = LOADER_TRIGGERS

    bad = [
        Example(
            """
            def validate(model, loader):
                model.eval()
                correct = 0
                for x, y in loader:
                    correct += (model(x).argmax(1) == y).sum().item()
                return correct

            accuracy = validate(model, val_loader)
            """
        ),
    ]
    good = [
        Example(
            """
            import torch

            @torch.no_grad()
            def validate(model, loader):
                model.eval()
                correct = 0
                for x, y in loader:
                    correct += (model(x).argmax(1) == y).sum().item()
                return correct

            accuracy = validate(model, val_loader)
            """
        ),
        Example(
            """
            import torch

            def validate(model, loader):
                model.eval()
                correct = 0
                for x, y in loader:
                    correct += (model(x).argmax(1) == y).sum().item()
                return correct

            with torch.inference_mode():
                accuracy = validate(model, val_loader)
            """
        ),
    ]

    def check(self, analysis):
        for found in analysis.modes.validation_loops():
            if not found.named:
                continue
            for forward in found.forwards:
                if analysis.modes.under_no_grad(forward) is not False:
                    continue
                yield self.report(
                    forward.node,
                    "model called in a validation/test loop (line {line0}) with autograd on: every "
                    "forward pass records its graph and keeps the activations alive, so evaluation "
                    "uses several times the memory it needs (out-of-memory during validation) and runs "
                    "slower. Wrap the loop in `with torch.no_grad():` or decorate the function with "
                    "@torch.no_grad().",
                    related=(found.loop.node,),
                )
                break
