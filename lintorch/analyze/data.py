"""Data: loaders, datasets and the batches a loop iterates.

Answers "does this loop iterate a DataLoader?" (through ``enumerate``,
``tqdm``, assignments and parameters), "does this tensor carry a batch
dimension?", and which ``DataLoader(...)`` calls a loop reads.
"""

from typing import List, NamedTuple, Optional

import libcst as cst

from lintorch import torchapi as api
from lintorch.analyze import names
from lintorch.analyze.values import Value, Values
from lintorch.index import LoopInfo, Scope, call_arg, dotted_name, iter_nodes

#: Calls whose outputs hold the input rows in a random order.
_PERMUTING_SPLITS = frozenset(
    {"torch.utils.data.random_split", "sklearn.model_selection.train_test_split", "sklearn.utils.shuffle"}
)
#: Calls returning a random permutation of indices.
_PERMUTATIONS = frozenset({"torch.randperm", "numpy.random.permutation"})
#: Calls and methods that keep rows in the order they are given.
_ROW_PRESERVING = frozenset(
    {"torch.tensor", "torch.as_tensor", "torch.from_numpy", "torch.Tensor", "torch.FloatTensor", "torch.LongTensor",
     "numpy.array", "numpy.asarray", "list", "zip", "torch.utils.data.TensorDataset"}
)
_ROW_PRESERVING_METHODS = frozenset({"to_numpy", "astype", "values", "numpy", "reset_index"})

#: Tensor factories whose positional arguments are the sizes.
_BATCH_FACTORIES = frozenset({"torch.randn", "torch.rand", "torch.zeros", "torch.ones", "torch.empty"})

_ITER_WRAPPERS = frozenset({"enumerate", "tqdm", "zip", "iter", "islice", "trange"})


class BatchItem(NamedTuple):
    """``yb`` in ``for xb, yb in DataLoader(dataset)``: element ``position``
    of the items of ``dataset``, batched by ``loader``."""

    loader: Value
    dataset: Value
    position: int


class Data:
    def __init__(self, values: Values):
        self.values = values
        self.index = values.index

    def dataloader_calls(self, expr: cst.BaseExpression, scope: Scope, order: int) -> List[Value]:
        """The ``torch.utils.data.DataLoader(...)`` calls a loop over ``expr``
        iterates, also through a dict of loaders (``loaders["val"]``)."""
        out = []
        for value in self.values.iterated_values(expr, scope, order):
            for item in self.subscripted_items(value):
                item = self.values.strip_value_preserving(item)
                qualname, _ = self.values.constructor(item)
                if qualname in api.TORCH_DATALOADER:
                    out.append(item)
        return out

    def subscripted_items(self, value: Value) -> List[Value]:
        """For ``loaders["val"]``: the values stored under that key in the
        dict it subscripts, when the dict is built in this module (a dict
        display, a dict comprehension such as ``{x: DataLoader(...) for x in
        phases}``, ``dict(train=..., val=...)``); every stored value when the
        key is not a literal (``loaders[phase]``). Anything else is itself."""
        expr = value.expr
        if not isinstance(expr, cst.Subscript) or len(expr.slice) != 1 or not isinstance(expr.slice[0].slice, cst.Index):
            return [value]
        index = expr.slice[0].slice.value
        key = index.evaluated_value if isinstance(index, cst.SimpleString) else None
        out: List[Value] = []
        for container in self.values.definitions(expr.value, value.scope, value.order):
            stored: List[cst.BaseExpression] = []
            node = container.expr
            if isinstance(node, cst.Dict):
                for element in node.elements:
                    if isinstance(element, cst.DictElement) and (
                        key is None or (isinstance(element.key, cst.SimpleString) and element.key.evaluated_value == key)
                    ):
                        stored.append(element.value)
            elif isinstance(node, cst.DictComp):
                stored.append(node.value)
            elif isinstance(node, cst.Call) and dotted_name(node.func) == "dict":
                stored.extend(a.value for a in node.args if a.keyword is not None and key in (None, a.keyword.value))
            for item in stored:
                out.extend(self.values.definitions(item, container.scope, container.order))
        return out or [value]

    def batch_source(self, expr: cst.BaseExpression, scope: Scope, order: int) -> Optional[cst.CSTNode]:
        """Where ``expr`` visibly gets a batch of samples (a leading batch
        dimension) from: a loop over a ``DataLoader`` (or a ``*loader*``
        name, through ``enumerate``/``tqdm``), or a tensor factory such as
        ``torch.randn(64, 10)`` with at least two dimensions, the first > 1.
        None when that is not visible."""
        for value in self.values.definitions(expr, scope, order) or [Value(expr, scope, order)]:
            value = self.values.strip_value_preserving(value)
            node = value.expr
            if isinstance(node, cst.Name):
                for binding in self.index.lookup(node.value, value.scope, value.order):
                    if binding.kind == "for" and binding.value is not None:
                        if self._is_loader_iterable(binding.value, binding.scope, binding.order):
                            return binding.node
            elif isinstance(node, cst.Call):
                qualname = self.index.qualname_of(node.func, value.scope, value.order)
                if qualname in _BATCH_FACTORIES:
                    sizes = [a.value for a in node.args if a.keyword is None]
                    if len(sizes) == 1 and isinstance(sizes[0], (cst.Tuple, cst.List)):
                        sizes = [e.value for e in sizes[0].elements]
                    if len(sizes) >= 2:
                        first = self.values.int_values(sizes[0], value.scope, value.order)
                        if first and all(n > 1 for n in first):
                            return node
        return None

    def _is_loader_iterable(self, iterable: cst.BaseExpression, scope: Scope, order: int) -> bool:
        for _ in range(3):
            if isinstance(iterable, cst.Call) and iterable.args:
                name = dotted_name(iterable.func) or ""
                if name in ("enumerate", "iter") or name.rsplit(".", 1)[-1] == "tqdm":
                    iterable = iterable.args[0].value
                    continue
            break
        name = dotted_name(iterable)
        if name is not None and names.is_batch_iterable_name(name.rsplit(".", 1)[-1]):
            return True
        for value in self.values.definitions(iterable, scope, order):
            qualname, _ = self.values.constructor(value)
            if qualname in api.TORCH_DATALOADER:
                return True
        return False

    def iterates_loader(self, loop: LoopInfo) -> bool:
        """``for x, y in loader``, ``enumerate(tqdm(train_dl))``, a DataLoader."""
        for node in iter_nodes(loop.node.iter):
            if isinstance(node, cst.Call):
                continue
            if isinstance(node, (cst.Name, cst.Attribute)):
                last = (dotted_name(node) or "").rsplit(".", 1)[-1].lower()
                if last in _ITER_WRAPPERS:
                    continue
                if names.is_batch_iterable_name(last):
                    return True
                if isinstance(node, cst.Name):
                    qualnames = self.values.instance_qualnames(node, loop.scope, loop.order)
                    if qualnames & api.TORCH_DATALOADER:
                        return True
        return False

    def batch_item(self, name: cst.Name, scope: Scope, order: int) -> Optional[BatchItem]:
        """Which element of which dataset's items the loop variable ``name``
        holds: ``for xb, yb in loader`` or ``for i, (xb, yb) in
        enumerate(loader)`` over a visible ``DataLoader(dataset, ...)``."""
        bindings = self.index.lookup(name.value, scope, order)
        item = self.values.loop_item(bindings[0]) if len(bindings) == 1 else None
        if item is None:
            return None
        binding = bindings[0]
        iterable, path = item
        if len(path) != 1:
            return None
        for loader in self.values.definitions(iterable, binding.scope, binding.order):
            if self.values.constructor(loader)[0] not in api.TORCH_DATALOADER:
                continue
            dataset = call_arg(loader.expr, 0, "dataset")
            found = self.values.definitions(dataset, loader.scope, loader.order) if dataset is not None else []
            if len(found) == 1:
                return BatchItem(loader, found[0], path[0])
        return None

    def permuted_once(self, expr: cst.BaseExpression, scope: Scope, order: int, _depth: int = 0) -> Optional[cst.CSTNode]:
        """The call that put the rows of the dataset ``expr`` in a random order
        once, if visible: an output of ``random_split``,
        ``train_test_split`` (unless ``shuffle=False``) or
        ``sklearn.utils.shuffle``, rows indexed by ``torch.randperm`` /
        ``np.random.permutation``, ``df.sample(frac=1)``, ``Subset(ds,
        permuted_indices)``, and datasets built from such tensors
        (``TensorDataset(X_train, y_train)``, ``list(zip(X, y))``,
        ``MyDataset(X_train)``, through ``torch.tensor``/``.float()``)."""
        if _depth > 6:
            return None
        depth = _depth + 1
        if isinstance(expr, cst.Name):
            for binding in self.index.lookup(expr.value, scope, order):
                if binding.unpack and isinstance(binding.value, cst.Call):
                    if self._permuting_split(binding.value, binding.scope, binding.order):
                        return binding.value
                    call = self.index.call_at(binding.value)
                    if call is not None and self.values.local_callee(call) is not None:
                        # x_t, y_t = prepare(X_train, y_train): a helper keeps the rows' order
                        for arg in binding.value.args:
                            found = self.permuted_once(arg.value, binding.scope, binding.order, depth)
                            if found is not None:
                                return found
        for value in self.values.definitions(expr, scope, order):
            value = self.values.strip_value_preserving(value)
            node = value.expr
            if node is expr and isinstance(node, cst.Name):
                continue
            if isinstance(node, cst.Subscript):
                index = node.slice[0].slice if len(node.slice) == 1 else None
                index = index.value if isinstance(index, cst.Index) else None
                if index is not None and self._is_permutation(index, value.scope, value.order):
                    return node
                found = self.permuted_once(node.value, value.scope, value.order, depth)
                if found is not None:
                    return found
                continue
            if isinstance(node, cst.Attribute) and node.attr.value in _ROW_PRESERVING_METHODS:
                found = self.permuted_once(node.value, value.scope, value.order, depth)
                if found is not None:
                    return found
                continue
            if not isinstance(node, cst.Call):
                continue
            if self._permuting_split(node, value.scope, value.order):
                return node
            func = node.func
            if isinstance(func, cst.Attribute) and func.attr.value == "sample" and call_arg(node, None, "frac") is not None:
                return node  # df.sample(frac=1)
            qualname, klass = self.values.constructor(value)
            if qualname == "torch.utils.data.Subset":
                indices = call_arg(node, 1, "indices")
                if indices is not None and self._is_permutation(indices, value.scope, value.order):
                    return node
                continue
            if isinstance(func, cst.Attribute) and func.attr.value in _ROW_PRESERVING_METHODS and qualname is None:
                found = self.permuted_once(func.value, value.scope, value.order, depth)
                if found is not None:
                    return found
                continue
            name = qualname or (func.value if isinstance(func, cst.Name) else None)
            site = self.index.call_at(node)
            if name in _ROW_PRESERVING or klass is not None or (site is not None and self.values.local_callee(site)):
                # a dataset or local helper built from the rows (``prepare(X_train)``) keeps their order
                first = next((a.value for a in node.args if a.keyword is None and not a.star), None)
                found = self.permuted_once(first, value.scope, value.order, depth) if first is not None else None
                if found is not None:
                    return found
        return None

    def _permuting_split(self, call: cst.Call, scope: Scope, order: int) -> bool:
        qualname = self.index.qualname_of(call.func, scope, order)
        if qualname not in _PERMUTING_SPLITS:
            return False
        shuffle = call_arg(call, None, "shuffle")
        return not (isinstance(shuffle, cst.Name) and shuffle.value == "False")

    def _is_permutation(self, expr: cst.BaseExpression, scope: Scope, order: int) -> bool:
        """``perm``, ``perm[:800]``, ``torch.randperm(n)``, indices shuffled by
        ``np.random.shuffle(idx)`` / ``random.shuffle(idx)``."""
        for _ in range(4):
            if isinstance(expr, cst.Subscript):
                expr = expr.value
                continue
            break
        for value in self.values.definitions(expr, scope, order) or [Value(expr, scope, order)]:
            node = value.expr
            if isinstance(node, cst.Subscript):
                return self._is_permutation(node.value, value.scope, value.order)
            if isinstance(node, cst.Call) and self.index.qualname_of(node.func, value.scope, value.order) in _PERMUTATIONS:
                return True
        if isinstance(expr, cst.Name):
            for call in self.index.calls:
                if call.qualname in ("numpy.random.shuffle", "random.shuffle") and call.node.args:
                    arg = call.node.args[0].value
                    if isinstance(arg, cst.Name) and arg.value == expr.value and call.scope is scope:
                        return True
        return False

    def drawn_once(self, names: List[str]) -> bool:
        """Whether the loader bound to ``names`` is only used to draw a batch
        with ``next(iter(loader))`` (a demonstration step): no ``for`` loop
        iterates it and no other call receives it."""
        drawn = False
        for call in self.index.calls:
            for arg in call.node.args:
                if isinstance(arg.value, cst.Name) and arg.value.value in names:
                    if dotted_name(call.node.func) != "iter":
                        return False
                    drawn = True
        for loop in self.index.loops:
            if isinstance(loop.node, cst.For) and any(
                isinstance(node, cst.Name) and node.value in names for node in iter_nodes(loop.node.iter)
            ):
                return False
        return drawn
