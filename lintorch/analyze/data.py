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
        """The ``torch.utils.data.DataLoader(...)`` calls a loop over ``expr`` iterates."""
        out = []
        for value in self.values.iterated_values(expr, scope, order):
            value = self.values.strip_value_preserving(value)
            qualname, _ = self.values.constructor(value)
            if qualname in api.TORCH_DATALOADER:
                out.append(value)
        return out

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
            found = self.values.definitions(dataset, loader.scope, loader.order) if dataset is not None else []
            if len(found) == 1:
                return BatchItem(loader, found[0], path[0])
        return None
