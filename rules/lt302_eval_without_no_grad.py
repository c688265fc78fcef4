from lintorch.rule import Example, Rule, Severity
from lintorch.analyze.passes import PASS_TRIGGERS


class EvalWithoutNoGrad(Rule):
    """
    **What it does.** Flags the model calls of an evaluation pass that run
    with autograd on: no `with torch.no_grad()` / `torch.inference_mode()`
    around them, no such decorator on the function, and not every call of
    the function in this file made under no-grad. An evaluation pass is
    recognised by what the code does (see LT301): a loop or comprehension
    over data that runs a model with no `backward()` and no optimizer step,
    the evaluation phase of a loop shared with training, or a full-batch
    evaluation such as `model.eval(); out = model(X_test)` after training
    steps. A pass needs evidence other than a name: a data loader, eval
    mode, or training steps around it. A function that is only called from
    other modules (`evaluate(model, loader)` in a utilities file) is assumed
    to run with autograd at its default, on; a notebook function that no
    cell calls never runs.

    **Why is this bad?** Every forward pass records the autograd graph and
    keeps all intermediate activations alive until the outputs are freed:
    evaluation needs several times the memory it should (often an
    out-of-memory error on the first validation run) and runs slower. When
    the outputs are accumulated (`all_outputs.append(out)`, `total += loss`),
    the graphs of the whole evaluation set stay in memory.
    (`Variable(x, volatile=True)` no longer turns autograd off: it has been
    a no-op since PyTorch 0.4.)

    **Symptom.** Out-of-memory during validation, slow evaluation.

    **Fix.** Wrap the pass in `with torch.no_grad():` (or
    `torch.inference_mode()`), or decorate the function with
    `@torch.no_grad()`.

    **Severity.** It costs memory and time, never the learning itself, so it
    is never an error. A warning when the pass goes over a dataset batch by
    batch (a loop or comprehension over a loader or iterator, or over batches
    cut with `range()`), a cost paid every time it runs, or when it collects
    its outputs with their graphs (`predictions.append(model(x))`: memory
    grows with the data). Info (off by default) for a single forward (one
    graph, freed with its outputs: no more memory than a training step on
    that input), per-sample loops (a dataset, a folder of files) and loops
    that stop after a few items, where the cost is negligible.

    Passes that need gradients (adversarial examples, saliency maps: they
    call `backward()`, `torch.autograd.grad` or set `requires_grad`) are not
    passes, nor are framework hooks, generators sampling noise, checks on
    the current training batch, passes whose outputs are thrown away, and
    unit-test files.
    """

    code = "LT302"
    name = "eval-without-no-grad"
    severity = Severity.WARNING
    severity_cases = "warning on a pass over batches of a dataset or collecting outputs with their graphs; info on a single forward, per-sample or few-item passes"
    summary = "evaluation forward passes run with autograd on (no torch.no_grad())"
    symptom = "out-of-memory or slow validation"
    triggers = PASS_TRIGGERS

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
        modes = analysis.modes
        reported = set()
        for found in analysis.passes.evaluation_passes():
            for forward in found.forwards:
                node = forward.node  # where the no_grad belongs: the pass, not a helper it calls
                if id(node) in reported:
                    break
                if modes.grad_enabled(forward) is not True:
                    continue
                reported.add(id(node))
                yield self.report(
                    node,
                    f"model called in {found.describe()} (line {{line0}}) with autograd on",
                    explanation="Every forward pass records its graph and keeps the activations alive, so "
                    "evaluation uses several times the memory it needs (out-of-memory during validation) "
                    "and runs slower. Wrap it in `with torch.no_grad():` or decorate the function with "
                    "@torch.no_grad().",
                    related=(found.node,),
                    severity=None if found.dataset else Severity.INFO,
                )
                break
