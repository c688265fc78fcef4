"""Losses: which calls compute a loss, and what feeds them.

``criterion(out, y)`` with ``criterion = nn.CrossEntropyLoss()`` (also
``self.criterion``, parameters, ``nn.CrossEntropyLoss()(out, y)``) and
``F.cross_entropy(out, y)`` are the same loss call; the activation last
applied to its input is the models domain's answer.
"""

from typing import FrozenSet, Iterator, List, NamedTuple, Optional, Tuple

import libcst as cst

from lintorch import torchapi as api
from lintorch.analyze import names
from lintorch.analyze.data import Data
from lintorch.analyze.models import Activation, Models
from lintorch.analyze.values import MAX_DEPTH, Value, Values
from lintorch.index import Binding, CallSite, Scope, call_arg, int_value, iter_nodes


class LossCall(NamedTuple):
    call: CallSite
    loss: str  # qualified name of the loss class or function
    input: Optional[cst.BaseExpression]
    target: Optional[cst.BaseExpression]

    @property
    def short_name(self) -> str:
        return self.loss.rsplit(".", 1)[-1]


class MulticlassEvidence(NamedTuple):
    """Why targets of a loss are single-label classes (LT101)."""

    kind: str  # ONE_HOT | INTEGER_LABELS | ARGMAX
    classes: int
    node: cst.CSTNode  # where the evidence is written


ONE_HOT = "one-hot"
INTEGER_LABELS = "integer labels"
ARGMAX = "argmax"


class ActivatedLoss(NamedTuple):
    loss: LossCall
    activation: Activation
    #: The activation is written inside the loss input expression itself.
    inline: bool


_NON_LOSS_METHODS = frozenset({"append", "view", "reshape", "to", "item", "backward", "step", "zero_grad"})

#: Tensor methods and torch functions that pick some of a tensor's values
#: without changing them (``probs.gather(1, a)``, ``torch.gather(probs, 1, a)``).
_SELECTING_METHODS = frozenset({"gather", "index_select", "masked_select", "take_along_dim", "select", "narrow", "take"})
_SELECTING_FUNCS = frozenset("torch." + name for name in _SELECTING_METHODS)

_FUNCTIONAL_LOSSES = frozenset(
    {"cross_entropy", "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div", "cosine_embedding_loss"}
)


#: ``x.argmax(1)``, ``torch.max(x, 1)``: the predicted class of each row.
_ARGMAX_METHODS = frozenset({"argmax", "max"})
_ARGMAX_FUNCS = frozenset({"torch.argmax", "torch.max"})


class Losses:
    def __init__(self, values: Values, models: Models, data: Data):
        self.values = values
        self.models = models
        self.data = data
        self.index = values.index

    def loss_calls(self, modules: FrozenSet[str], functions: FrozenSet[str]) -> Iterator[LossCall]:
        """Calls computing one of the given losses, in either spelling:
        ``criterion(out, y)`` with ``criterion = nn.CrossEntropyLoss()``
        (also ``self.criterion``, parameters, ``nn.CrossEntropyLoss()(out, y)``)
        or ``F.cross_entropy(out, y)``."""
        for call in self.index.calls:
            if not call.node.args:
                continue
            qualname = call.qualname
            if qualname is not None and not self.values.from_project(call):
                if qualname in functions:
                    yield LossCall(call, qualname, call.arg(0, "input"), call.arg(1, "target"))
                continue
            func = call.node.func
            if isinstance(func, cst.Call):
                ctor_qualname, _ = self.values.constructor(Value(func, call.scope, call.order))
                found = {ctor_qualname} if ctor_qualname else set()
            elif isinstance(func, (cst.Name, cst.Attribute)) and call.method not in _NON_LOSS_METHODS:
                found = self.values.instance_qualnames(func, call.scope, call.order)
            else:
                continue
            matched = found & modules
            if matched:
                yield LossCall(call, min(matched), call.arg(0, "input"), call.arg(1, "target"))

    def activated_loss_inputs(
        self, modules: FrozenSet[str], functions: FrozenSet[str], kinds: FrozenSet[str]
    ) -> Iterator[ActivatedLoss]:
        """Loss calls whose input last went through an activation of one of
        ``kinds`` (LT102/LT103/LT104: probabilities fed to a loss that wants
        logits or log-probabilities)."""
        for loss in self.loss_calls(modules, functions):
            if loss.input is None:
                continue
            activation = self.models.activation(loss.input, loss.call.scope, loss.call.order)
            if activation is None or activation.kind not in kinds:
                continue
            inline = any(node is activation.node for node in iter_nodes(loss.input))
            yield ActivatedLoss(loss, activation, inline)

    def looks_like_loss_call(self, call: CallSite) -> bool:
        """``criterion(out, y)``, ``nn.MSELoss()(out, y)``, ``F.mse_loss(out, y)``,
        ``self.loss_fn(out, y)``: a call computing a loss from (input, target)."""
        if len(call.node.args) < 2:
            return False
        qualname = call.qualname
        if qualname is not None:
            short = qualname.rsplit(".", 1)[-1]
            return qualname.startswith("torch.nn.functional.") and (
                short.endswith("loss") or short in _FUNCTIONAL_LOSSES
            )
        func = call.node.func
        if isinstance(func, cst.Call):
            ctor, _ = self.values.constructor(Value(func, call.scope, call.order))
            return ctor is not None and ctor.startswith("torch.nn.") and ctor.endswith("Loss")
        if isinstance(func, (cst.Name, cst.Attribute)) and call.method not in _NON_LOSS_METHODS:
            qualnames = self.values.instance_qualnames(func, call.scope, call.order)
            if any(q.startswith("torch.nn.") and q.endswith("Loss") for q in qualnames):
                return True
            return names.is_loss_function_name((call.dotted or "").rsplit(".", 1)[-1])
        return False

    def probability_activation(self, expr: cst.BaseExpression, scope: Scope, order: int) -> Optional[Activation]:
        """The activation that produced the values ``expr`` picks from:
        ``probs``, ``probs.gather(1, a)``, ``torch.gather(probs, 1, a)``,
        ``probs[:, -1]``, ``probs.index_select(...).squeeze(1)``, also through
        a variable holding the selection (``picked = torch.gather(probs, 1,
        a)``). The log of selected softmax probabilities underflows just as
        the log of all of them (LT105)."""
        for _ in range(MAX_DEPTH):
            inner = self._selected_from(expr, scope, order)
            if inner is not expr:
                expr = inner
                continue
            if not isinstance(expr, cst.Name):
                break
            values = self.values.definitions(expr, scope, order)
            if len(values) != 1 or self._selected_from(values[0].expr, values[0].scope, values[0].order) is values[0].expr:
                break
            expr, scope, order = values[0]
        return self.models.activation(expr, scope, order)

    def _selected_from(self, node: cst.BaseExpression, scope: Scope, order: int) -> cst.BaseExpression:
        """``probs`` for a selection of it or a value-preserving method on
        it; ``node`` itself otherwise."""
        if isinstance(node, cst.Subscript):
            return node.value
        if not isinstance(node, cst.Call):
            return node
        func = node.func
        qualname = self.index.qualname_of(func, scope, order)
        if qualname is None and isinstance(func, cst.Attribute) and (
            func.attr.value in _SELECTING_METHODS or func.attr.value in api.VALUE_PRESERVING_METHODS
        ):
            return func.value
        if qualname in _SELECTING_FUNCS:
            source = call_arg(node, 0, "input")
            return source if source is not None else node
        return node

    def loss_value(self, name: cst.Name, scope: Scope, order: int) -> Optional[Tuple[CallSite, List[Binding]]]:
        """The loss call whose value ``name`` holds at ``order``, with the
        bindings followed to it: ``loss = criterion(out, y)``, also scaled or
        increased (``loss / n``, ``loss += reg``, ``loss = loss * w``).
        None when the name does not visibly hold a loss."""
        chain: List[Binding] = []
        pending = [(name.value, scope, order)]
        while pending and len(chain) < MAX_DEPTH:
            current, where, at = pending.pop()
            bindings = self.index.lookup(current, where, at)
            if len(bindings) != 1:
                return None
            binding = bindings[0]
            if binding in chain:
                return None
            chain.append(binding)
            value = binding.value
            if binding.kind == "augassign":
                pending.append((current, binding.scope, binding.order))  # loss += reg: still that loss
                continue
            if binding.kind != "assign" or binding.unpack or value is None:
                return None
            while isinstance(value, cst.BinaryOperation) and isinstance(
                value.operator, (cst.Add, cst.Subtract, cst.Multiply, cst.Divide)
            ):
                value = value.left if isinstance(value.left, (cst.Name, cst.Call, cst.BinaryOperation)) else value.right
            if isinstance(value, cst.Name):
                pending.append((value.value, binding.scope, binding.order))
                continue
            call = self.index.call_at(value) if isinstance(value, cst.Call) else None
            if call is not None and self.looks_like_loss_call(call):
                return call, chain
            return None
        return None

    # -- single-label targets (LT101) ---------------------------------------

    def multiclass_evidence(self, loss: LossCall) -> Optional[MulticlassEvidence]:
        """Why the targets of ``loss`` are single-label classes over more than
        two classes, if visible: one-hot targets (``F.one_hot(y, C)``,
        ``torch.eye(C)[y]``, ``C`` read from the call or from the width of
        the model output the loss compares them with), integer class labels
        (``torch.randint(0, C, ...)``, the labels of a torchvision
        classification dataset's loader), or a ``C``-way model output whose
        ``argmax`` is compared with the labels as the prediction."""
        if loss.target is None:
            return None
        scope, order = loss.call.scope, loss.call.order
        output = self.model_output(loss.input, scope, order) if loss.input is not None else None
        width = self.model_output_width(output)
        for value in self._sources(loss.target, scope, order):
            expr = value.expr
            if isinstance(expr, cst.Subscript):
                for eye in self.values.definitions(expr.value, value.scope, value.order):
                    qualname = self.index.qualname_of(eye.expr.func, eye.scope, eye.order) if isinstance(eye.expr, cst.Call) else None
                    if qualname == "torch.eye":
                        classes = self._classes(call_arg(eye.expr, 0, "n"), eye, width)
                        if classes is not None:
                            return MulticlassEvidence(ONE_HOT, classes, expr)
                continue
            if isinstance(expr, cst.Call) and self.index.qualname_of(expr.func, value.scope, value.order) in api.ONE_HOT_FUNCS:
                classes = self._classes(call_arg(expr, 1, "num_classes"), value, width)
                labels = call_arg(expr, 0, "tensor")
                if classes is None and labels is not None and call_arg(expr, 1, "num_classes") is None:
                    found = self.label_classes(labels, value.scope, value.order)
                    classes = found[0] if found else None
                if classes is not None:
                    return MulticlassEvidence(ONE_HOT, classes, expr)
                continue
            found = self.label_classes(expr, value.scope, value.order)
            if found is not None:
                return MulticlassEvidence(INTEGER_LABELS, found[0], found[1])
        if width is not None and width > 2 and output is not None:
            prediction = self.argmax_prediction(output)
            if prediction is not None:
                return MulticlassEvidence(ARGMAX, width, prediction)
        return None

    def _sources(self, expr: cst.BaseExpression, scope: Scope, order: int) -> List[Value]:
        """Definitions of ``expr`` past value-preserving methods; a loop
        variable (no definitions) stands for itself."""
        values = self.values.definitions(expr, scope, order) or [Value(expr, scope, order)]
        return [self.values.strip_value_preserving(v) for v in values]

    def _classes(self, expr: Optional[cst.BaseExpression], where: Value, width: Optional[int]) -> Optional[int]:
        """A class count above two: the literal(s) ``expr`` may be, else the
        width of the model output when ``expr`` is not a visible number."""
        values = self.values.int_values(expr, where.scope, where.order)
        if values:
            return min(values) if all(v > 2 for v in values) else None
        return width if width is not None and width > 2 else None

    def label_classes(
        self, expr: cst.BaseExpression, scope: Scope, order: int, _depth: int = 0
    ) -> Optional[Tuple[int, cst.CSTNode]]:
        """(number of classes, where) when ``expr`` visibly holds integer class
        labels over more than two classes: ``torch.randint(0, C, ...)``, or
        the labels of batches of a torchvision classification dataset
        (``for x, y in DataLoader(datasets.MNIST(...))``), also through a
        ``TensorDataset`` of such labels."""
        for value in self._sources(expr, scope, order):
            node = value.expr
            if isinstance(node, cst.Call) and self.index.qualname_of(node.func, value.scope, value.order) == "torch.randint":
                positional = [a.value for a in node.args if a.keyword is None]
                high = call_arg(node, None, "high")
                if high is None:  # randint(high, size) or randint(low, high, size)
                    high = positional[1] if len(positional) >= 3 else (positional[0] if len(positional) == 2 else None)
                classes = self.values.int_values(high, value.scope, value.order)
                if classes and all(c > 2 for c in classes):
                    return min(classes), node
            elif isinstance(node, cst.Name):
                item = self.data.batch_item(node, value.scope, value.order)
                if item is None:
                    continue
                qualname, _ = self.values.constructor(item.dataset)
                classes = api.CLASSIFICATION_DATASET_CLASSES.get(qualname or "")
                relabelled = call_arg(item.dataset.expr, None, "target_transform") is not None
                if classes is not None and item.position == 1 and not relabelled:
                    return classes, item.dataset.expr
                tensor = call_arg(item.dataset.expr, item.position) if qualname in api.TENSOR_DATASET else None
                if tensor is not None and _depth < 2:
                    found = self.label_classes(tensor, item.dataset.scope, item.dataset.order, _depth + 1)
                    if found is not None:
                        return found
        return None

    def model_output(self, expr: cst.BaseExpression, scope: Scope, order: int) -> Optional[CallSite]:
        """The model call whose output ``expr`` is, seen through variables,
        value-preserving methods and a sigmoid/softmax (``torch.sigmoid(out)``,
        ``out.squeeze(1)``, ``outputs`` bound to ``model(x)``)."""
        for _ in range(MAX_DEPTH):
            values = self.values.definitions(expr, scope, order)
            if len(values) != 1:
                return None
            expr, scope, order = self.values.strip_value_preserving(values[0])
            if not isinstance(expr, cst.Call):
                return None
            func = expr.func
            qualname = self.index.qualname_of(func, scope, order)
            if qualname in api.SIGMOID_FUNCS or qualname in api.SOFTMAX_FUNCS:
                inner = call_arg(expr, 0, "input")
                if inner is None:
                    return None
                expr = inner
                continue
            if qualname is None and isinstance(func, cst.Attribute) and func.attr.value in ("sigmoid", "softmax"):
                expr = func.value
                continue
            call = self.index.call_at(expr)
            return call if call is not None and self.models.is_model_call(call) else None
        return None

    def model_output_width(self, output: Optional[CallSite]) -> Optional[int]:
        """The width of the last dimension of a model call's output, when the
        module's construction shows it (``nn.Linear(128, 10)`` last)."""
        if output is None:
            return None
        func = output.node.func
        if isinstance(func, cst.Attribute) and func.attr.value == "forward":
            func = func.value
        module = self.models.module_instance(func, output.scope, output.order)
        return self.models.output_width(module) if module is not None else None

    def argmax_prediction(self, output: CallSite) -> Optional[cst.CSTNode]:
        """The ``argmax`` over classes of the model call ``output``, in its
        scope, that is compared with ``==``/``.eq()`` as the prediction
        (``(out.argmax(1) == y)``, ``_, pred = torch.max(out, 1)`` then
        ``pred == y``): the outputs are scored as one class per sample."""
        candidates = []
        for call in output.scope.calls:
            operand = self._argmax_operand(call)
            if operand is not None and self.model_output(operand, call.scope, call.order) is output:
                candidates.append(call)
        if not candidates:
            return None
        predictions = {id(c.node) for c in candidates}
        names = set()
        for call in candidates:
            for name in self.values.bound_names(call.node, call.scope):
                names.add(name)
            for binding_list in call.scope.bindings.values():
                for binding in binding_list:
                    if binding.value is call.node and binding.unpack:
                        names.add(binding.name)
        for node in iter_nodes(output.scope.node):
            if isinstance(node, cst.Comparison) and any(isinstance(c.operator, cst.Equal) for c in node.comparisons):
                compared = node
            elif isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value == "eq":
                compared = node
            else:
                continue
            for inner in iter_nodes(compared):
                if id(inner) in predictions or (isinstance(inner, cst.Name) and inner.value in names):
                    return candidates[0].node
        return None

    def _argmax_operand(self, call: CallSite) -> Optional[cst.BaseExpression]:
        """``x`` in ``x.argmax(1)``, ``torch.max(x, dim=1)``, ``x.data.max(1)``:
        an argmax over the class dimension (1 or -1)."""
        qualname = call.qualname
        if qualname in _ARGMAX_FUNCS:
            operand, dim = call.arg(0, "input"), call.arg(1, "dim")
        elif qualname is None and call.method in _ARGMAX_METHODS:
            operand, dim = call.receiver, call.arg(0, "dim")
        else:
            return None
        if operand is None or int_value(dim) not in (1, -1):
            return None
        if isinstance(operand, cst.Attribute) and operand.attr.value == "data":
            operand = operand.value
        return operand
