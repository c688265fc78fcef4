"""Losses: which calls compute a loss, and what feeds them.

``criterion(out, y)`` with ``criterion = nn.CrossEntropyLoss()`` (also
``self.criterion``, parameters, ``nn.CrossEntropyLoss()(out, y)``) and
``F.cross_entropy(out, y)`` are the same loss call; the activation last
applied to its input is the models domain's answer.
"""

from typing import FrozenSet, Iterator, NamedTuple, Optional

import libcst as cst

from lintorch.analyze import names
from lintorch.analyze.models import Activation, Models
from lintorch.analyze.values import Value, Values
from lintorch.index import CallSite, iter_nodes


class LossCall(NamedTuple):
    call: CallSite
    loss: str  # qualified name of the loss class or function
    input: Optional[cst.BaseExpression]
    target: Optional[cst.BaseExpression]

    @property
    def short_name(self) -> str:
        return self.loss.rsplit(".", 1)[-1]


class ActivatedLoss(NamedTuple):
    loss: LossCall
    activation: Activation
    #: The activation is written inside the loss input expression itself.
    inline: bool


_NON_LOSS_METHODS = frozenset({"append", "view", "reshape", "to", "item", "backward", "step", "zero_grad"})

_FUNCTIONAL_LOSSES = frozenset(
    {"cross_entropy", "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div", "cosine_embedding_loss"}
)


class Losses:
    def __init__(self, values: Values, models: Models):
        self.values = values
        self.models = models
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
