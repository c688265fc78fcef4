import libcst as cst

from lintorch.index import dotted_name
from lintorch.rule import Example, Rule, Severity
from lintorch.analyze.optim import BACKWARD, STEP, backward_target

#: Calls that turn a loss tensor into a graph-free value.
_SCALARISING = frozenset({"item", "detach", "tolist", "numpy", "cpu", "data"})


class LossKeptWithGraph(Rule):
    """
    **What it does.** Flags a loss that is backpropagated in a loop and
    also accumulated as a tensor: `total += loss`, `total = total + loss`
    or `losses.append(loss)`, without `.item()` or `.detach()`.

    **Why is this bad?** `loss` carries its autograd graph (`grad_fn`).
    Summing it into a running total builds a new graph node per batch that
    references every previous loss, and a list of losses keeps every
    batch's graph reachable: memory grows over the epoch (the classic PyTorch
    FAQ "my model uses more and more memory"), and with large models the
    run dies with out-of-memory after some batches.

    **Symptom.** GPU/CPU memory grows every batch until out-of-memory; the
    epoch loss printed is a tensor with `grad_fn` instead of a number.

    **Fix.** Accumulate `loss.item()` (a Python float) or `loss.detach()`.
    Not flagged: an accumulated loss that is itself backpropagated later
    (`total = total + loss` then `total.backward()`, `torch.stack(losses).mean().backward()`),
    an accumulator re-initialised at every optimizer step (micro-batch
    losses of one step), which holds one step's graphs at most, and unit
    tests (`test_*` files and functions), whose loops run a few steps.
    """

    code = "LT205"
    name = "loss-kept-with-graph"
    severity = Severity.WARNING
    summary = "backpropagated loss accumulated as a tensor (total += loss, losses.append(loss)) keeps every graph alive"
    symptom = "memory grows every batch until out-of-memory"
    triggers = ("backward",)

    bad = [
        Example(
            """
            running_loss = 0.0
            for x, y in loader:
                optimizer.zero_grad()
                loss = criterion(model(x), y)
                loss.backward()
                optimizer.step()
                running_loss += loss
            """
        ),
    ]
    good = [
        Example(
            """
            running_loss = 0.0
            for x, y in loader:
                optimizer.zero_grad()
                loss = criterion(model(x), y)
                loss.backward()
                optimizer.step()
                running_loss += loss.item()
            """
        ),
        Example(
            """
            total = 0
            for chunk in chunks:
                loss = criterion(model(chunk), target)
                total = total + loss
            total.backward()
            """
        ),
    ]

    def check(self, analysis):
        index = analysis.index
        for scope in index.scopes:
            backwards = [
                (c, _loss_name(c)) for c in scope.calls
                if c.loop is not None and BACKWARD in analysis.optim.call_effects(c)
            ]
            backwards = [(c, n) for c, n in backwards if n is not None]
            if not backwards or analysis.in_test_code(scope):
                continue
            kept = analysis.optim.backpropagated_names(scope)
            for backward, loss in backwards:
                name = loss.value
                loss_defs = {id(v.expr) for v in analysis.values.definitions(loss, scope, backward.order)}
                if not loss_defs:
                    continue
                for node, target, value in _accumulations(index, scope, name):
                    if target in kept:
                        continue
                    if not analysis.index.loop_contains(backward.loop, node):
                        continue
                    order = _order_of(analysis, scope, node)
                    if order is None:
                        continue
                    defs = {id(v.expr) for v in analysis.values.definitions(value, scope, order)}
                    if not defs or defs != loss_defs:
                        continue
                    if _reset_every_step(analysis, scope, backward, target, node):
                        continue
                    yield self.report(
                        value,
                        f"{name} is backpropagated (line {{line0}}) and also accumulated as a tensor into "
                        f"{target}: every batch's autograd graph stays reachable, so memory grows every "
                        f"batch until out-of-memory. Accumulate {name}.item() (or {name}.detach()) instead.",
                        related=(backward.node,),
                    )


def _accumulations(index, scope, name):
    """(statement node, accumulator name, the Name ``name`` added) in ``scope``."""
    for bindings in scope.bindings.values():
        for binding in bindings:
            value = binding.value
            if binding.kind == "augassign" and isinstance(binding.node, cst.AugAssign):
                added = _scaled_name(value, name)
                if isinstance(binding.node.operator, cst.AddAssign) and added is not None:
                    yield binding.node, binding.name, added
            elif binding.kind == "assign" and isinstance(value, cst.BinaryOperation) and isinstance(value.operator, cst.Add):
                sides = (value.left, value.right)
                if any(isinstance(s, cst.Name) and s.value == binding.name for s in sides):
                    for side in sides:
                        if isinstance(side, cst.Name) and side.value == name and name != binding.name:
                            yield binding.node, binding.name, side
    for call in scope.calls:
        if call.method == "append" and len(call.node.args) == 1:
            arg = call.node.args[0].value
            if isinstance(arg, cst.Name) and arg.value == name:
                target = dotted_name(call.receiver)
                if target:
                    yield call.node, target.split(".")[0], arg


def _order_of(analysis, scope, node):
    for bindings in scope.bindings.values():
        for binding in bindings:
            if binding.node is node:
                return binding.order
    call = analysis.index.call_at(node)
    return call.order if call is not None else None


def _loss_name(call):
    """``loss`` in ``loss.backward()``, ``scaler.scale(loss).backward()``,
    ``accelerator.backward(loss)``."""
    target = backward_target(call)
    return target if isinstance(target, cst.Name) else None
def _reset_every_step(analysis, scope, backward, target, accumulation) -> bool:
    """The accumulator is re-initialised inside the loop that steps the
    optimizer (``losses = []`` per batch, summed over micro-batches): it
    holds one step's graphs at most, so memory does not grow."""
    loop = backward.loop
    while loop is not None and loop.scope is scope and STEP not in analysis.optim.loop_witnesses(loop):
        loop = loop.parent
    if loop is None or loop.scope is not scope:
        return False
    for binding in scope.bindings.get(target, ()):
        if binding.node is accumulation or binding.kind not in ("assign", "annassign"):
            continue
        if isinstance(binding.value, cst.BinaryOperation):
            continue  # total = total + loss: the accumulation itself
        if analysis.index.loop_contains(loop, binding.node):
            return True
    return False


def _scaled_name(value, name):
    """The Name ``name`` in ``loss``, ``loss * x.size(0)``, ``loss / n``."""
    if isinstance(value, cst.Name):
        return value if value.value == name else None
    if isinstance(value, cst.BinaryOperation) and isinstance(value.operator, (cst.Multiply, cst.Divide)):
        for side in (value.left, value.right):
            if isinstance(side, cst.Name) and side.value == name:
                return side
    return None
