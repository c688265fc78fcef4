from typing import Dict, List, Optional, Tuple

import libcst as cst

from lintorch import torchapi as api
from lintorch.index import CallSite, ClassInfo, FunctionInfo
from lintorch.rule import Example, Rule, Severity


class NumpyRngInWorkers(Rule):
    """
    **What it does.** Flags random draws in a `Dataset.__getitem__` from a
    numpy generator object (`np.random.default_rng(...)`,
    `np.random.RandomState(...)`) created once in `__init__` or at module
    level, when the dataset is loaded by a `DataLoader` with
    `num_workers > 0` and no `worker_init_fn`.

    **Why is this bad?** Each worker process receives a copy of the dataset,
    generator included, in the same state: all workers draw the same
    "random" numbers, so random crops, flips and noise repeat across the
    batches the workers produce, and (without persistent workers) repeat
    again every epoch. The augmentation is far less random than intended.

    Since PyTorch 1.9 the DataLoader seeds numpy's *global* generator
    differently in every worker (`torch/utils/data/_utils/worker.py` calls
    `np.random.seed(_generate_state(base_seed, worker_id))`, with a new
    base seed each epoch), so plain `np.random.rand()` calls in
    `__getitem__` are only a problem on older versions and are not flagged.
    Generator objects are not reseeded by PyTorch, on any version.

    **Symptom.** Overfitting as if there were no augmentation; duplicated
    augmented samples within a batch; validation accuracy not improving.

    **Fix.** Create the generator per worker in a `worker_init_fn`
    (`worker_info.dataset.rng = np.random.default_rng(worker_info.seed)`),
    pass `worker_init_fn=` to the DataLoader, or draw from `torch`'s RNG
    (`torch.rand`, `torch.randint`), which PyTorch seeds per worker.
    """

    code = "LT504"
    name = "numpy-rng-in-workers"
    severity = Severity.WARNING
    summary = "numpy generator copied into every DataLoader worker: identical random augmentation"
    symptom = "augmentation repeated across workers; overfitting; validation accuracy not improving"
    triggers = ("num_workers",)

    bad = [
        Example(
            """
            import numpy as np
            from torch.utils.data import DataLoader, Dataset

            class NoisyDataset(Dataset):
                def __init__(self, signals):
                    self.signals = signals
                    self.rng = np.random.default_rng(0)

                def __len__(self):
                    return len(self.signals)

                def __getitem__(self, i):
                    return self.signals[i] + self.rng.normal(0.0, 0.1, size=self.signals[i].shape)

            loader = DataLoader(NoisyDataset(signals), batch_size=32, shuffle=True, num_workers=4)
            """
        ),
    ]
    good = [
        Example(
            """
            import numpy as np
            from torch.utils.data import DataLoader, Dataset, get_worker_info

            class NoisyDataset(Dataset):
                def __init__(self, signals):
                    self.signals = signals
                    self.rng = np.random.default_rng(0)

                def __len__(self):
                    return len(self.signals)

                def __getitem__(self, i):
                    return self.signals[i] + self.rng.normal(0.0, 0.1, size=self.signals[i].shape)

            def seed_worker(worker_id):
                info = get_worker_info()
                info.dataset.rng = np.random.default_rng(info.seed)

            loader = DataLoader(NoisyDataset(signals), batch_size=32, shuffle=True, num_workers=4,
                                worker_init_fn=seed_worker)
            """
        ),
        Example(
            """
            import torch
            from torch.utils.data import DataLoader, Dataset

            class NoisyDataset(Dataset):
                def __init__(self, signals):
                    self.signals = signals

                def __len__(self):
                    return len(self.signals)

                def __getitem__(self, i):
                    return self.signals[i] + 0.1 * torch.randn_like(self.signals[i])

            loader = DataLoader(NoisyDataset(signals), batch_size=32, shuffle=True, num_workers=4)
            """
        ),
    ]

    def check(self, analysis):
        index = analysis.index
        loaders = list(index.calls_to(api.TORCH_DATALOADER))
        if not loaders:
            return
        draws_by_class: Dict[int, Optional[Tuple[CallSite, str]]] = {}
        reported = set()
        for loader in loaders:
            node = loader.node
            if any(a.star for a in node.args):
                continue
            if loader.arg(None, "worker_init_fn") is not None or len([a for a in node.args if a.keyword is None]) > 10:
                continue
            workers = analysis.values.int_values(loader.arg(None, "num_workers"), loader.scope, loader.order)
            if not workers or not all(w > 0 for w in workers):
                continue
            dataset = loader.arg(0, "dataset")
            if dataset is None:
                continue
            for value in analysis.values.definitions(dataset, loader.scope, loader.order):
                _, klass = analysis.values.constructor(analysis.values.strip_value_preserving(value))
                if klass is None:
                    continue
                key = id(klass.node)
                if key not in draws_by_class:
                    draws_by_class[key] = _generator_draw(analysis, klass)
                found = draws_by_class[key]
                if found is None or key in reported:
                    continue
                reported.add(key)
                draw, origin = found
                yield self.report(
                    draw.node,
                    f"{klass.name}.__getitem__ repeats its numpy random draws in {max(workers)} DataLoader "
                    "workers (line {line0})",
                    explanation=f"It draws from a numpy generator created {origin}, and the DataLoader runs "
                    f"it in {max(workers)} worker processes without a worker_init_fn: every worker gets a "
                    "copy of the generator in the same state, so the 'random' augmentation repeats across "
                    "workers (and epochs) (overfitting, validation accuracy not improving). Re-create the "
                    "generator per worker in a worker_init_fn (np.random.default_rng(get_worker_info().seed)) "
                    "or draw from torch's RNG.",
                    related=(node,),
                )


def _generator_draw(analysis, klass: ClassInfo) -> Optional[Tuple[CallSite, str]]:
    """The first draw from a shared numpy generator in ``__getitem__`` (or a
    method it calls on self), with where the generator was made."""
    index = analysis.index
    getitem = analysis.values.method_of(klass, "__getitem__")
    if getitem is None:
        return None
    attrs: Dict[str, str] = {}
    for cls in analysis.values.local_bases(klass):
        for attr, assigns in cls.self_attrs.items():
            origins = set()
            for assign in assigns:
                function = index.enclosing_function(assign.scope)
                name = function.name if function is not None else ""
                made = assign.value is not None and _is_generator(index, assign.value, assign.scope, assign.order)
                origins.add((name, made))
            if origins and all(made for _, made in origins) and all(n == "__init__" for n, _ in origins):
                attrs[attr] = "in __init__ (in the main process)"
            elif any(made for _, made in origins):
                attrs.pop(attr, None)  # re-created elsewhere (a per-worker reseed): fine
    for cls in analysis.values.local_bases(klass):
        for method in cls.methods.values():
            for call in method.scope.calls:
                if call.qualname in ("torch.utils.data.get_worker_info",):
                    return None  # the dataset seeds itself per worker
    for function in _getitem_and_helpers(analysis, klass, getitem):
        for call in function.scope.calls:
            receiver = call.receiver
            if receiver is None or call.method is None:
                continue
            if (
                isinstance(receiver, cst.Attribute)
                and isinstance(receiver.value, cst.Name)
                and receiver.value.value == "self"
                and receiver.attr.value in attrs
            ):
                return call, attrs[receiver.attr.value]
            if isinstance(receiver, cst.Name):
                bindings = index.lookup(receiver.value, call.scope, call.order)
                if (
                    len(bindings) == 1
                    and bindings[0].scope.kind == "module"
                    and bindings[0].kind == "assign"
                    and bindings[0].value is not None
                    and _is_generator(index, bindings[0].value, bindings[0].scope, bindings[0].order)
                ):
                    return call, "at module level (in the main process)"
    return None


def _getitem_and_helpers(analysis, klass: ClassInfo, getitem: FunctionInfo) -> List[FunctionInfo]:
    out = [getitem]
    for call in getitem.scope.calls:
        callee = analysis.values.local_callee(call)
        if callee is not None and callee.klass is klass and callee not in out:
            out.append(callee)
    return out


def _is_generator(index, expr, scope, order) -> bool:
    return isinstance(expr, cst.Call) and index.qualname_of(expr.func, scope, order) in api.NUMPY_GENERATORS
