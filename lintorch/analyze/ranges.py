"""Value ranges: the typical range of a tensor's values, when visible.

Used to tell whether regression targets fit a bounded output activation
(LT106): literals, ``torch.rand`` ([0, 1]), ``torch.randn`` (one standard
deviation), ``randint``, ``linspace``, scalers, and arithmetic on them.
"""

import math
from typing import List, Optional, Tuple

import libcst as cst

from lintorch import torchapi as api
from lintorch.analyze.data import Data
from lintorch.analyze.values import MAX_DEPTH, Value, Values
from lintorch.index import ModuleIndex, Scope, call_arg, int_value, iter_nodes, number_value

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



#: ``x.mul(500)``, ``torch.add(a, b)``: arithmetic written as calls.
_ARITHMETIC_METHODS = {
    "add": "+", "sub": "-", "subtract": "-", "mul": "*", "multiply": "*", "div": "/", "divide": "/", "pow": "**",
}
_OPERATORS = {cst.Add: "+", cst.Subtract: "-", cst.Multiply: "*", cst.Divide: "/", cst.Power: "**", cst.MatrixMultiply: "@"}
_REDUCTIONS = frozenset({"sum", "mean"})
#: Calls computing a statistic of a tensor: dividing by one normalises.
_STATISTICS = frozenset({"sum", "mean", "std", "var", "max", "min", "amax", "amin", "norm", "median", "quantile", "abs"})
_ELEMENTWISE = (cst.Add, cst.Subtract, cst.Multiply, cst.Divide)
#: Methods that keep a tensor's sizes (dtype and device changes).
_SHAPE_KEEPING_METHODS = frozenset(
    {"float", "double", "half", "long", "int", "to", "cuda", "cpu", "detach", "clone", "contiguous"}
)
_SIZED_FACTORIES = frozenset(
    {"torch.rand", "torch.randn", "torch.zeros", "torch.ones", "torch.empty", "torch.randint",
     "numpy.random.rand", "numpy.random.randn", "numpy.zeros", "numpy.ones"}
)


def _combine(op: str, left: Tuple[float, float], right: Tuple[float, float]) -> Optional[Tuple[float, float]]:
    if op == "+":
        return left[0] + right[0], left[1] + right[1]
    if op == "-":
        return left[0] - right[1], left[1] - right[0]
    if op == "*":
        products = [a * b for a in left for b in right]
        return min(products), max(products)
    if op == "**":  # right is a non-negative integer exponent (n, n)
        n = int(right[0])
        ends = (left[0] ** n, left[1] ** n)
        if n % 2 == 0 and left[0] <= 0 <= left[1]:
            return 0.0, max(ends)
        return min(ends), max(ends)
    if op == "/" and (right[0] > 0 or right[1] < 0):
        quotients = [a / b for a in left for b in right]
        return min(quotients), max(quotients)
    return None


def _summed(elements: Tuple[float, float], count: Optional[int]) -> Optional[Tuple[float, float]]:
    """The range of a sum of ``count`` values in ``elements``. With the count
    unknown, values of one sign still give a range the sum reaches at least
    (one term); mixed signs may cancel: unknown."""
    if count is not None and count >= 1:
        return elements[0] * count, elements[1] * count
    if elements[0] >= 0 or elements[1] <= 0:
        return elements
    return None


def _is_statistic(node: cst.BaseExpression) -> bool:
    for inner in iter_nodes(node):
        if isinstance(inner, cst.Call):
            func = inner.func
            name = func.attr.value if isinstance(func, cst.Attribute) else (func.value if isinstance(func, cst.Name) else None)
            if name in _STATISTICS:
                return True
    return False


def _literal_sizes(node: cst.BaseExpression) -> List[Optional[int]]:
    """``[[1, 2], [3, 4]]`` -> [2, 2] (first element's nesting)."""
    sizes: List[Optional[int]] = []
    while isinstance(node, (cst.List, cst.Tuple)) and node.elements:
        sizes.append(len(node.elements))
        node = node.elements[0].value
    return sizes


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
    def __init__(self, values: Values, data: Data):
        self.values = values
        self.data = data
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
            return self._binary_range(expr, scope, order, depth)
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
        op = _OPERATORS.get(type(expr.operator))
        if op is None:
            return None
        if op == "/" and _is_statistic(expr.right):
            return None  # x / x.sum(), x / x.std(): a normalisation, ranges lose the correlation
        if op == "@":
            return self._matmul_range(expr.left, expr.right, scope, order, depth)
        return self._arithmetic(op, expr.left, expr.right, scope, order, depth)

    def _arithmetic(self, op: str, left_expr, right_expr, scope: Scope, order: int, depth: int):
        """``left op right`` for ``+ - * / **``, as operators, tensor methods
        (``x.mul(500)``) or torch functions (``torch.add(a, b)``)."""
        left = self.value_range(left_expr, scope, order, depth)
        if left is None:
            return None
        if op == "**":
            exponent = _number(right_expr)
            if exponent is None or exponent != int(exponent) or exponent < 0:
                return None
            right = (exponent, exponent)
        else:
            right = self.value_range(right_expr, scope, order, depth)
            if right is None:
                return None
        try:
            return _combine(op, left, right)
        except (OverflowError, ValueError):
            return None

    def _matmul_range(self, left_expr, right_expr, scope: Scope, order: int, depth: int):
        """``X @ W``: sums of products over the inner dimension."""
        products = self._arithmetic("*", left_expr, right_expr, scope, order, depth)
        if products is None:
            return None
        count = self._size(left_expr, -1, scope, order) or self._size(right_expr, 0, scope, order)
        return _summed(products, count)

    def _reduction_range(self, operand, method: str, dim, scope: Scope, order: int, depth: int):
        """``x.sum(dim)``, ``torch.sum(x)``, ``x.mean()``: a mean stays in the
        elements' range; a sum of ``k`` elements in ``[a, b]`` lies in
        ``[k*a, k*b]``, with ``k`` read from the tensor's visible sizes."""
        inner = self.value_range(operand, scope, order, depth)
        if inner is None or method == "mean":
            return inner
        position = int_value(dim) if dim is not None else None
        if dim is not None and position is None:
            return _summed(inner, None)
        return _summed(inner, self._size(operand, position, scope, order))

    def _size(self, expr, position: Optional[int], scope: Scope, order: int, _depth: int = 0) -> Optional[int]:
        """The size of dimension ``position`` of ``expr`` (the number of
        elements when None), when its values visibly come from a factory with
        literal sizes (``torch.rand(n, 3)``) or a nested list literal."""
        if _depth > MAX_DEPTH:
            return None
        depth = _depth + 1
        if isinstance(expr, cst.BinaryOperation) and type(expr.operator) in _ELEMENTWISE:
            return self._size(expr.left, position, scope, order, depth) or self._size(expr.right, position, scope, order, depth)
        if isinstance(expr, (cst.Name, cst.Attribute)):
            values = self.values.definitions(expr, scope, order)
            if len(values) != 1 or values[0].expr is expr:
                return None
            return self._size(values[0].expr, position, values[0].scope, values[0].order, depth)
        sizes: List[Optional[int]] = []
        if isinstance(expr, (cst.List, cst.Tuple)):
            sizes = _literal_sizes(expr)
        elif isinstance(expr, cst.Call):
            func = expr.func
            qualname = self.index.qualname_of(func, scope, order)
            if qualname is None and isinstance(func, cst.Attribute) and func.attr.value in _SHAPE_KEEPING_METHODS:
                return self._size(func.value, position, scope, order, depth)
            if qualname in _TENSOR_WRAPPERS and expr.args:
                return self._size(expr.args[0].value, position, scope, order, depth)
            if qualname in _SIZED_FACTORIES:
                args = [a.value for a in expr.args if a.keyword is None and not a.star]
                if qualname == "torch.randint":
                    args = args[-1:]  # randint(low, high, size)
                if len(args) == 1 and isinstance(args[0], (cst.Tuple, cst.List)):
                    args = [e.value for e in args[0].elements]
                for arg in args:
                    found = self.values.int_values(arg, scope, order)
                    sizes.append(found[0] if len(found) == 1 else None)
        if not sizes:
            return None
        if position is None:
            return math.prod(sizes) if None not in sizes else None
        if -len(sizes) <= position < len(sizes):
            return sizes[position]
        return None

    def _call_range(self, call: cst.Call, scope: Scope, order: int, depth: int):
        func = call.func
        qualname = self.index.qualname_of(func, scope, order)
        args = [a.value for a in call.args if a.keyword is None and not a.star]
        if qualname is None and isinstance(func, cst.Attribute):
            method = func.attr.value
            if method in _ARITHMETIC_METHODS and len(args) == 1 and len(call.args) == 1:
                return self._arithmetic(_ARITHMETIC_METHODS[method], func.value, args[0], scope, order, depth)
            if method in ("matmul", "mm") and len(args) == 1:
                return self._matmul_range(func.value, args[0], scope, order, depth)
            if method in _REDUCTIONS:
                return self._reduction_range(func.value, method, call_arg(call, 0, "dim"), scope, order, depth)
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
        own_function = qualname in ("torch." + short, "numpy." + short)
        if short in _ARITHMETIC_METHODS and own_function and len(args) == 2 and len(call.args) == 2:
            return self._arithmetic(_ARITHMETIC_METHODS[short], args[0], args[1], scope, order, depth)
        if qualname in ("torch.matmul", "torch.mm", "numpy.matmul", "numpy.dot") and len(args) == 2:
            return self._matmul_range(args[0], args[1], scope, order, depth)
        if short in _REDUCTIONS and own_function and args:
            dim = call_arg(call, 1, "dim" if qualname.startswith("torch.") else "axis")
            return self._reduction_range(args[0], short, dim, scope, order, depth)
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
        """``for xb, yb in DataLoader(TensorDataset(X, y))``: ``yb`` -> ``y``;
        over a local dataset class, the element its ``__getitem__`` returns."""
        item = self.data.batch_item(name, scope, order)
        if item is None:
            return None
        qualname, klass = self.values.constructor(item.dataset)
        if qualname in api.TENSOR_DATASET:
            tensor = call_arg(item.dataset.expr, item.position)
            return Value(tensor, item.dataset.scope, item.dataset.order) if tensor is not None else None
        if klass is not None:
            return self._dataset_item(klass, item.position)
        return None

    def _dataset_item(self, klass, position: int) -> Optional[Value]:
        """Element ``position`` of the tuple a local dataset class's
        ``__getitem__`` returns (``return self.x[i], self.y[i]``), when it
        has a single return."""
        getitem = self.values.method_of(klass, "__getitem__")
        if getitem is None or len(getitem.returns) != 1:
            return None
        node, order = getitem.returns[0]
        if isinstance(node.value, cst.Tuple) and position < len(node.value.elements):
            element = node.value.elements[position]
            if not isinstance(element, cst.StarredElement):
                return Value(element.value, getitem.scope, order)
        return None
