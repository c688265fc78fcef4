"""Shapes: the number of dimensions of a tensor, when the script shows it.

A softmax without ``dim=`` is harmless on a 2-D ``[batch, classes]`` tensor
(PyTorch picks dim 1) and wrong on a 3-D one (dim 0, the batch): the rank
decides how much such a finding matters. Ranks come from tensor factories
(``torch.randn(64, 10)``), ``view``/``reshape``/``flatten``, rank-preserving
operations, and layers that keep or fix the rank (``nn.Linear`` keeps it,
``nn.Flatten`` makes it 2). Anything else is unknown (None).
"""

from typing import List, Optional

import libcst as cst

from lintorch import torchapi as api
from lintorch.analyze.models import Models
from lintorch.analyze.values import Value, Values
from lintorch.index import CallSite, Scope, call_arg, int_value

_MAX_DEPTH = 8

#: Factories whose positional arguments (or one tuple) are the sizes.
_SIZED_FACTORIES = frozenset(
    {"torch.randn", "torch.rand", "torch.zeros", "torch.ones", "torch.empty", "torch.Tensor", "torch.FloatTensor"}
)
#: Elementwise operations: the output has the input's rank.
_RANK_KEEPING_FUNCS = frozenset(
    {
        "torch.relu", "torch.sigmoid", "torch.tanh", "torch.nn.functional.relu", "torch.nn.functional.gelu",
        "torch.nn.functional.leaky_relu", "torch.nn.functional.elu", "torch.nn.functional.silu",
        "torch.nn.functional.dropout", "torch.nn.functional.sigmoid", "torch.nn.functional.tanh",
        "torch.nn.functional.linear", "torch.nn.functional.layer_norm", "torch.nn.functional.normalize",
    }
)
_RANK_KEEPING_METHODS = api.VALUE_PRESERVING_METHODS | frozenset({"relu", "sigmoid", "tanh", "exp", "abs", "clamp"})
#: Layers whose output has the rank of their input.
_RANK_KEEPING_MODULES = (api.PASS_THROUGH_MODULES - {"torch.nn.Flatten", "torch.nn.Unflatten"}) | api.LINEAR | frozenset(
    {"torch.nn.BatchNorm1d", "torch.nn.LayerNorm", "torch.nn.Bilinear"}
)


class Shapes:
    def __init__(self, values: Values, models: Models):
        self.values = values
        self.models = models
        self.index = values.index

    def rank(self, expr: cst.BaseExpression, scope: Scope, order: int, _depth: int = 0) -> Optional[int]:
        """The number of dimensions of the tensor ``expr`` holds, or None."""
        if _depth > _MAX_DEPTH:
            return None
        depth = _depth + 1
        if isinstance(expr, (cst.Name, cst.Attribute)):
            values = self.values.definitions(expr, scope, order)
            if len(values) != 1 or values[0].expr is expr:
                return None
            value = values[0]
            return self.rank(value.expr, value.scope, value.order, depth)
        if not isinstance(expr, cst.Call):
            return None
        func = expr.func
        qualname = self.index.qualname_of(func, scope, order)
        positional = [a.value for a in expr.args if a.keyword is None and not a.star]
        if qualname in _SIZED_FACTORIES:
            if any(a.star for a in expr.args):
                return None
            if len(positional) == 1 and isinstance(positional[0], (cst.Tuple, cst.List)):
                return len(positional[0].elements)
            return len(positional) or None
        if qualname == "torch.flatten":
            start = int_value(call_arg(expr, 1, "start_dim")) if call_arg(expr, 1, "start_dim") is not None else 0
            return start + 1 if start is not None and start >= 0 and call_arg(expr, 2, "end_dim") is None else None
        if qualname in _RANK_KEEPING_FUNCS and positional:
            return self.rank(positional[0], scope, order, depth)
        if qualname is None and isinstance(func, cst.Attribute):
            method = func.attr.value
            if method in ("view", "reshape") and not any(a.star for a in expr.args):
                if len(positional) == 1 and isinstance(positional[0], (cst.Tuple, cst.List)):
                    return len(positional[0].elements)
                return len(positional) or None
            if method == "flatten" and call_arg(expr, 1, "end_dim") is None:
                start_arg = call_arg(expr, 0, "start_dim")
                start = 0 if start_arg is None else int_value(start_arg)
                return start + 1 if start is not None and start >= 0 else None
            if method in _RANK_KEEPING_METHODS:
                return self.rank(func.value, scope, order, depth)
        if qualname is None and positional:
            return self._module_output_rank(expr, positional[0], scope, order, depth)
        return None

    def _module_output_rank(self, call: cst.Call, argument, scope: Scope, order: int, depth: int) -> Optional[int]:
        """``layer(x)``: the rank after a module visibly built in this file."""
        if isinstance(call.func, cst.Call):
            ctor = Value(call.func, scope, order)
        elif isinstance(call.func, (cst.Name, cst.Attribute)):
            ctor = self.models.module_instance(call.func, scope, order)
        else:
            return None
        if ctor is None:
            return None
        qualname, klass = self.values.constructor(ctor)
        if klass is not None:
            return self._forward_rank(klass, depth)
        layers = self._sequence(ctor) if qualname in api.SEQUENTIAL else [ctor]
        if layers is None:
            return None
        return self._through_layers(layers, lambda: self.rank(argument, scope, order, depth))

    def _sequence(self, ctor: Value) -> Optional[List[Value]]:
        """The layers of an ``nn.Sequential``, when each is certainly there."""
        layers = self.models.layers(ctor)
        if layers is None or any(layer.conditional for layer in layers):
            return None
        return [layer.value for layer in layers]

    def _through_layers(self, layers, input_rank) -> Optional[int]:
        """The rank after a chain of layers; ``input_rank`` is asked only
        when no layer fixes the rank."""
        rank_after: Optional[int] = None  # set by the last layer that fixes the rank
        unknown = False  # a layer after it changes the rank in a way not modelled
        for layer in layers:
            qualname, _ = self.values.constructor(layer)
            if qualname == "torch.nn.Flatten" and isinstance(layer.expr, cst.Call):
                start_arg = call_arg(layer.expr, 0, "start_dim")
                start = 1 if start_arg is None else int_value(start_arg)
                fixed = start is not None and start >= 0 and call_arg(layer.expr, 1, "end_dim") is None
                rank_after, unknown = (start + 1, False) if fixed else (None, True)
            elif qualname not in _RANK_KEEPING_MODULES:
                rank_after, unknown = None, True
        if unknown:
            return None
        return rank_after if rank_after is not None else input_rank()

    def _forward_rank(self, klass, depth: int) -> Optional[int]:
        forward = self.values.method_of(klass, "forward")
        if forward is None or len(forward.returns) != 1:
            return None
        ret, order = forward.returns[0]
        return self.rank(ret.value, forward.scope, order, depth) if ret.value is not None else None

    def module_input_rank(self, ctor: Value) -> Optional[int]:
        """The rank of what a module built by ``ctor`` (``nn.Softmax()``) is
        applied to: the output of the layers before it in an
        ``nn.Sequential``, or the argument wherever it is called in this file
        (each call site must agree)."""
        found: Optional[int] = None
        seen = False
        for call in self.index.calls:
            if call.qualname in api.SEQUENTIAL:
                layers = self._sequence(Value(call.node, call.scope, call.order)) or []
                for position, layer in enumerate(layers):
                    if layer.expr is ctor.expr:
                        rank = self._through_layers(layers[:position], lambda: None)
                        if rank is None or (seen and rank != found):
                            return None
                        found, seen = rank, True
            elif self._applies(call, ctor):
                rank = self.rank(call.node.args[0].value, call.scope, call.order)
                if rank is None or (seen and rank != found):
                    return None
                found, seen = rank, True
        return found

    def _applies(self, call: CallSite, ctor: Value) -> bool:
        func = call.node.func
        if not call.node.args or call.qualname is not None:
            return False
        if func is ctor.expr:
            return True  # nn.Softmax()(x)
        if not isinstance(func, (cst.Name, cst.Attribute)):
            return False
        instance = self.models.module_instance(func, call.scope, call.order)
        return instance is not None and instance.expr is ctor.expr
