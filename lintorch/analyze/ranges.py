"""Value ranges: the typical range of a tensor's values, when visible.

Used to tell whether regression targets fit a bounded output activation
(LT106): literals, ``torch.rand`` ([0, 1]), ``torch.randn`` (one standard
deviation), ``randint``, ``linspace``, scalers, and arithmetic on them.
"""

import math
from typing import Optional, Tuple

import libcst as cst

from lintorch import torchapi as api
from lintorch.analyze.values import MAX_DEPTH, Value, Values
from lintorch.index import ModuleIndex, Scope, call_arg, number_value

_STANDARD_NORMAL = frozenset(
    {"torch.randn", "torch.randn_like", "numpy.random.randn", "numpy.random.standard_normal"}
)

_UNIFORM_01 = frozenset({"torch.rand", "torch.rand_like", "numpy.random.rand", "numpy.random.random", "numpy.random.random_sample"})

_TENSOR_WRAPPERS = frozenset(
    {
        "torch.tensor", "torch.as_tensor", "torch.Tensor", "torch.FloatTensor", "torch.DoubleTensor",
        "torch.from_numpy", "numpy.array", "numpy.asarray", "numpy.float32",
    }
)

_BOUNDED_FUNCS = {
    "torch.sin": (-1.0, 1.0), "torch.cos": (-1.0, 1.0), "numpy.sin": (-1.0, 1.0), "numpy.cos": (-1.0, 1.0),
    "torch.sigmoid": (0.0, 1.0), "torch.tanh": (-1.0, 1.0), "numpy.tanh": (-1.0, 1.0),
    "torch.nn.functional.sigmoid": (0.0, 1.0), "torch.nn.functional.tanh": (-1.0, 1.0),
}

#: ``x.sin()`` and friends, read as the function of the same name.
_TENSOR_METHOD_FUNCS = {
    "sin": "torch.sin", "cos": "torch.cos", "sigmoid": "torch.sigmoid", "tanh": "torch.tanh",
    "exp": "torch.exp", "abs": "torch.abs",
}



def _number(node: Optional[cst.CSTNode]) -> Optional[float]:
    return number_value(node) if node is not None else None


def _kw(call: cst.Call, position: Optional[int], keyword: str) -> Optional[cst.BaseExpression]:
    return call_arg(call, position, keyword)


def _literal_range(node: cst.BaseExpression) -> Optional[Tuple[float, float]]:
    """min/max of a nested list/tuple literal of numbers."""
    numbers = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, (cst.List, cst.Tuple)):
            stack.extend(e.value for e in item.elements)
            continue
        number = _number(item)
        if number is None:
            return None
        numbers.append(number)
    return (min(numbers), max(numbers)) if numbers else None


def _mutated_in_place(index: ModuleIndex, name: str) -> bool:
    """``y.div_(255)``, ``y.clamp_(0, 1)``... anywhere in the module."""
    cache = index.__dict__.setdefault("_inplace_receivers", None)
    if cache is None:
        cache = set()
        for call in index.calls:
            method = call.method
            if method and method.endswith("_") and not method.startswith("_") and method != "requires_grad_":
                receiver = call.receiver
                while isinstance(receiver, (cst.Attribute, cst.Subscript)):
                    receiver = receiver.value
                if isinstance(receiver, cst.Name):
                    cache.add(receiver.value)
        index.__dict__["_inplace_receivers"] = cache
    return name in cache



class Ranges:
    def __init__(self, values: Values):
        self.values = values
        self.index = values.index

    def value_range(self, expr: cst.BaseExpression, scope: Scope, order: int, _depth: int = 0) -> Optional[Tuple[float, float]]:
        """The typical range ``(low, high)`` of the values of a tensor
        expression, when the script shows where they come from: literals,
        ``torch.tensor([[...]])``, ``torch.rand`` ([0, 1]), ``torch.randn``
        (one standard deviation: [-1, 1]), ``randint``, ``linspace``,
        ``arange``, ``sin``, ``sigmoid``, ``MinMaxScaler``..., combined with
        ``+ - * /`` and integer powers, through names, indexing, value-
        preserving methods and batches of a ``DataLoader(TensorDataset(...))``.
        None when unknown (data loaded from files, division by a statistic,
        in-place changes, anything else): callers must treat None as
        "could be in any range"."""
        if _depth > MAX_DEPTH:
            return None
        depth = _depth + 1
        number = _number(expr)
        if number is not None:
            return number, number
        if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Minus):
            inner = self.value_range(expr.expression, scope, order, depth)
            return (-inner[1], -inner[0]) if inner is not None else None
        if isinstance(expr, cst.BinaryOperation):
            try:
                return self._binary_range(expr, scope, order, depth)
            except (OverflowError, ValueError):
                return None
        if isinstance(expr, cst.Subscript):
            return self.value_range(expr.value, scope, order, depth)
        if isinstance(expr, (cst.List, cst.Tuple)):
            return _literal_range(expr)
        if isinstance(expr, cst.Name) or (
            isinstance(expr, cst.Attribute) and isinstance(expr.value, cst.Name) and expr.value.value == "self"
        ):
            if isinstance(expr, cst.Name) and _mutated_in_place(self.index, expr.value):
                return None
            values = self.values.definitions(expr, scope, order)
            if not values and isinstance(expr, cst.Name):
                source = self._batch_item_source(expr, scope, order)
                return self.value_range(source.expr, source.scope, source.order, depth) if source else None
            if not values or any(v.expr is expr for v in values):
                return None
            out = None
            for value in values:
                found = self.value_range(value.expr, value.scope, value.order, depth)
                if found is None:
                    return None
                out = found if out is None else (min(out[0], found[0]), max(out[1], found[1]))
            return out
        if isinstance(expr, cst.Call):
            return self._call_range(expr, scope, order, depth)
        return None

    def _binary_range(self, expr: cst.BinaryOperation, scope: Scope, order: int, depth: int):
        left = self.value_range(expr.left, scope, order, depth)
        op = expr.operator
        if isinstance(op, cst.Power):
            exponent = _number(expr.right)
            if left is None or exponent is None or exponent != int(exponent) or exponent < 0:
                return None
            n = int(exponent)
            ends = (left[0] ** n, left[1] ** n)
            if n % 2 == 0 and left[0] <= 0 <= left[1]:
                return 0.0, max(ends)
            return min(ends), max(ends)
        right = self.value_range(expr.right, scope, order, depth)
        if left is None or right is None:
            return None
        if isinstance(op, cst.Add):
            return left[0] + right[0], left[1] + right[1]
        if isinstance(op, cst.Subtract):
            return left[0] - right[1], left[1] - right[0]
        if isinstance(op, cst.Multiply):
            products = [a * b for a in left for b in right]
            return min(products), max(products)
        if isinstance(op, cst.Divide) and (right[0] > 0 or right[1] < 0):
            quotients = [a / b for a in left for b in right]
            return min(quotients), max(quotients)
        return None

    def _call_range(self, call: cst.Call, scope: Scope, order: int, depth: int):
        func = call.func
        qualname = self.index.qualname_of(func, scope, order)
        args = [a.value for a in call.args if a.keyword is None and not a.star]
        if qualname is None and isinstance(func, cst.Attribute):
            method = func.attr.value
            if method in api.VALUE_PRESERVING_METHODS or method in ("numpy", "tolist"):
                return self.value_range(func.value, scope, order, depth)
            if method == "uniform_":
                low, high = _number(_kw(call, 0, "from")), _number(_kw(call, 1, "to"))
                return (0.0 if low is None else low, 1.0 if high is None else high)
            if method in ("fit_transform", "transform") and args:
                return self._scaler_range(func.value, scope, order)
            qualname = _TENSOR_METHOD_FUNCS.get(method)
            if qualname is not None:
                args = [func.value] + args
        if qualname is None:
            return None
        short = qualname.rsplit(".", 1)[-1]
        if qualname in _STANDARD_NORMAL:
            return -1.0, 1.0
        if qualname in _UNIFORM_01:
            return 0.0, 1.0
        if qualname in ("numpy.random.uniform",):
            low, high = _number(_kw(call, 0, "low")), _number(_kw(call, 1, "high"))
            return (0.0 if low is None else low, 1.0 if high is None else high)
        if qualname in ("torch.normal", "numpy.random.normal"):
            numpy = qualname.startswith("numpy")
            mean_arg, std_arg = _kw(call, 0, "loc" if numpy else "mean"), _kw(call, 1, "scale" if numpy else "std")
            mean = 0.0 if numpy and mean_arg is None else _number(mean_arg)
            std = 1.0 if numpy and std_arg is None else _number(std_arg)
            return (mean - abs(std), mean + abs(std)) if mean is not None and std is not None else None
        if qualname in ("torch.randint", "numpy.random.randint"):
            numbers = [_number(a) for a in args]
            low, high = _kw(call, None, "low"), _kw(call, None, "high")
            if low is not None or high is not None:
                bounds = (_number(low) if low is not None else 0.0, _number(high))
            elif qualname == "torch.randint":
                bounds = (numbers[0], numbers[1]) if len(numbers) >= 3 else (0.0, numbers[0] if numbers else None)
            else:
                bounds = (numbers[0], numbers[1]) if len(numbers) >= 2 else (0.0, numbers[0] if numbers else None)
            if bounds[0] is None or bounds[1] is None:
                return None
            return bounds[0], bounds[1] - 1
        if short in ("zeros", "zeros_like", "empty_like") and qualname.split(".")[0] in ("torch", "numpy"):
            return (0.0, 0.0) if short != "empty_like" else None
        if short in ("ones", "ones_like") and qualname.split(".")[0] in ("torch", "numpy"):
            return 1.0, 1.0
        if qualname in ("torch.full", "numpy.full"):
            value = _number(_kw(call, 1, "fill_value"))
            return (value, value) if value is not None else None
        if qualname in ("torch.linspace", "numpy.linspace"):
            low, high = _number(_kw(call, 0, "start")), _number(_kw(call, 1, "end" if qualname[0] == "t" else "stop"))
            return (min(low, high), max(low, high)) if low is not None and high is not None else None
        if qualname in ("torch.arange", "numpy.arange"):
            numbers = [_number(a) for a in args[:2]]
            if len(numbers) == 1 and numbers[0] is not None:
                return 0.0, numbers[0] - 1
            if len(numbers) == 2 and None not in numbers:
                return numbers[0], numbers[1] - 1
            return None
        if qualname in _TENSOR_WRAPPERS:
            return self.value_range(args[0], scope, order, depth) if args else None
        if qualname in _BOUNDED_FUNCS:
            return _BOUNDED_FUNCS[qualname]
        if qualname in ("torch.exp", "numpy.exp") and args:
            inner = self.value_range(args[0], scope, order, depth)
            return (math.exp(min(inner[0], 50)), math.exp(min(inner[1], 50))) if inner is not None else None
        if qualname in ("torch.abs", "numpy.abs") and args:
            inner = self.value_range(args[0], scope, order, depth)
            if inner is None:
                return None
            return (0.0 if inner[0] <= 0 <= inner[1] else min(abs(inner[0]), abs(inner[1]))), max(abs(inner[0]), abs(inner[1]))
        return None

    def _scaler_range(self, scaler: cst.BaseExpression, scope: Scope, order: int):
        for value in self.values.definitions(scaler, scope, order):
            if not isinstance(value.expr, cst.Call):
                return None
            qualname = self.index.qualname_of(value.expr.func, value.scope, value.order) or ""
            if qualname.rsplit(".", 1)[-1] != "MinMaxScaler":
                return None
            feature_range = _kw(value.expr, 0, "feature_range")
            if feature_range is None:
                return 0.0, 1.0
            return _literal_range(feature_range)
        return None

    def _batch_item_source(self, name: cst.Name, scope: Scope, order: int) -> Optional[Value]:
        """``for xb, yb in DataLoader(TensorDataset(X, y))``: ``yb`` -> ``y``."""
        bindings = self.index.lookup(name.value, scope, order)
        if len(bindings) != 1 or bindings[0].kind != "for" or bindings[0].value is None:
            return None
        binding = bindings[0]
        iterable, path = binding.value, binding.unpack
        if (
            isinstance(iterable, cst.Call)
            and isinstance(iterable.func, cst.Name)
            and iterable.func.value == "enumerate"
            and iterable.args
        ):
            if not path or path[0] != 1:
                return None
            iterable, path = iterable.args[0].value, path[1:]
        if len(path) != 1:
            return None
        for loader in self.values.definitions(iterable, binding.scope, binding.order):
            if self.values.constructor(loader)[0] not in api.TORCH_DATALOADER:
                continue
            dataset = call_arg(loader.expr, 0, "dataset")
            for data in self.values.definitions(dataset, loader.scope, loader.order) if dataset is not None else ():
                if self.values.constructor(data)[0] == "torch.utils.data.TensorDataset":
                    tensor = call_arg(data.expr, path[0])
                    if tensor is not None:
                        return Value(tensor, data.scope, data.order)
        return None
