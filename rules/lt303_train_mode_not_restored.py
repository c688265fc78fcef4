import libcst as cst

from lintorch.analyze import names
from lintorch.analyze.modes import MODE_UNKNOWN
from lintorch.index import dotted_name, iter_nodes
from lintorch.rule import Example, Rule, Severity

class TrainModeNotRestored(Rule):
    """
    **What it does.** Flags `model.eval()` (or `model.train(False)`, or a
    call of a local function such as `evaluate(model)` that leaves the model
    in eval mode) inside a training loop when no `model.train()` runs
    between it and the next optimizer step: the loop is followed in the
    order it executes, through functions of the same module, so a
    `model.train()` at the top of `train_one_epoch()` is recognised. A
    helper that sets the mode from an argument (`if train: net.train() else:
    net.eval()`) is read with the arguments of each call: `net_mode(False)`
    puts the model in eval mode, `net_mode(True)` back in training mode, and
    `net_mode(flag)` may do either (nothing is claimed after it).

    **Why is this bad?** After the first validation pass the model stays in
    eval mode for every later epoch: dropout is off (no regularisation) and
    batch norm normalises with frozen running statistics instead of batch
    statistics, and stops updating them. Training continues silently
    degraded.

    **Symptom.** Accuracy not improving after the first epoch, the model
    overfits or the loss plateaus early; results differ from the same code
    without the validation pass.

    **Fix.** Call `model.train()` at the start of every epoch (or of the
    training function), or at the end of the evaluation function. Models put
    in eval mode on purpose (names like `teacher`, `ema_model`,
    `target_net`) and models visibly without dropout or batch norm are not
    flagged.

    **Severity.** An error when the model visibly has dropout or batch norm:
    every later epoch trains without dropout and with frozen batch-norm
    statistics, which silently degrades learning. A warning when its layers
    are not visible in the file (eval() may change nothing).
    """

    code = "LT303"
    name = "train-mode-not-restored"
    severity = Severity.ERROR
    severity_cases = "error when the model visibly has dropout or batch norm; warning when its layers are not visible"
    summary = "model.eval() in the epoch loop and no model.train() before the next training step"
    symptom = "accuracy not improving after the first epoch; training silently degraded"
    triggers = (".eval(", ".train(")

    bad = [
        Example(
            """
            model = Net()
            model.train()
            for epoch in range(10):
                for x, y in train_loader:
                    optimizer.zero_grad()
                    criterion(model(x), y).backward()
                    optimizer.step()
                model.eval()
                with torch.no_grad():
                    val_loss = sum(criterion(model(x), y).item() for x, y in val_loader)
            """
        ),
    ]
    good = [
        Example(
            """
            model = Net()
            for epoch in range(10):
                model.train()
                for x, y in train_loader:
                    optimizer.zero_grad()
                    criterion(model(x), y).backward()
                    optimizer.step()
                model.eval()
                with torch.no_grad():
                    val_loss = sum(criterion(model(x), y).item() for x, y in val_loader)
            """
        ),
        Example(
            """
            def train_one_epoch(model, loader, optimizer):
                model.train()
                for x, y in loader:
                    optimizer.zero_grad()
                    criterion(model(x), y).backward()
                    optimizer.step()

            def evaluate(model, loader):
                model.eval()
                with torch.no_grad():
                    return sum(criterion(model(x), y).item() for x, y in loader)

            for epoch in range(10):
                train_one_epoch(model, train_loader, optimizer)
                evaluate(model, val_loader)
            """
        ),
    ]

    def check(self, analysis):
        reported = set()
        for loop in analysis.optim.training_loops():
            events = analysis.modes.loop_mode_events(loop)
            if not any(kind == "step" for kind, _ in events):
                continue
            for i, (kind, call) in enumerate(events):
                if kind != "eval" or id(call.node) in reported:
                    continue
                if _deliberately_frozen(call, analysis):
                    continue
                if _alternative_to_train(loop, call, events):
                    continue
                following = events[i + 1:] + events[:i]
                nxt = next(((k, c) for k, c in following if k in ("train", "step", MODE_UNKNOWN)), None)
                if nxt is None or nxt[0] != "step" or nxt[1] is call:
                    # a helper that steps the optimizer itself after eval() (a validation
                    # pass that also trains) is not a mode left behind by this call
                    continue
                reported.add(id(call.node))
                direct = call.method in ("eval", "train")
                layers = _eval_target_layers(analysis, call)
                severity = None if layers is True else Severity.WARNING
                what = "puts" if direct else "leaves"
                yield self.report(
                    call.node,
                    f"this call {what} the model in eval mode for the rest of the training loop (line {{line0}})",
                    explanation="No model.train() runs before the next optimizer step: from then on the "
                    "model trains with dropout off and batch norm frozen on its running statistics, so "
                    "training is silently degraded (accuracy not improving after the first epoch). Call "
                    "model.train() at the start of each epoch or training function.",
                    related=(loop.node,),
                    severity=severity,
                )


def _deliberately_frozen(call, analysis) -> bool:
    """An eval() on a teacher/EMA/target model, or on a model with no
    dropout/batch-norm (the mode changes nothing)."""
    if call.method not in ("eval", "train"):
        return False
    receiver = call.receiver
    name = dotted_name(receiver) if receiver is not None else None
    if name is not None and names.is_frozen_model_name(name.rsplit(".", 1)[-1]):
        return True
    if receiver is not None and analysis.models.mode_layers(receiver, call.scope, call.order) is False:
        return True
    return False


def _eval_target_layers(analysis, call, _depth=0):
    """mode_layers of the module the call puts in eval mode (through local
    functions): True when it visibly has dropout/batch norm."""
    if call.method in ("eval", "train") and call.receiver is not None:
        return analysis.models.mode_layers(call.receiver, call.scope, call.order)
    if _depth > 3:
        return None
    for callee in analysis.values.functions_run_by(call):
        for inner in callee.scope.calls:
            if analysis.modes.call_mode(inner) == "eval":
                result = _eval_target_layers(analysis, inner, _depth + 1)
                if result is not None:
                    return result
    return None


def _alternative_to_train(loop, eval_call, events) -> bool:
    """``if phase == "train": model.train() else: model.eval()``: the eval
    is one branch of a per-iteration mode switch whose other branch trains."""
    train_nodes = {id(c.node) for kind, c in events if kind == "train"}
    if not train_nodes:
        return False
    target = id(eval_call.node)
    for node in iter_nodes(loop.node.body):
        if isinstance(node, cst.If) and node.orelse is not None:
            branches = (node.body, node.orelse)
        elif isinstance(node, cst.IfExp):
            branches = (node.body, node.orelse)
        else:
            continue
        ids = [{id(n) for n in iter_nodes(branch) if isinstance(n, cst.Call)} for branch in branches]
        for mine, other in ((ids[0], ids[1]), (ids[1], ids[0])):
            if target in mine and other & train_nodes:
                return True
    return False
