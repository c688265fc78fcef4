from typing import NamedTuple

import libcst as cst

from lintorch.index import dotted_name, iter_nodes
from lintorch.rule import Example, Rule, Severity
from lintorch.analyze.optim import BACKWARD, STEP, backward_target


class LossKeptWithGraph(Rule):
    """
    **What it does.** Flags a loss that is backpropagated in a loop and
    also accumulated as a tensor: `total += loss`, `total = total + loss`,
    `self.total += loss`, `losses.append(loss)` or
    `log["loss"].append(loss)`, without `.item()` or `.detach()`, in the
    batch loop or after it in the epoch loop (the last batch's loss, also in
    a `for ... else:` clause). Also flags a loss that is never
    backpropagated but computed with autograd on (an evaluation loss
    outside `torch.no_grad()`) and stored as a tensor across iterations.

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
            accumulations = list(_accumulations(index, scope))
            if not accumulations or analysis.in_test_code(scope):
                continue
            backwards = [
                (c, _loss_name(c)) for c in scope.calls
                if c.loop is not None and BACKWARD in analysis.optim.call_effects(c)
            ]
            backwards = [(c, n) for c, n in backwards if n is not None]
            reported = set()
            kept = analysis.optim.backpropagated_names(scope) if backwards else set()
            for backward, loss in backwards:
                region = _outermost_loop(backward.loop, scope)
                for item in accumulations:
                    if item.value.value != loss.value or id(item.node) in reported or item.root in kept:
                        continue
                    # in the batch loop, or after it in the epoch loop (the last batch's loss)
                    if not index.loop_contains(region, item.node):
                        continue
                    if not _same_value(analysis, scope, loss, backward.order, item.order):
                        continue
                    if _reset_every_step(analysis, scope, backward, item) or _reset_per_iteration(analysis, scope, item):
                        continue
                    reported.add(id(item.node))
                    where = "" if index.loop_contains(backward.loop, item.node) else " after the batch loop"
                    yield self.report(
                        item.value,
                        f"{loss.value} is backpropagated (line {{line0}}) and kept as a tensor in {item.target}{where}",
                        explanation="Every stored loss keeps its batch's autograd graph reachable, so memory "
                        f"grows until out-of-memory. Accumulate {loss.value}.item() (or {loss.value}.detach()) "
                        "instead.",
                        related=(backward.node,),
                    )
            for item in accumulations:
                if id(item.node) not in reported:
                    report = self._unbackpropagated_loss(analysis, scope, item)
                    if report is not None:
                        yield report

    def _unbackpropagated_loss(self, analysis, scope, item):
        """A loss computed with autograd on but never backpropagated (an
        evaluation loss outside no_grad) and stored as a tensor in a loop."""
        if _innermost_loop(analysis.index, scope, item.node) is None:
            return None
        if item.root in analysis.optim.backpropagated_names(scope):
            return None  # the stored losses are summed and backpropagated later
        found = analysis.losses.loss_value(item.value, scope, item.order)
        if found is None:
            return None
        loss, chain = found
        backpropagated = analysis.optim.backpropagated_bindings(scope)
        if any(id(binding) in backpropagated for binding in chain):
            return None
        if scope.function is not None and any(
            isinstance(node, cst.Name) and node.value == binding.name
            for ret, _ in scope.function.returns
            for node in iter_nodes(ret)
            for binding in chain
        ):
            return None  # returned: the caller may backpropagate it
        prediction = loss.arg(0, "input")
        output = analysis.losses.model_output(prediction, loss.scope, loss.order) if prediction is not None else None
        if output is None or analysis.modes.under_no_grad(output) is not False:
            return None
        if _reset_per_iteration(analysis, scope, item):
            return None
        name = item.value.value
        return self.report(
            item.value,
            f"{name}, a loss computed with autograd on (line {{line0}}), is stored as a tensor into {item.target}",
            explanation="The model call at line {line0} runs outside torch.no_grad(), so each stored value "
            "keeps its batch's autograd graph and activations alive, and memory grows until out-of-memory. "
            f"Store {name}.item() (and run evaluation under torch.no_grad()).",
            related=(output.node,),
        )


class _Accumulation(NamedTuple):
    node: cst.CSTNode  # the statement or append call
    target: str  # what grows: ``total``, ``self.total``, ``log``
    root: str  # its first name, for the names backward() reads
    value: cst.Name  # the loss added
    order: int


def _accumulations(index, scope):
    """Every ``total += x``, ``total = total + x``, ``self.total += x`` and
    ``xs.append(x)`` / ``log['loss'].append(x)`` in ``scope`` (also with
    ``x`` scaled: ``x * n``, ``x / n``)."""
    for bindings in scope.bindings.values():
        for binding in bindings:
            value = binding.value
            if binding.kind == "augassign" and isinstance(binding.node, cst.AugAssign):
                added = _scaled_name(value)
                if isinstance(binding.node.operator, cst.AddAssign) and added is not None:
                    yield _Accumulation(binding.node, binding.name, binding.name, added, binding.order)
            elif binding.kind == "assign" and isinstance(value, cst.BinaryOperation) and isinstance(value.operator, cst.Add):
                sides = (value.left, value.right)
                if any(isinstance(s, cst.Name) and s.value == binding.name for s in sides):
                    for side in sides:
                        if isinstance(side, cst.Name) and side.value != binding.name:
                            yield _Accumulation(binding.node, binding.name, binding.name, side, binding.order)
    for assign in index.attr_assigns_in(scope):
        node = assign.node
        if isinstance(node, cst.AugAssign) and isinstance(node.operator, cst.AddAssign):
            added = _scaled_name(assign.value)
            target = dotted_name(assign.target)
            if added is not None and target is not None:
                yield _Accumulation(node, target, target.split(".")[-1], added, assign.order)
    for call in scope.calls:
        if call.method == "append" and len(call.node.args) == 1:
            added = _scaled_name(call.node.args[0].value)
            root = _root_name(call.receiver)
            if added is not None and root is not None:
                target = dotted_name(call.receiver) or index.module.code_for_node(call.receiver)
                yield _Accumulation(call.node, target, root, added, call.order)


def _root_name(node):
    """``log`` for ``log['loss']``, ``self.history.losses``, ``log``."""
    while isinstance(node, (cst.Attribute, cst.Subscript)):
        if isinstance(node, cst.Attribute) and isinstance(node.value, cst.Name) and node.value.value == "self":
            return node.attr.value
        node = node.value
    return node.value if isinstance(node, cst.Name) else None


def _same_value(analysis, scope, name, order, later) -> bool:
    """Whether ``name`` holds the same value at both points: the same
    bindings reach them (``loss += reg`` included), or the same definitions."""
    index = analysis.index
    before = [id(b) for b in index.lookup(name.value, scope, order)]
    if before and before == [id(b) for b in index.lookup(name.value, scope, later)]:
        return True
    defs = {id(v.expr) for v in analysis.values.definitions(name, scope, order)}
    return bool(defs) and defs == {id(v.expr) for v in analysis.values.definitions(name, scope, later)}


def _outermost_loop(loop, scope):
    while loop.parent is not None and loop.parent.scope is scope:
        loop = loop.parent
    return loop


def _innermost_loop(index, scope, node):
    found = None
    for loop in index.loops:
        if loop.scope is scope and index.loop_contains(loop, node) and (found is None or found.contains(loop)):
            found = loop
    return found


def _loss_name(call):
    """``loss`` in ``loss.backward()``, ``scaler.scale(loss).backward()``,
    ``accelerator.backward(loss)``."""
    target = backward_target(call)
    return target if isinstance(target, cst.Name) else None


def _resets(analysis, scope, item, loop) -> bool:
    """``item.target`` re-initialised (``losses = []``, ``self.total = 0``)
    somewhere in ``loop``."""
    index = analysis.index
    for binding in scope.bindings.get(item.target, ()):
        if binding.node is item.node or binding.kind not in ("assign", "annassign"):
            continue
        if isinstance(binding.value, cst.BinaryOperation):
            continue  # total = total + loss: the accumulation itself
        if index.loop_contains(loop, binding.node):
            return True
    for assign in index.attr_assigns_in(scope):
        if isinstance(assign.node, cst.Assign) and dotted_name(assign.target) == item.target:
            if index.loop_contains(loop, assign.node):
                return True
    return False


def _reset_every_step(analysis, scope, backward, item) -> bool:
    """The accumulator is re-initialised inside the loop that steps the
    optimizer (``losses = []`` per batch, summed over micro-batches): it
    holds one step's graphs at most, so memory does not grow."""
    loop = backward.loop
    while loop is not None and loop.scope is scope and STEP not in analysis.optim.loop_witnesses(loop):
        loop = loop.parent
    if loop is None or loop.scope is not scope:
        return False
    return _resets(analysis, scope, item, loop)


def _reset_per_iteration(analysis, scope, item) -> bool:
    """Re-initialised in the innermost loop around the accumulation: it holds
    one iteration's value at most."""
    loop = _innermost_loop(analysis.index, scope, item.node)
    return loop is not None and _resets(analysis, scope, item, loop)


def _scaled_name(value):
    """The Name in ``loss``, ``loss * x.size(0)``, ``loss / n``."""
    if isinstance(value, cst.Name):
        return value
    if isinstance(value, cst.BinaryOperation) and isinstance(value.operator, (cst.Multiply, cst.Divide)):
        for side in (value.left, value.right):
            if isinstance(side, cst.Name):
                return side
    return None
