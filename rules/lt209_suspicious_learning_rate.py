import re

import libcst as cst

from lintorch import torchapi as api
from lintorch.index import number_value
from lintorch.rule import Example, Rule, Severity


class SuspiciousLearningRate(Rule):
    """
    **What it does.** Flags an adaptive optimiser (`Adam`, `AdamW`,
    `RMSprop`, `Adagrad`, `Adamax`, `NAdam`, `RAdam`) built with a literal
    learning rate of 0.1 or more, written inline or through a variable.

    **Why is this bad?** Adaptive optimisers divide each update by a running
    estimate of the gradient's magnitude, so every parameter moves by about
    `lr` per step regardless of the gradient's scale. Their useful range is
    around `1e-4`..`1e-3`; with `lr=0.1` or `lr=1.0` each step throws the
    weights far past any minimum. (Plain `SGD` is different: `lr=0.1` is a
    standard value there and is not flagged.)

    **Symptom.** The loss oscillates or explodes to `nan`, or collapses to a
    constant; the model outputs the same prediction for every input and
    accuracy does not improve.

    **Fix.** Start from `lr=1e-3` (Adam's default) and tune downwards or
    upwards by factors of 3. Not flagged: SGD, tensors optimised directly
    (`Adam([image], lr=0.1)` in feature visualisation or style transfer),
    learning-rate range tests
    (`lr_find`, `LRFinder`), and optimisers whose lr a scheduler replaces
    from the first step (`LambdaLR` warm-up/Noam schedules, `OneCycleLR`,
    `CyclicLR`, transformers' `get_*_schedule_with_warmup`, a manual
    `param_group["lr"] = ...`), and unit tests (`test_*` files and functions),
    which take large steps on purpose to see parameters change.
    """

    code = "LT209"
    name = "suspicious-learning-rate"
    severity = Severity.WARNING
    summary = "adaptive optimiser (Adam, RMSprop, Adagrad...) with a learning rate of 0.1 or more"
    symptom = "loss oscillating, exploding or stuck; identical predictions; accuracy not improving"
    triggers = ("Adam(", "AdamW(", "RMSprop(", "Adagrad(", "Adamax(")

    bad = [
        Example(
            """
            import torch
            optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
            """
        ),
        Example(
            """
            from torch import optim
            learning_rate = 1.0
            optimizer = optim.RMSprop(model.parameters(), learning_rate)
            """
        ),
    ]
    good = [
        Example(
            """
            import torch
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
            adam = torch.optim.Adam(model.parameters(), lr=1e-3)
            """
        ),
        Example(
            """
            import torch
            optimizer = torch.optim.Adam(model.parameters(), lr=1.0, betas=(0.9, 0.98))
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: rate(step, 512, 4000))
            """
        ),
    ]

    def check(self, analysis):
        index = analysis.index
        if _LR_SEARCH.search(index.text or ""):
            return
        for call in index.calls:
            if call.qualname not in api.ADAPTIVE_OPTIMIZERS:
                continue
            lr = call.arg(1, "lr")
            if lr is None:
                continue
            values = [number_value(v.expr) for v in analysis.values.definitions(lr, call.scope, call.order)]
            if not values or any(v is None or v < 0.1 for v in values):
                continue
            if _lr_replaced(analysis, call) or _optimises_tensors(analysis, call) or analysis.in_test_code(call.scope):
                continue
            short = call.qualname.rsplit(".", 1)[-1]
            value = max(values)
            yield self.report(
                lr,
                f"{short} with lr={value:g}, far above its usual range (1e-4..1e-3)",
                explanation="Adaptive optimisers move every weight by about lr per step, so a learning "
                "rate this large overshoots on every update; the loss oscillates or explodes, predictions "
                f"become identical and accuracy stops improving. Use lr=1e-3 (the {short} default range "
                "is 1e-4..1e-3) and tune from there.",
            )


_LR_SEARCH = re.compile(r"lr_find|LRFinder|find_lr|lr_finder|range_test|\[\s*['\"]lr['\"]\s*\]\s*=[^=]")
_OVERRIDE_WORDS = ("sched", "warmup", "noam", "cycl", "lambda", "lr")


def _lr_replaced(analysis, ctor_call) -> bool:
    """A scheduler or wrapper that replaces the lr takes this optimizer."""
    index = analysis.index
    for call in index.calls:
        if call is ctor_call or not call.node.args:
            continue
        takes_it = False
        for arg in call.node.args:
            if isinstance(arg.value, (cst.Name, cst.Attribute)) and any(
                v.expr is ctor_call.node for v in analysis.values.definitions(arg.value, call.scope, call.order)
            ):
                takes_it = True
                break
        if not takes_it:
            continue
        qualname = call.qualname
        if qualname is not None and qualname.startswith(api.LR_SCHEDULER_PREFIX):
            if qualname in api.LR_OVERRIDING_SCHEDULERS:
                return True
            continue
        if analysis.values.local_callee(call) is not None:
            continue  # train(model, optimizer, ...): a local function, not a wrapper
        name = (call.dotted or "").rsplit(".", 1)[-1].lower()
        if any(word in name for word in _OVERRIDE_WORDS):
            return True
    return False


def _optimises_tensors(analysis, call) -> bool:
    """``Adam([image], lr=0.1)``: pixels, latents or embeddings optimised
    directly (feature visualisation, style transfer, adversarial inputs),
    where per-element steps of 0.1 are normal."""
    params = call.arg(0, "params")
    if params is None:
        return False
    values = [params]
    if isinstance(params, cst.Name):
        values = [v.expr for v in analysis.values.definitions(params, call.scope, call.order)]
    for value in values:
        if isinstance(value, (cst.List, cst.Tuple)) and value.elements:
            if all(not isinstance(e.value, cst.Dict) and not _is_parameters_call(e.value) for e in value.elements):
                return True
    return False


def _is_parameters_call(node) -> bool:
    if isinstance(node, cst.StarredElement):
        node = node.value
    return isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value in (
        "parameters", "named_parameters"
    )
