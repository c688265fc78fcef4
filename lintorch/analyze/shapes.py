"""Shapes: the number of dimensions of a tensor, and its batch axis, when
the script shows them.

A softmax without ``dim=`` is harmless on a 2-D ``[batch, classes]`` tensor
(PyTorch picks dim 1) and wrong on a 3-D one (dim 0, the batch): the rank
decides how much such a finding matters. Ranks come from tensor factories
(``torch.randn(64, 10)``), ``view``/``reshape``/``flatten``/``permute``,
``squeeze``/``unsqueeze``, reductions over one dim, indexing with integers,
``torch.cat``/``torch.stack``, rank-preserving operations, what a local
helper returns, and layers that keep or fix the rank (``nn.Linear`` and
convolutions keep it, ``nn.Flatten`` makes it 2, ``nn.Embedding`` adds
one, a recurrent layer's output is 3-D), also inside containers and through a module's call sites. Anything
else is unknown (None).
"""

from typing import Dict, List, Optional, Tuple

import libcst as cst

from lintorch import torchapi as api
from lintorch.analyze.data import Data
from lintorch.analyze.models import Models
from lintorch.analyze.values import Bound, Value, Values
from lintorch.index import CallSite, Scope, call_arg, int_value

_MAX_DEPTH = 24

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
        "torch.transpose", "torch.abs", "torch.exp", "torch.log", "torch.clamp", "torch.autograd.Variable",
    }
) | api.SOFTMAX_FUNCS | api.LOG_SOFTMAX_FUNCS | api.SIGMOID_FUNCS | api.TANH_FUNCS
_RANK_KEEPING_METHODS = frozenset(
    {
        "float", "double", "half", "bfloat16", "to", "cuda", "cpu", "type", "type_as", "view_as", "reshape_as",
        "contiguous", "clone", "transpose", "t", "long", "int", "detach", "requires_grad_", "relu", "sigmoid",
        "tanh", "exp", "abs", "clamp", "softmax", "log_softmax", "masked_fill", "pow", "sqrt",
    }
)
#: Reductions that drop the dimension they are given (``x.sum(1)``).
_REDUCTIONS = frozenset({"sum", "mean", "prod", "std", "var", "logsumexp", "amax", "amin", "argmax", "argmin"})
#: Layers whose output has the rank of their input: activations, dropout,
#: linear layers, convolutions, pooling, normalisation.
_RANK_KEEPING_MODULES = (
    (api.PASS_THROUGH_MODULES - {"torch.nn.Flatten", "torch.nn.Unflatten"})
    | api.LINEAR
    | api.WEIGHT_LAYERS
    | api.NORM_LAYERS
    | frozenset(
        {
            "torch.nn.Bilinear", "torch.nn.MaxPool3d", "torch.nn.AvgPool3d", "torch.nn.AdaptiveAvgPool3d",
            "torch.nn.AdaptiveMaxPool1d", "torch.nn.AdaptiveMaxPool3d", "torch.nn.Upsample", "torch.nn.LogSoftmax",
            "torch.nn.Softmax", "torch.nn.Softmin", "torch.nn.ZeroPad2d", "torch.nn.ReflectionPad2d",
            "torch.nn.FeatureAlphaDropout", "torch.nn.Softsign", "torch.nn.Tanhshrink", "torch.nn.Threshold",
        }
    )
)
_EMBEDDINGS = frozenset({"torch.nn.Embedding"})
#: Layers returning ``(output, state)`` whose output has the input's rank
#: (``[batch, seq, features]`` in, the same layout out).
_RECURRENT = frozenset({"torch.nn.LSTM", "torch.nn.GRU", "torch.nn.RNN"})
#: ``torch.<name>(x, ...)`` spelled like the method ``x.<name>(...)``.
_RANK_CHANGING_FUNCS = frozenset({"squeeze", "unsqueeze", "permute"}) | _REDUCTIONS


class Shapes:
    def __init__(self, values: Values, models: Models, data: Data):
        self.values = values
        self.models = models
        self.data = data
        self.index = values.index
        self._ranks: Dict[Tuple, Optional[int]] = {}
        self._bounds: Dict[int, Bound] = {}

    def rank(
        self, expr: cst.BaseExpression, scope: Scope, order: int, _depth: int = 0, bound: Optional[Bound] = None
    ) -> Optional[int]:
        """The number of dimensions of the tensor ``expr`` holds, or None.
        ``bound`` reads a local function's parameters as one call passed
        them (:meth:`Values.arguments`)."""
        if _depth > _MAX_DEPTH:
            return None
        if bound:
            self._bounds.setdefault(id(bound), bound)  # alive while its id is a key
        key = (expr, scope, order, id(bound) if bound else None)  # nodes hash by identity
        if key not in self._ranks:
            self._ranks[key] = None  # a cycle: unknown
            self._ranks[key] = self._rank(expr, scope, order, _depth + 1, bound)
        return self._ranks[key]

    def _rank(self, expr, scope: Scope, order: int, depth: int, bound: Optional[Bound]) -> Optional[int]:
        if isinstance(expr, (cst.Name, cst.Attribute)):
            values = self.values.definitions(expr, scope, order, bound=bound)
            if not values:
                return self._recurrent_output_rank(expr, scope, order, depth, bound)
            if len(values) != 1 or values[0].expr is expr:
                return None
            value = values[0]
            return self.rank(value.expr, value.scope, value.order, depth, bound)
        if isinstance(expr, cst.Subscript):
            return self._subscript_rank(expr, scope, order, depth, bound)
        if isinstance(expr, cst.BinaryOperation):
            return self._binary_rank(expr, scope, order, depth, bound)
        if isinstance(expr, cst.IfExp):
            ranks = {self.rank(branch, scope, order, depth, bound) for branch in (expr.body, expr.orelse)}
            return ranks.pop() if len(ranks) == 1 else None
        if not isinstance(expr, cst.Call) or any(a.star for a in expr.args):
            return None
        func = expr.func
        qualname = self.index.qualname_of(func, scope, order)
        positional = [a.value for a in expr.args if a.keyword is None]
        if qualname is not None:
            return self._function_rank(qualname, expr, positional, scope, order, depth, bound)
        if isinstance(func, (cst.Name, cst.Attribute, cst.Call)) and positional:
            ctor = Value(func, scope, order) if isinstance(func, cst.Call) else self.models.module_instance(func, scope, order)
            if ctor is not None:
                return self._module_output_rank(ctor, lambda: self.rank(positional[0], scope, order, depth, bound), depth)
        function = self.values.local_function(Value(expr, scope, order))
        if function is not None and function.returns and all(ret.value is not None for ret, _ in function.returns):
            inner = {**(bound or {}), **self.values.arguments(function, Value(expr, scope, order))}
            ranks = {self.rank(ret.value, function.scope, o, depth, inner) for ret, o in function.returns}
            return ranks.pop() if len(ranks) == 1 else None
        if isinstance(func, cst.Attribute):
            return self._method_rank(func.attr.value, expr, positional, scope, order, depth, bound)
        return None

    def _recurrent_output_rank(self, expr, scope: Scope, order: int, depth: int, bound: Optional[Bound]) -> Optional[int]:
        """``out, state = self.lstm(x)``: ``out`` has the rank of ``x``, 3
        (``[batch, seq, features]`` or ``[seq, batch, features]``) when
        that is not visible: unbatched 2-D sequences are rare."""
        if depth > _MAX_DEPTH:
            return None
        bindings = self.index.lookup(expr.value, scope, order) if isinstance(expr, cst.Name) else []
        if len(bindings) == 1 and not bindings[0].unpack and isinstance(bindings[0].value, cst.Name):
            alias = bindings[0]  # ``y = out``
            return self._recurrent_output_rank(alias.value, alias.scope, alias.order, depth + 1, bound)
        unpacked = self.values.unpacked_from(expr, scope, order)
        if unpacked is None or unpacked[1] != (0,):
            return None
        call, _ = unpacked
        node = call.expr
        if not isinstance(node, cst.Call) or not node.args or node.args[0].keyword is not None:
            return None
        if not isinstance(node.func, (cst.Name, cst.Attribute)):
            return None
        ctor = self.models.module_instance(node.func, call.scope, call.order)
        if ctor is None or self.values.constructor(ctor)[0] not in _RECURRENT:
            return None
        input_rank = self.rank(node.args[0].value, call.scope, call.order, depth, bound)
        return 3 if input_rank is None else input_rank

    def _function_rank(self, qualname: str, call: cst.Call, positional, scope, order, depth, bound) -> Optional[int]:
        if qualname in _SIZED_FACTORIES:
            return _count_sizes(positional)
        first = positional[0] if positional else None
        if first is None:
            return None
        if qualname == "torch.flatten":
            return _flattened(call_arg(call, 1, "start_dim"), call_arg(call, 2, "end_dim"), 0)
        if qualname in _RANK_KEEPING_FUNCS:
            return self.rank(first, scope, order, depth, bound)
        if qualname in ("torch.cat", "torch.stack") and isinstance(first, (cst.List, cst.Tuple)) and first.elements:
            inner = self.rank(first.elements[0].value, scope, order, depth, bound)
            return inner + (qualname == "torch.stack") if inner is not None else None
        rest = positional[1:]
        name = qualname.rsplit(".", 1)[-1]
        if qualname.startswith("torch.") and name in _RANK_CHANGING_FUNCS:
            return self._method_rank(name, call, rest, scope, order, depth, bound, receiver=first)
        return None

    def _method_rank(self, method: str, call: cst.Call, positional, scope, order, depth, bound, receiver=None) -> Optional[int]:
        """``x.view(n, -1)``, ``x.squeeze(2)``, ``x.sum(1)``, ... on a tensor."""
        receiver = receiver if receiver is not None else call.func.value
        if method in ("view", "reshape", "repeat", "expand", "permute"):
            return _count_sizes(positional)
        if method == "flatten":
            return _flattened(call_arg(call, 0, "start_dim"), call_arg(call, 1, "end_dim"), 0)
        inner = self.rank(receiver, scope, order, depth, bound) if method in _RANK_KEEPING_METHODS | _REDUCTIONS | {
            "squeeze", "unsqueeze"
        } else None
        if inner is None:
            return None
        if method in _RANK_KEEPING_METHODS:
            return inner
        dim = call_arg(call, 0 if receiver is call.func.value else 1, "dim")
        if method == "unsqueeze":
            return inner + 1
        if method == "squeeze":
            return inner - 1 if int_value(dim) is not None else None  # squeeze() drops every size-1 axis
        keepdim = call_arg(call, None, "keepdim")
        if int_value(dim) is None or (keepdim is not None and not (isinstance(keepdim, cst.Name) and keepdim.value == "False")):
            return None
        return inner - 1

    def _subscript_rank(self, expr: cst.Subscript, scope, order, depth, bound) -> Optional[int]:
        """``x[:, -1, :]``: one axis fewer per integer index, one more per
        ``None``; tensors or lists as indices (masks, gathers): unknown."""
        change = 0
        for element in expr.slice:
            item = element.slice
            if isinstance(item, cst.Slice):
                continue
            value = item.value
            if int_value(value) is not None:
                change -= 1
            elif isinstance(value, cst.Name) and value.value == "None":
                change += 1
            elif not isinstance(value, cst.Ellipsis):
                return None
        inner = self.rank(expr.value, scope, order, depth, bound)
        return inner + change if inner is not None and inner + change >= 0 else None

    def _binary_rank(self, expr: cst.BinaryOperation, scope, order, depth, bound) -> Optional[int]:
        """Element-wise arithmetic broadcasts (the larger rank; a number
        keeps the tensor's); ``a @ b`` of two matrices is a matrix."""
        ranks = []
        for side in (expr.left, expr.right):
            if isinstance(side, (cst.Integer, cst.Float)) or int_value(side) is not None:
                continue
            ranks.append(self.rank(side, scope, order, depth, bound))
        if not ranks or None in ranks:
            return None
        if isinstance(expr.operator, cst.MatrixMultiply):
            return 2 if ranks == [2, 2] else None
        return max(ranks)

    def _module_output_rank(self, ctor: Value, input_rank, depth: int) -> Optional[int]:
        """The rank after a module visibly built in this file, called on
        an input whose rank ``input_rank()`` gives."""
        qualname, klass = self.values.constructor(ctor)
        if klass is not None:
            return self._forward_rank(klass, depth)
        return self._through_layers([ctor], input_rank)

    def _through_layers(self, layers: List[Value], input_rank) -> Optional[int]:
        """The rank after a chain of layers; ``input_rank`` is asked only
        when no layer fixes the rank."""
        change = self._layers_change(layers, 0)
        if change is None:
            return None
        fixed, added = change
        if fixed is not None:
            return fixed + added
        start = input_rank()
        return start + added if start is not None else None

    def _layers_change(self, layers: List[Value], depth: int) -> Optional[Tuple[Optional[int], int]]:
        """What a chain of layers does to the rank: (the rank the last
        flattening layer fixes, or None; axes added after it). None when a
        layer after the last flattening one changes it in a way not
        modelled."""
        fixed: Optional[int] = None
        added = 0
        unknown = False
        for layer in layers:
            qualname, _ = self.values.constructor(layer)
            change: Optional[Tuple[Optional[int], int]] = (None, 0)
            if qualname == "torch.nn.Flatten" and isinstance(layer.expr, cst.Call):
                flat = _flattened(call_arg(layer.expr, 0, "start_dim"), call_arg(layer.expr, 1, "end_dim"), 1)
                change = (flat, 0) if flat is not None else None
            elif qualname in _EMBEDDINGS:
                change = (None, 1)
            elif qualname in api.SEQUENTIAL and depth < 4:
                inner = self._sequence(layer)
                change = self._layers_change(inner, depth + 1) if inner is not None else None
            elif qualname not in _RANK_KEEPING_MODULES:
                change = None
            if change is None:
                unknown = True
            elif change[0] is not None:
                fixed, added, unknown = change[0], change[1], False
            else:
                added += change[1]
        return None if unknown else (fixed, added)

    def _sequence(self, ctor: Value) -> Optional[List[Value]]:
        """The layers of an ``nn.Sequential``, when each is certainly there."""
        layers = self.models.layers(ctor)
        if layers is None or any(layer.conditional for layer in layers):
            return None
        return [layer.value for layer in layers]

    def _forward_rank(self, klass, depth: int) -> Optional[int]:
        forward = self.values.method_of(klass, "forward")
        if forward is None or len(forward.returns) != 1:
            return None
        ret, order = forward.returns[0]
        return self.rank(ret.value, forward.scope, order, depth) if ret.value is not None else None

    def module_input_rank(self, ctor: Value, _depth: int = 0) -> Optional[int]:
        """The rank of what a module built by ``ctor`` (``nn.Softmax()``) is
        applied to: the output of the layers before it in an
        ``nn.Sequential`` (itself applied to something whose rank is
        visible, when those layers keep the rank), or the argument wherever
        it is called in this file (each call site must agree)."""
        if _depth > 4:
            return None
        found: Optional[int] = None
        seen = False
        for call in self.index.calls:
            rank = None
            if call.qualname in api.SEQUENTIAL:
                container = Value(call.node, call.scope, call.order)
                layers = self._sequence(container) or []
                positions = [i for i, layer in enumerate(layers) if layer.expr is ctor.expr]
                if not positions:
                    continue
                rank = self._through_layers(layers[: positions[0]], lambda: self.module_input_rank(container, _depth + 1))
            elif self._applies(call, ctor):
                rank = self.rank(call.node.args[0].value, call.scope, call.order)
            else:
                continue
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

    # -- the batch axis -------------------------------------------------------

    def batched_model_output(self, expr: cst.BaseExpression, scope: Scope, order: int) -> Optional[cst.Call]:
        """The model call producing ``expr`` when, on every path, it is a
        module's output (not a ``self.<layer>`` inside a module) on a
        visible batch (``data.batch_source``) and the module's output has
        more than one column: a ``[batch, classes]`` tensor whose dim 0 is
        the batch. ``[n, 1]`` scores (attention pooling, ListNet) and
        outputs of unknown width are not."""
        found = None
        values = self.values.definitions(expr, scope, order)
        if not values:
            return None
        for value in values:
            value = self.values.strip_value_preserving(value)
            call = value.expr
            if not isinstance(call, cst.Call) or not call.args or not isinstance(call.func, (cst.Name, cst.Attribute)):
                return None
            func = call.func
            if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value == "self":
                return None
            ctor = self.models.module_instance(func, value.scope, value.order)
            width = self.models.output_width(ctor) if ctor is not None else None
            if width is None or width < 2:
                return None
            if self.data.batch_source(call.args[0].value, value.scope, value.order) is None:
                return None
            found = found or call
        return found


def _count_sizes(sizes) -> Optional[int]:
    """``view(a, b)`` / ``view((a, b))`` / ``zeros(a, b)``: how many sizes."""
    if len(sizes) == 1 and isinstance(sizes[0], (cst.Tuple, cst.List)):
        return len(sizes[0].elements) if not any(isinstance(e, cst.StarredElement) for e in sizes[0].elements) else None
    return len(sizes) or None


def _flattened(start_arg, end_arg, default_start: int) -> Optional[int]:
    """The rank after ``flatten(start_dim)`` (to the last axis)."""
    if end_arg is not None and int_value(end_arg) != -1:
        return None
    start = default_start if start_arg is None else int_value(start_arg)
    return start + 1 if start is not None and start >= 0 else None
