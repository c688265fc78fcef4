import libcst as cst

from lintorch.index import dotted_name, iter_nodes
from lintorch.rule import Example, Rule, Severity
from lintorch.analyze.optim import BACKWARD, STEP, backward_target

_TENSOR_FACTORIES = frozenset({"torch.tensor", "torch.Tensor", "torch.FloatTensor", "torch.autograd.Variable"})


class BackwardWithoutGrad(Rule):
    """
    **What it does.** Flags `backward()` on a loss computed under
    `torch.no_grad()` / `torch.inference_mode()` (a `with` block or a
    decorated function), and the hacks that silence the resulting error on
    a loss: `loss.requires_grad = True`, `loss.requires_grad_()`, or
    rebuilding it with `torch.tensor(loss, requires_grad=True)` before
    `backward()`.

    **Why is this bad?** Under `no_grad` no graph is recorded, so the loss
    has no `grad_fn` and `backward()` raises "element 0 of tensors does not
    require grad and does not have a grad_fn". Making the loss a leaf that
    requires grad silences the error, but the gradient then stops at the
    loss itself: no parameter receives a gradient and `optimizer.step()`
    changes nothing.

    **Symptom.** A RuntimeError, or, after the hack, a loss that does not
    change and a model that is not learning (identical predictions).

    **Fix.** Compute the forward pass and the loss with gradients enabled
    (outside `no_grad`) and remove the `requires_grad` hack; if the error
    remains, something detaches the output before the loss (see LT207) or
    every parameter is frozen (LT208).
    """

    code = "LT206"
    name = "backward-without-grad"
    severity = Severity.ERROR
    summary = "backward() on a loss with no graph (computed under no_grad), or the requires_grad hack on a loss"
    symptom = "RuntimeError 'does not require grad', or loss not changing and model not learning after the hack"
    triggers = ("backward",)

    bad = [
        Example(
            """
            import torch
            for x, y in loader:
                with torch.no_grad():
                    loss = criterion(model(x), y)
                    loss.backward()
                optimizer.step()
            """
        ),
        Example(
            """
            for x, y in loader:
                loss = criterion(model(x).argmax(1).float(), y.float())
                loss.requires_grad = True
                loss.backward()
                optimizer.step()
            """
        ),
    ]
    good = [
        Example(
            """
            import torch
            for x, y in loader:
                loss = criterion(model(x), y)
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    val_loss = criterion(model(vx), vy)
            """
        ),
    ]

    def check(self, analysis):
        index = analysis.index
        for call in index.calls:
            if BACKWARD not in analysis.optim.call_effects(call) or backward_target(call) is None:
                continue
            disabled = analysis.modes.grad_disabled_by(call)
            if disabled is not None and self._graph_built_under(analysis, call, disabled):
                yield self.report(
                    call.node,
                    "backward() on a loss computed with gradient recording off (line {line0})",
                    explanation="The loss has no grad_fn, so backward() raises 'does not require grad' and "
                    "no parameter gets a gradient; the model is not learning. Compute the forward pass and "
                    "the loss outside torch.no_grad()/inference_mode().",
                    related=(disabled,),
                )
        yield from self._requires_grad_hacks(analysis)

    @staticmethod
    def _graph_built_under(analysis, call, disabled) -> bool:
        receiver = backward_target(call)
        values = [receiver] if isinstance(receiver, cst.Call) else [
            v.expr for v in analysis.values.definitions(receiver, call.scope, call.order)
        ]
        if not values:
            return False
        for expr in values:
            calls = [analysis.index.call_at(n) for n in iter_nodes(expr) if isinstance(n, cst.Call)]
            calls = [c for c in calls if c is not None]
            if not calls or not all(analysis.modes.grad_disabled_by(c) is disabled for c in calls):
                return False
        return True

    def _requires_grad_hacks(self, analysis):
        index = analysis.index
        for scope in index.scopes:
            backwarded = _backwarded(analysis, scope)
            # loss.requires_grad = True, self.d_loss.requires_grad = True
            for assign in index.attr_assigns_in(scope):
                if assign.attr != "requires_grad":
                    continue
                target = assign.target.value
                name = dotted_name(target)
                if not (isinstance(assign.value, cst.Name) and assign.value.value == "True") or name is None:
                    continue
                backward = _next_after(backwarded.get(name, ()), assign.order)
                if backward is None and name.startswith("self.") and scope.function is not None and scope.function.klass:
                    # self.g_loss set up in forward(), backpropagated in another method
                    for method in scope.function.klass.methods.values():
                        if method.scope is not scope:
                            backward = backward or next(iter(_backwarded(analysis, method.scope).get(name, ())), None)
                if backward is not None and self._computed_loss(analysis, target, scope, assign.order):
                    yield self._hack_report(assign.node, name, backward)
            if not backwarded:
                continue
            # loss.requires_grad_() / loss = loss.requires_grad_()
            for call in scope.calls:
                if call.method != "requires_grad_" or not isinstance(call.receiver, cst.Name):
                    continue
                flag = call.arg(0, "requires_grad")
                if isinstance(flag, cst.Name) and flag.value == "False":
                    continue
                name = call.receiver.value
                backward = _next_after(backwarded.get(name, ()), call.order) or self._assigned_then_backwarded(
                    scope, call, backwarded
                )
                if backward is None:
                    continue
                if self._computed_loss(analysis, call.receiver, scope, call.order):
                    yield self._hack_report(call.node, name, backward)
            # loss = torch.tensor(loss_value, requires_grad=True); loss.backward() in a training loop
            for name, backward in ((n, c) for n, calls in backwarded.items() for c in calls):
                if backward.loop is None or STEP not in analysis.optim.loop_witnesses(backward.loop):
                    continue
                for value in analysis.values.definitions(backward_target(backward), scope, backward.order):
                    expr = value.expr
                    if not isinstance(expr, cst.Call) or not expr.args:
                        continue
                    ctor = analysis.index.call_at(expr)
                    if ctor is None or ctor.qualname not in _TENSOR_FACTORIES:
                        continue
                    flag = ctor.arg(None, "requires_grad")
                    if not (isinstance(flag, cst.Name) and flag.value == "True"):
                        continue
                    if not isinstance(expr.args[0].value, (cst.Name, cst.Attribute, cst.Call, cst.Subscript)):
                        continue
                    yield self._hack_report(expr, name, backward)

    @staticmethod
    def _assigned_then_backwarded(scope, call, backwarded):
        for name, calls in backwarded.items():
            for binding in scope.bindings.get(name, ()):
                if binding.value is call.node:
                    return _next_after(calls, call.order)
        return None

    @staticmethod
    def _computed_loss(analysis, name_node, scope, order) -> bool:
        """The name holds a computed value (a call result, an expression),
        not a freshly made leaf tensor such as ``torch.zeros(...)``."""
        # ``self.loss = None`` in __init__ is a placeholder, not a value
        values = [v for v in analysis.values.definitions(name_node, scope, order) if not _is_none(v.expr)]
        if not values:
            return False
        for value in values:
            expr = value.expr
            if isinstance(expr, cst.Call):
                qualname = analysis.index.qualname_of(expr.func, value.scope, value.order)
                if qualname is not None and qualname.startswith("torch.") and not qualname.startswith("torch.nn."):
                    if dotted_name(expr.func) and qualname.rsplit(".", 1)[-1] in (
                        "tensor", "zeros", "ones", "randn", "rand", "empty", "full", "zeros_like", "ones_like",
                        "randn_like", "arange", "Tensor", "FloatTensor",
                    ):
                        return False
            elif not isinstance(expr, (cst.BinaryOperation, cst.Subscript, cst.Attribute)):
                return False
        return True

    def _hack_report(self, node, name, backward):
        return self.report(
            node,
            f"making {name} require grad for {name}.backward() (line {{line0}}) hides a broken graph",
            explanation="It only silences the 'does not require grad' error: "
            f"{name} becomes a leaf cut off from the model, no parameter gets a gradient, the loss does not "
            "change and the model is not learning. Remove this and find where the graph is lost "
            "(torch.no_grad(), .detach(), .item(), torch.tensor(...)).",
            related=(backward.node,),
        )


def _next_after(calls, order):
    return next((c for c in calls if c.order > order), None)


def _is_none(node) -> bool:
    return isinstance(node, cst.Name) and node.value == "None"


def _backwarded(analysis, scope):
    """Dotted name -> the backward() calls in ``scope`` on it (``loss``, ``self.d_loss``)."""
    out = {}
    for call in scope.calls:
        target = backward_target(call) if BACKWARD in analysis.optim.call_effects(call) else None
        if isinstance(target, (cst.Name, cst.Attribute)) and dotted_name(target):
            out.setdefault(dotted_name(target), []).append(call)
    return out
