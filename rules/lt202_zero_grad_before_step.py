import libcst as cst

from lintorch.index import dotted_name, iter_nodes
from lintorch.rule import Example, Rule, Severity
from lintorch.analyze.branches import exclusive_branches
from lintorch.analyze.optim import BACKWARD, STEP, ZERO_GRAD


class ZeroGradBeforeStep(Rule):
    """
    **What it does.** Flags `zero_grad()` called after `backward()` and
    before the `step()` of the same optimizer (or of an optimizer over the
    zeroed model's parameters), in one pass of a training loop or of a
    training-step function. AMP (`scaler.step(optimizer)`) and backward
    passes run by local helpers are followed.

    **Why is this bad?** `backward()` writes the gradients into `.grad`;
    `zero_grad()` erases them (sets them to `None` by default); `step()` then
    finds nothing to apply. Every step is a no-op (or, with weight decay or
    momentum, a drift unrelated to the loss).

    **Symptom.** The loss does not change from epoch to epoch; the weights
    stay at their initial values and the model makes identical predictions.

    **Fix.** Clear the gradients before `backward()` (at the top of the
    iteration) or right after `step()`. Both orders are recognised and not
    flagged, and so is a `zero_grad()` followed by a fresh `backward()`
    before the step (GAN updates).
    """

    code = "LT202"
    name = "zero-grad-before-step"
    severity = Severity.ERROR
    summary = "zero_grad() between backward() and optimizer.step() erases the gradients before they are used"
    symptom = "loss not changing; weights never updated; identical predictions"
    triggers = ("zero_grad",)

    bad = [
        Example(
            """
            for x, y in loader:
                loss = criterion(model(x), y)
                loss.backward()
                optimizer.zero_grad()
                optimizer.step()
            """
        ),
    ]
    good = [
        Example(
            """
            for x, y in loader:
                optimizer.zero_grad()
                loss = criterion(model(x), y)
                loss.backward()
                optimizer.step()
            """
        ),
        Example(
            """
            for x, y in loader:
                loss = criterion(model(x), y)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
            """
        ),
    ]

    def check(self, analysis):
        index = analysis.index
        scopes = {call.scope for call in index.method_calls("zero_grad")}
        for scope in scopes:
            sequence = analysis.optim.scope_effects(scope)
            for i, zero in enumerate(sequence):
                if ZERO_GRAD not in zero.own or zero.call.method != "zero_grad":
                    continue
                found = self._backward_then_step(analysis, sequence, i)
                if found is None:
                    continue
                backward, step = found
                yield self.report(
                    zero.call.node,
                    f"{dotted_name(zero.call.node.func) or 'zero_grad'}() runs between backward() (line "
                    "{line0}) and the optimizer step (line {line1})",
                    explanation="It erases the gradients the step was about to apply, so the weights never "
                    "change, the loss does not change and predictions stay identical. Call zero_grad() "
                    "before backward() or after step().",
                    related=(backward.call.node, step.call.node),
                )

    def _backward_then_step(self, analysis, sequence, i):
        zero = sequence[i]
        loop = zero.call.loop
        step = None
        for later in sequence[i + 1:]:
            if loop is not None and (later.call.loop is None or not loop.contains(later.call.loop)):
                break  # left the loop body
            if BACKWARD in later.effects:
                return None  # a fresh backward pass: the zeroing is deliberate
            if STEP in later.own:
                step = later
                break
        if step is None or step.call.loop is not loop:
            return None
        backward = None
        for earlier in reversed(sequence[:i]):
            if STEP in earlier.effects:
                return None  # gradients already used by a step
            if BACKWARD in earlier.effects:
                backward = earlier
                break
        if backward is None:
            return None
        inner = backward.call.loop
        if loop is not None and (inner is None or not loop.contains(inner)):
            return None
        if not self._same_optimizer(analysis, zero, step):
            return None
        root = loop.node if loop is not None else zero.call.scope.node
        if exclusive_branches(root, [backward.call.node, zero.call.node, step.call.node]):
            return None
        return backward, step

    @staticmethod
    def _same_optimizer(analysis, zero, step) -> bool:
        optimizer = analysis.optim.stepped_optimizer(step.call)
        receiver = zero.call.receiver
        if optimizer is None or receiver is None:
            return False
        if analysis.values.same_object(receiver, zero.call, optimizer, step.call):
            return True
        if analysis.optim.receiver_kind(zero.call) == "optimizer":
            return False
        # model.zero_grad(): the optimizer must be built over that model.
        model = dotted_name(receiver)
        if model is None:
            return False
        for value in analysis.values.definitions(optimizer, step.call.scope, step.call.order):
            if not isinstance(value.expr, cst.Call) or not value.expr.args:
                continue
            params = value.expr.args[0].value
            ctor = analysis.index.call_at(value.expr)
            if ctor is None:
                continue
            for node in iter_nodes(params):
                if isinstance(node, cst.Attribute) and node.attr.value in ("parameters", "named_parameters"):
                    if dotted_name(node.value) == model and ctor.scope is zero.call.scope:
                        return True
                    if analysis.values.same_object(node.value, ctor, receiver, zero.call):
                        return True
        return False
