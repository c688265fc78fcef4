import libcst as cst

from lintorch import torchapi as api
from lintorch.rule import Example, Rule, Severity
from lintorch.analyze.optim import BACKWARD, backward_target

#: Methods whose result is cut off from the autograd graph.
_BREAKING_METHODS = frozenset({"detach", "item", "numpy", "tolist", "argmax", "argmin"})
#: Functions that copy their input into a new tensor with no history.
_BREAKING_FUNCS = frozenset(
    {
        "torch.tensor", "torch.Tensor", "torch.FloatTensor", "torch.LongTensor", "torch.from_numpy",
        "torch.argmax", "torch.argmin", "numpy.array", "numpy.asarray",
    }
)
_PASS_THROUGH_METHODS = (api.VALUE_PRESERVING_METHODS - {"detach", "requires_grad_"}) | {"squeeze_", "round"}
#: In-place fills: ``Tensor(n, 1).fill_(1.0)`` holds constants, data.
_FILLING_METHODS = frozenset({"fill_", "zero_", "uniform_", "normal_"})
_ACTIVATIONS = api.SOFTMAX_FUNCS | api.SIGMOID_FUNCS | api.LOG_SOFTMAX_FUNCS
_MAX_DEPTH = 8


class GraphBrokenBeforeLoss(Rule):
    """
    **What it does.** Flags a backpropagated loss whose prediction input is
    the model's output passed through `.detach()`, `.item()`, `.numpy()`,
    `.tolist()`, `argmax`, `torch.tensor(...)` or `torch.from_numpy(...)`,
    inline or through variables.

    **Why is this bad?** Each of these returns a value with no autograd
    history (`argmax` is not differentiable at all). The loss is then a
    constant as far as the model is concerned: `backward()` either raises
    "does not require grad" or, after a `requires_grad` hack, produces no
    gradient for any parameter, and `optimizer.step()` changes nothing.

    **Symptom.** The loss does not change (or changes only with the data),
    the model is not learning and its predictions stay identical.

    **Fix.** Feed the raw model output (logits) to the loss; use
    `.detach()`/`.item()`/`argmax` only for metrics and logging. Not
    flagged: metrics computed from detached outputs, and losses whose
    *target* is detached while the prediction keeps its graph (DQN targets,
    distillation teachers, BYOL/SimSiam).
    """

    code = "LT207"
    name = "graph-broken-before-loss"
    severity = Severity.ERROR
    summary = "model output detached (.detach(), .item(), .numpy(), torch.tensor, argmax) before the backpropagated loss"
    symptom = "loss not changing; model not learning; identical predictions"
    triggers = ("backward",)

    bad = [
        Example(
            """
            for x, y in loader:
                optimizer.zero_grad()
                out = model(x).detach()
                loss = criterion(out, y)
                loss.backward()
                optimizer.step()
            """
        ),
    ]
    good = [
        Example(
            """
            for x, y in loader:
                optimizer.zero_grad()
                out = model(x)
                loss = criterion(out, y)
                loss.backward()
                optimizer.step()
                correct += (out.detach().argmax(1) == y).sum().item()
            """
        ),
    ]

    def check(self, analysis):
        index = analysis.index
        seen = set()
        for call in index.calls:
            if BACKWARD not in analysis.optim.call_effects(call):
                continue
            receiver = backward_target(call)
            if receiver is None:
                continue
            losses = [receiver] if isinstance(receiver, cst.Call) else [
                v.expr for v in analysis.values.definitions(receiver, call.scope, call.order)
            ]
            for expr in losses:
                loss = analysis.index.call_at(expr) if isinstance(expr, cst.Call) else None
                if loss is None or id(loss.node) in seen or not analysis.losses.looks_like_loss_call(loss):
                    continue
                seen.add(id(loss.node))
                prediction, target = loss.arg(0, "input"), loss.arg(1, "target")
                if prediction is None:
                    continue
                broken = self._break_in(analysis, prediction, loss.scope, loss.order, 0)
                if broken is None:
                    continue
                if target is not None and self._live_output(analysis, target, loss.scope, loss.order, 0):
                    continue
                node, how = broken
                yield self.report(
                    node,
                    f"the model output reaches the loss (line {{line0}}) through {how}, which has no gradient",
                    explanation=f"{how} has no autograd history: backward() cannot reach the model's "
                    "parameters, so the loss does not change and the model is not learning. Pass the raw "
                    f"model output (logits) to the loss and keep {how} for metrics.",
                    related=(loss.node,),
                )

    def _break_in(self, analysis, expr, scope, order, depth):
        """(node, description) where the model output loses its graph."""
        index = analysis.index
        if depth > _MAX_DEPTH or expr is None:
            return None
        if isinstance(expr, cst.Name):
            values = analysis.values.definitions(expr, scope, order)
            found = None
            for value in values:
                if value.expr is expr:
                    return None
                result = self._break_in(analysis, value.expr, value.scope, value.order, depth + 1)
                if result is None:
                    return None
                found = found or result
            return found
        if isinstance(expr, cst.Attribute) and expr.attr.value == "data":
            if self._model_output(analysis, expr.value, scope, order, depth + 1):
                return expr, ".data"
            return None
        if isinstance(expr, cst.Subscript):
            return self._break_in(analysis, expr.value, scope, order, depth + 1)
        if not isinstance(expr, cst.Call):
            return None
        func = expr.func
        qualname = index.qualname_of(func, scope, order)
        if qualname in _BREAKING_FUNCS and expr.args:
            inner = expr.args[0].value
            if self._model_output(analysis, inner, scope, order, depth + 1) or self._break_in(
                analysis, inner, scope, order, depth + 1
            ):
                return expr, f"{qualname.rsplit('.', 1)[-1]}(...)"
            return None
        if qualname is not None:
            return None
        if isinstance(func, cst.Attribute):
            method = func.attr.value
            if method in _BREAKING_METHODS:
                if self._model_output(analysis, func.value, scope, order, depth + 1):
                    return expr, f".{method}()"
                return None
            if method in _PASS_THROUGH_METHODS:
                return self._break_in(analysis, func.value, scope, order, depth + 1)
        return None

    def _model_output(self, analysis, expr, scope, order, depth) -> bool:
        """Whether ``expr`` is (derived from) the output of a model call."""
        index = analysis.index
        if depth > _MAX_DEPTH or expr is None:
            return False
        if isinstance(expr, cst.Name):
            return any(
                value.expr is not expr and self._model_output(analysis, value.expr, value.scope, value.order, depth + 1)
                for value in analysis.values.definitions(expr, scope, order)
            )
        if isinstance(expr, (cst.Subscript, cst.Attribute)):
            return self._model_output(analysis, expr.value, scope, order, depth + 1)
        if not isinstance(expr, cst.Call):
            return False
        call = analysis.index.call_at(expr)
        if call is not None and analysis.models.is_model_call(call):
            return True
        qualname = index.qualname_of(expr.func, scope, order)
        if qualname in _ACTIVATIONS and expr.args:
            return self._model_output(analysis, expr.args[0].value, scope, order, depth + 1)
        if qualname is None and isinstance(expr.func, cst.Attribute):
            method = expr.func.attr.value
            if method in _PASS_THROUGH_METHODS or method in _BREAKING_METHODS or method in api.ACTIVATION_METHODS:
                return self._model_output(analysis, expr.func.value, scope, order, depth + 1)
        return False

    def _live_output(self, analysis, expr, scope, order, depth) -> bool:
        """Whether the loss's other side may carry a graph: anything but
        data (loop variables, batch fields, literals, torch functions of
        data) or an output that visibly lost its graph."""
        if self._break_in(analysis, expr, scope, order, depth) is not None:
            return False
        return not self._is_data(analysis, expr, scope, order, depth)

    def _is_data(self, analysis, expr, scope, order, depth) -> bool:
        index = analysis.index
        if depth > _MAX_DEPTH or expr is None:
            return False
        if isinstance(expr, (cst.Integer, cst.Float, cst.SimpleString)):
            return True
        if isinstance(expr, cst.Name):
            values = analysis.values.definitions(expr, scope, order)
            if len(values) == 1 and values[0].expr is expr:
                return True  # defined elsewhere (an earlier notebook cell): the labels
            return all(
                value.expr is not expr and self._is_data(analysis, value.expr, value.scope, value.order, depth + 1)
                for value in values
            )  # no definitions: a loop variable or unpacked batch
        if isinstance(expr, (cst.Subscript, cst.Attribute)):
            return self._is_data(analysis, expr.value, scope, order, depth + 1)
        if isinstance(expr, cst.BinaryOperation):
            return self._is_data(analysis, expr.left, scope, order, depth + 1) and self._is_data(
                analysis, expr.right, scope, order, depth + 1
            )
        if isinstance(expr, cst.Call):
            qualname = index.qualname_of(expr.func, scope, order)
            if qualname is not None:
                return qualname.startswith("torch.") and not qualname.startswith("torch.nn.Module") and all(
                    self._is_data(analysis, arg.value, scope, order, depth + 1) for arg in expr.args
                    if arg.keyword is None
                ) and not self._model_output(analysis, expr, scope, order, depth + 1)
            if isinstance(expr.func, cst.Attribute) and expr.func.attr.value in _PASS_THROUGH_METHODS | _FILLING_METHODS:
                return self._is_data(analysis, expr.func.value, scope, order, depth + 1)
        return False
