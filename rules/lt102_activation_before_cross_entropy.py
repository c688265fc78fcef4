import libcst as cst

from lintorch import edits
from lintorch import torchapi as api
from lintorch.rule import Example, Fix, Rule, Severity


class ActivationBeforeCrossEntropy(Rule):
    """
    **What it does.** Flags a `CrossEntropyLoss` / `F.cross_entropy` whose
    input has already been through `softmax` or `sigmoid`: inline, through a
    variable, as the last layer of an `nn.Sequential` (also one built with
    `add_module`, an `OrderedDict` or a list grown in a loop), returned by
    the model's `forward` (also as one element of a returned tuple:
    `validity, label = D(x)`), or by a local helper. The model is followed
    through rebinding (`.to()`, `.cuda()`, `DataParallel`/DDP,
    `torch.compile`, `accelerator.prepare`), factories (`build_model()`,
    every return path of `get_model(name)`), attributes (`self.net`,
    `trainer.model`, `model.module`) and calls (`model.forward(x)`,
    `self(x)` in a `LightningModule`).

    **Why is this bad?** Cross-entropy applies `log_softmax` to its input
    itself. Feeding it probabilities squashes the logits into [0, 1], so the
    loss is bounded near `log(C)`, the gradients nearly vanish and training
    stalls.

    **Symptom.** The loss barely moves from its first value and accuracy
    stays near chance; predictions look alike for every input.

    **Fix.** Return raw logits from the model and pass them to the loss.
    Apply `softmax` only where you need probabilities (metrics, inference).
    `log_softmax` into cross-entropy is harmless and not flagged.

    **Fix safety.** `--unsafe-fixes` removes the activation when it is
    written inline in the loss call, or assigned to a variable read only by
    the loss (`probs = torch.softmax(logits, 1)` becomes `probs = logits`).
    It is unsafe because the values reaching the loss change (that is the
    point). A softmax inside `forward` or a `Sequential` is left alone: the
    model's output is used elsewhere too.
    """

    code = "LT102"
    name = "activation-before-cross-entropy"
    severity = Severity.ERROR
    summary = "softmax/sigmoid output fed to CrossEntropyLoss, which expects raw logits"
    symptom = "loss not changing; accuracy stuck near chance"
    triggers = ("cross_entropy", "CrossEntropyLoss")

    bad = [
        Example(
            """
            import torch
            import torch.nn as nn

            criterion = nn.CrossEntropyLoss()
            logits = model(x)
            loss = criterion(torch.softmax(logits, dim=1), y)
            """
        ),
        Example(
            """
            import torch.nn as nn
            import torch.nn.functional as F

            model = nn.Sequential(nn.Linear(784, 10), nn.Softmax(dim=1))
            loss = F.cross_entropy(model(x), y)
            """
        ),
    ]
    good = [
        Example(
            """
            import torch
            import torch.nn as nn

            criterion = nn.CrossEntropyLoss()
            logits = model(x)
            loss = criterion(logits, y)
            predicted = torch.softmax(logits, dim=1).argmax(dim=1)
            """
        ),
    ]

    def check(self, analysis):
        index = analysis.index
        for loss, activation, inline in analysis.losses.activated_loss_inputs(
            api.CROSS_ENTROPY_MODULES, api.CROSS_ENTROPY_FUNCS, frozenset({"softmax", "sigmoid"})
        ):
            yield self.report(
                loss.input,
                f"{loss.short_name} receives {activation.kind} output ({activation.brief(inline)})",
                explanation=activation.origin()
                + f"{loss.short_name} applies log_softmax to raw logits itself: the probabilities "
                "squash the gradients, so the loss barely changes and accuracy stays near chance. "
                f"Pass the logits and drop the {activation.kind} before the loss.",
                related=() if inline else (activation.node,),
                fix=_removal_fix(index, loss, activation, inline=inline),
            )


def _inside(node, root) -> bool:
    from lintorch.index import iter_nodes

    return any(n is node for n in iter_nodes(root))


def _removal_fix(index, loss, activation, inline: bool):
    """Drop the activation feeding the loss, where it is used for nothing else."""
    call = activation.node
    if not isinstance(call, cst.Call):
        return None
    if inline:
        scope, order = loss.call.scope, loss.call.order
    else:
        # ``probs = torch.softmax(...)`` read only by the loss call.
        if not isinstance(loss.input, cst.Name):
            return None
        bindings = index.lookup(loss.input.value, loss.call.scope, loss.call.order)
        if len(bindings) != 1:
            return None
        binding = bindings[0]
        every = binding.scope.bindings.get(binding.name, [])
        if (
            binding.kind != "assign"
            or binding.unpack
            or len(every) != 1
            or binding.value is None
            or not _inside(call, binding.value)
        ):
            return None
        body = binding.scope.node
        # one write (the assignment) and one read (the loss input)
        if edits.count_name_loads(body, binding.name) != 2:
            return None
        scope, order = binding.scope, binding.order
    qualname = index.qualname_of(call.func, scope, order)
    if qualname is not None:
        if qualname not in api.SOFTMAX_FUNCS | api.SIGMOID_FUNCS:
            return None
        inner = edits.activation_input(call, qualified=True)
    elif isinstance(call.func, cst.Attribute) and call.func.attr.value in ("softmax", "sigmoid"):
        inner = edits.activation_input(call, qualified=False)
    else:
        return None
    if inner is None:
        return None
    return Fix(call, edits.unwrap(call, inner), safe=False, description=f"remove the {activation.kind} before the loss")
