from typing import Optional

import libcst as cst

from lintorch import torchapi as api
from lintorch.analyze import names
from lintorch.index import dotted_name, iter_nodes
from lintorch.rule import Example, Rule, Severity

#: Samplers order the data themselves.
_SAMPLER_KEYWORDS = ("sampler", "batch_sampler")


class TrainLoaderNotShuffled(Rule):
    """
    **What it does.** Flags a `torch.utils.data.DataLoader` that feeds a
    training loop (a loop over it runs `backward()` and an optimizer step,
    also through function parameters), or that is named `train_loader` and
    built on a dataset named `train*`, when it has neither `shuffle=True`
    nor a `sampler=`/`batch_sampler=`.

    **Why is this bad?** Without shuffling every epoch sees the samples in
    the same order, and datasets are often stored sorted by class or by
    time: each batch then holds one class, every step pulls the model
    towards that class, and the gradient estimate is biased.

    **Symptom.** The loss oscillates from batch to batch and plateaus; the
    model predicts the class of the last batches for everything (identical
    predictions, accuracy not improving).

    **Fix.** Pass `shuffle=True` to the training loader (or a sampler:
    `RandomSampler`, `WeightedRandomSampler`, `DistributedSampler`).
    Validation/test loaders, loaders over an `IterableDataset`, loaders with
    any `sampler=`, and `shuffle=` set to a value that is not a literal are
    not flagged; nor is data already put in a random order once
    (`random_split`, `train_test_split`, rows indexed by `torch.randperm` or
    `np.random.permutation`, `df.sample(frac=1)`: batches are mixed even if
    their order repeats), a dataset that is shuffled itself (`.shuffle()`),
    or one whose `__getitem__` ignores the index or picks samples at random,
    nor a loader only used to draw one batch (`next(iter(train_loader))`).
    An explicit `shuffle=False` is flagged only on a loader that visibly
    feeds a training loop (in the labelled real code it was an oversight
    every time); add `# noqa: LT503` where the order is deliberate
    (stateful sequences, curriculum).
    """

    code = "LT503"
    name = "train-loader-not-shuffled"
    severity = Severity.WARNING
    summary = "training DataLoader without shuffle=True or a sampler"
    symptom = "loss oscillating and plateauing; identical predictions; accuracy not improving"
    triggers = ("DataLoader",)

    bad = [
        Example(
            """
            from torch.utils.data import DataLoader, TensorDataset

            dataset = TensorDataset(features, labels)
            loader = DataLoader(dataset, batch_size=32)
            for epoch in range(10):
                for x, y in loader:
                    optimizer.zero_grad()
                    criterion(model(x), y).backward()
                    optimizer.step()
            """
        ),
    ]
    good = [
        Example(
            """
            from torch.utils.data import DataLoader, TensorDataset

            dataset = TensorDataset(features, labels)
            loader = DataLoader(dataset, batch_size=32, shuffle=True)
            for epoch in range(10):
                for x, y in loader:
                    optimizer.zero_grad()
                    criterion(model(x), y).backward()
                    optimizer.step()
            """
        ),
        Example(
            """
            from torch.utils.data import DataLoader

            test_loader = DataLoader(test_dataset, batch_size=256)
            """
        ),
    ]

    def check(self, analysis):
        index = analysis.index
        loaders = list(index.calls_to(api.TORCH_DATALOADER))
        if not loaders:
            return
        feeding = {}
        for loop in analysis.optim.training_loops():
            if isinstance(loop.node, cst.For):
                for value in analysis.data.dataloader_calls(loop.node.iter, loop.scope, loop.order):
                    feeding.setdefault(id(value.expr), loop)
        for call in loaders:
            node = call.node
            if any(a.star for a in node.args):
                continue
            if any(a.keyword is not None and a.keyword.value in _SAMPLER_KEYWORDS for a in node.args):
                continue
            shuffle = call.arg(None, "shuffle")
            explicit = isinstance(shuffle, cst.Name) and shuffle.value == "False"
            if shuffle is not None and not explicit:
                continue  # shuffle=True, or a value decided at run time
            if len([a for a in node.args if a.keyword is None]) > 2:
                continue  # shuffle/sampler passed positionally
            dataset = call.arg(0, "dataset")
            if dataset is None:
                continue
            bound = analysis.values.bound_names(node, call.scope)
            function = index.enclosing_function(call.scope)
            if function is not None:
                bound.append(function.name)
            dataset_name = (dotted_name(dataset) or "").rsplit(".", 1)[-1]
            if any(names.has_evaluation_word(n) for n in bound + [dataset_name]):
                continue
            kind = _dataset_kind(analysis, dataset, call)
            if kind in ("iterable", "random"):
                continue
            if analysis.data.permuted_once(dataset, call.scope, call.order) is not None:
                continue  # rows already in a random order (random_split, train_test_split, randperm)
            loop = feeding.get(id(node))
            if explicit and loop is None:
                continue  # an explicit shuffle=False is only judged against a visible training loop
            named = any(names.is_training_loader_name(n) for n in bound) and names.is_training_name(dataset_name)
            if loop is None and not named:
                continue
            if loop is None and analysis.data.drawn_once(bound):
                continue  # only next(iter(loader)): one batch for a demonstration, no epochs
            if kind is None and not (loop is not None and named):
                continue  # the dataset might be iterable (no shuffle possible)
            where = " feeds the training loop (line {line0})" if loop is not None else " is the training loader"
            how = "shuffle=False" if explicit else "no shuffle=True, no sampler"
            yield self.report(
                node,
                f"this DataLoader{where} but never shuffles ({how})",
                explanation="Nothing shuffled its data before either: every epoch sees the samples in the "
                "same order, and data stored by class or time gives one-class batches and biased steps "
                "(loss oscillating and plateauing, identical predictions, accuracy not improving). Pass "
                "shuffle=True (or a RandomSampler/DistributedSampler).",
                related=(loop.node,) if loop is not None else (),
            )


def _dataset_kind(analysis, dataset, call) -> Optional[str]:
    """``map`` (indexable), ``iterable`` or None (unknown)."""
    kinds = set()
    values = analysis.values.definitions(dataset, call.scope, call.order)
    for value in values:
        value = analysis.values.strip_value_preserving(value)
        kinds.add(_value_kind(analysis, value))
    if "iterable" in kinds:
        return "iterable"
    if "random" in kinds:
        return "random"
    if kinds == {"map"}:
        return "map"
    return None


def _value_kind(analysis, value) -> Optional[str]:
    expr = value.expr
    if isinstance(expr, cst.Subscript):
        inner = analysis.values.definitions(expr.value, value.scope, value.order)
        if len(inner) == 1 and isinstance(inner[0].expr, cst.Call):
            qualname, _ = analysis.values.constructor(inner[0])
            if qualname == "datasets.load_dataset" and not _streaming(inner[0].expr):
                return "map"
        return None
    if not isinstance(expr, cst.Call):
        return None
    if isinstance(expr.func, cst.Attribute) and expr.func.attr.value == "shuffle":
        return "random"  # a shuffled dataset (Hugging Face datasets' .shuffle())
    qualname, klass = analysis.values.constructor(value)
    if qualname is not None:
        if qualname in api.ITERABLE_DATASETS or "Iterable" in qualname or "datapipes" in qualname or "webdataset" in qualname:
            return "iterable"
        if qualname in api.TENSOR_DATASET or qualname.startswith("torchvision.datasets.") or qualname in (
            "torch.utils.data.Subset", "torch.utils.data.ConcatDataset"
        ):
            return "map"
        if qualname == "datasets.load_dataset":
            return "iterable" if _streaming(expr) else None
        return None
    if klass is not None:
        if _samples_at_random(analysis, klass):
            return "random"
        found = None
        for cls in analysis.values.local_bases(klass):
            for base in cls.bases:
                name = dotted_name(base) or ""
                if "Iterable" in name or "IterDataPipe" in name:
                    return "iterable"
            if "__getitem__" in cls.methods:
                found = "map"
            if "__iter__" in cls.methods:
                return "iterable"
        return found
    return None


def _streaming(call: cst.Call) -> bool:
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == "streaming":
            return not (isinstance(arg.value, cst.Name) and arg.value.value == "False")
    return False


def _samples_at_random(analysis, klass) -> bool:
    """A dataset whose ``__getitem__`` ignores its index or draws at random
    (synthetic data, random windows): the loader's order does not matter."""
    getitem = analysis.values.method_of(klass, "__getitem__")
    if getitem is None:
        return False
    params = getitem.positional_params()
    if not params:
        return False
    name = params[0][0]
    used = any(isinstance(n, cst.Name) and n.value == name for n in iter_nodes(getitem.node.body))
    if not used:
        return True
    for call in getitem.scope.calls:
        qualname = call.qualname or ""
        if qualname.startswith(("random.", "numpy.random.")) or qualname in _TORCH_RANDOM:
            return True
    return False


_TORCH_RANDOM = frozenset({"torch.randint", "torch.randperm", "torch.multinomial"})
