from typing import Iterator, List, Optional, Tuple, Union

import libcst as cst

from lintorch import torchapi as api
from lintorch.analyze.values import Value
from lintorch.index import ClassInfo, call_arg
from lintorch.rule import Example, Report, Rule, Severity


class ToTensorOnTensor(Rule):
    """
    **What it does.** Flags `transforms.ToTensor()` (alone or first in a
    `transforms.Compose([...])`) applied to data that is already a torch
    tensor: called on `torch.rand(...)`/`torch.tensor(...)` data or an
    element of it, or applied by a dataset class's `__getitem__` (as its
    `self.transform`, written inline as `ToTensor()(x)`, or a module-level
    transform) to an element of tensor data stored on `self` in `__init__`
    (a `TensorDataset`, tensors built with `torch.tensor`/`from_numpy`).

    **Why is this bad?** `ToTensor` converts a PIL image or an `HxWxC` numpy
    array into a `CxHxW` float tensor scaled to [0, 1]. Given a tensor it
    either raises `TypeError: pic should be PIL Image or ndarray`, or (in
    versions that pass tensors through) does nothing, so the scaling and
    channel reordering the author relied on never happen and the
    `Normalize` that follows works on the wrong range.

    **Symptom.** A crash in the data pipeline or, worse, unscaled inputs:
    loss not changing, accuracy not improving.

    **Fix.** Drop `ToTensor()` for tensor data and scale explicitly
    (`x.float() / 255`), or keep the raw data as PIL images / numpy arrays
    until the transform. Transforms applied to PIL images or numpy arrays
    are not flagged.
    """

    code = "LT502"
    name = "totensor-on-tensor"
    severity = Severity.WARNING
    summary = "transforms.ToTensor() applied to data that is already a tensor"
    symptom = "crash in the data pipeline, or inputs never scaled; loss not changing"
    triggers = ("ToTensor",)

    bad = [
        Example(
            """
            import torch
            import torchvision.transforms as T

            to_tensor = T.ToTensor()
            images = torch.rand(100, 32, 32, 3)
            first = to_tensor(images[0])
            """
        ),
    ]
    good = [
        Example(
            """
            import numpy as np
            import torchvision.transforms as T

            to_tensor = T.ToTensor()
            images = np.random.rand(100, 32, 32, 3).astype("float32")
            first = to_tensor(images[0])
            """
        ),
        Example(
            """
            from PIL import Image
            from torchvision import transforms

            transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
            image = transform(Image.open("digit.png"))
            """
        ),
    ]

    def check(self, analysis):
        # One report per ToTensor(): at the dataset instantiation when the
        # transform reaches the data through a Dataset class, else at the call.
        reported = set()
        for report in (*self._datasets(analysis), *self._direct(analysis)):
            key = id(report.related[0]) if report.related else id(report.node)
            if key not in reported:
                reported.add(key)
                yield report

    def _direct(self, analysis) -> Iterator[Report]:
        """``transform(tensor)``."""
        index = analysis.index
        for call in index.calls:
            func = call.node.func
            if call.qualname is not None or not isinstance(func, (cst.Name, cst.Attribute)):
                continue
            if isinstance(func, cst.Attribute) and not isinstance(func.value, cst.Name):
                continue
            arg = call.arg(0)
            if arg is None or len(call.node.args) != 1:
                continue
            to_tensor = _to_tensor_of(analysis, func, call.scope, call.order)
            if to_tensor is None:
                continue
            if not analysis.values.is_tensor(arg, call.scope, call.order):
                continue
            yield self._report(call.node, to_tensor)

    def _datasets(self, analysis) -> Iterator[Report]:
        """A dataset class applying its transform to elements of tensor data,
        judged per instantiation (``MyDataset(tensors, transform=ToTensor())``)."""
        index = analysis.index
        for klass in index.classes:
            getitem = analysis.values.method_of(klass, "__getitem__")
            if getitem is None:
                continue
            applications = _transform_applications(analysis, getitem)
            if not applications:
                continue
            for instance in analysis.values.instances_of(klass):
                for transform, data_attr in applications:
                    found = transform if isinstance(transform, cst.Call) else None
                    for source in _attr_sources(analysis, klass, transform, instance) if found is None else ():
                        found = _to_tensor_value(analysis, source)
                        if found is not None:
                            break
                    if found is None:
                        continue
                    data = _attr_sources(analysis, klass, data_attr, instance)
                    if data and all(_holds_tensors(analysis, value) for value in data):
                        yield self._report(instance.node, found, klass)
                        break

    def _report(self, node, to_tensor, klass: Optional[ClassInfo] = None) -> Report:
        where = f" by {klass.name}.__getitem__" if klass is not None else ""
        return self.report(
            node,
            f"ToTensor() (line {{line0}}) is applied{where} to data that is already a tensor",
            explanation="ToTensor expects a PIL image or an HxWxC numpy array, so it raises TypeError or "
            "leaves the data unscaled and in the wrong layout, and the normalisation after it works on the "
            "wrong range (loss not changing, accuracy not improving). Drop ToTensor() for tensor data and "
            "scale explicitly (x.float() / 255), or keep PIL images/ndarrays until the transform.",
            related=(to_tensor,),
        )


def _to_tensor_of(analysis, expr, scope, order) -> Optional[cst.Call]:
    """The ToTensor() call when ``expr`` is a ToTensor or a Compose starting with one."""
    values = analysis.values.definitions(expr, scope, order)
    if len(values) != 1:
        return None
    return _to_tensor_value(analysis, values[0])


def _to_tensor_value(analysis, value: Value) -> Optional[cst.Call]:
    qualname, _ = analysis.values.constructor(value)
    if qualname in api.TO_TENSOR:
        return value.expr
    if qualname in api.COMPOSE:
        transforms = call_arg(value.expr, 0, "transforms")
        if isinstance(transforms, (cst.List, cst.Tuple)) and transforms.elements:
            first = transforms.elements[0]
            if isinstance(first, cst.StarredElement):
                return None
            for inner in analysis.values.definitions(first.value, value.scope, value.order):
                if analysis.values.constructor(inner)[0] in api.TO_TENSOR:
                    return inner.expr
    return None


def _transform_applications(analysis, getitem) -> List[Tuple[Union[str, cst.Call], str]]:
    """(transform, data attribute) for each ``t(x)`` in __getitem__ where
    ``x`` is ``self.data[i]`` (directly or through variables and
    value-preserving methods). The transform is the name of a ``self``
    attribute (``self.transform``: resolved per instance), or the ToTensor()
    call itself when ``t`` is written inline (``ToTensor()(x)``) or is a
    module-level transform."""
    out = []
    for call in getitem.scope.calls:
        func = call.node.func
        if len(call.node.args) != 1 or call.node.args[0].keyword is not None:
            continue
        if _is_self_attr(func):
            transform = func.attr.value
        elif isinstance(func, cst.Call):
            transform = _to_tensor_value(analysis, Value(func, call.scope, call.order))
        elif isinstance(func, cst.Name):
            transform = _to_tensor_of(analysis, func, call.scope, call.order)
        else:
            continue
        if transform is None:
            continue
        arg = call.arg(0)
        values = analysis.values.definitions(arg, call.scope, call.order)
        sources = [analysis.values.strip_value_preserving(v).expr for v in values]
        if isinstance(arg, cst.Name):  # x, y = self.base[i]: an element of an item
            sources += [b.value for b in analysis.index.lookup(arg.value, call.scope, call.order) if b.kind == "assign"]
        data_attr = next(filter(None, map(_subscripted_self_attr, sources)), None)
        if data_attr is not None:
            out.append((transform, data_attr))
    return out


def _is_self_attr(node) -> bool:
    return isinstance(node, cst.Attribute) and isinstance(node.value, cst.Name) and node.value.value == "self"


def _subscripted_self_attr(node) -> Optional[str]:
    if isinstance(node, cst.Subscript) and _is_self_attr(node.value):
        return node.value.attr.value
    return None


def _attr_sources(analysis, klass: ClassInfo, attr: str, instance) -> List[Value]:
    """Values ``self.<attr>`` is built from for one instantiation: what
    __init__ assigns, with its parameters replaced by that call's arguments
    (or their defaults)."""
    out = []
    init = analysis.values.method_of(klass, "__init__")
    positional = [name for name, _ in init.positional_params()] if init is not None else []
    kwonly = {name for name, _, kind in init.params if kind == "kwonly"} if init is not None else set()
    for assign in analysis.values.self_attr_assigns(klass, attr):
        value = assign.value
        if value is None:
            return []
        if isinstance(value, cst.Name) and init is not None and value.value in set(positional) | kwonly:
            position = positional.index(value.value) if value.value in positional else None
            arg = call_arg(instance.node, position, value.value)
            if arg is None:
                return []  # default or *args: not visible enough
            out.extend(analysis.values.definitions(arg, instance.scope, instance.order))
        else:
            out.extend(analysis.values.definitions(value, assign.scope, assign.order))
    return out


def _holds_tensors(analysis, value: Value) -> bool:
    """Tensor data, or a TensorDataset (whose items are tensors)."""
    qualname, _ = analysis.values.constructor(value)
    if qualname in api.TENSOR_DATASET:
        return True
    return analysis.values.is_tensor(value.expr, value.scope, value.order)
