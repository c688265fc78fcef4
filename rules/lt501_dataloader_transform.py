from lintorch import torchapi as api
from lintorch.rule import Example, Rule, Severity

TRANSFORM_KEYWORDS = ("transform", "target_transform", "transforms")


class DataLoaderTransform(Rule):
    """
    **What it does.** Flags `torch.utils.data.DataLoader(..., transform=...)`
    (also `target_transform=` and `transforms=`).

    **Why is this bad?** `DataLoader` has no such parameter: the call raises
    `TypeError: __init__() got an unexpected keyword argument 'transform'`.
    Transforms belong to the `Dataset`, which applies them in
    `__getitem__`. When the error is "fixed" by deleting the argument, the
    normalisation the author meant to apply silently never happens.

    **Symptom.** A crash at start-up, or, once the argument is dropped,
    un-normalised inputs and a loss that does not improve.

    **Fix.** Pass the transform to the dataset (`ImageFolder(root,
    transform=t)`, `CIFAR10(..., transform=t)`) or apply it inside your own
    `Dataset.__getitem__`. Loaders of other libraries that do accept
    `transform` (PyG's `NeighborLoader`, `LinkNeighborLoader`) and your own
    classes named `DataLoader` are not flagged.
    """

    code = "LT501"
    name = "dataloader-transform"
    severity = Severity.ERROR
    summary = "transform= passed to torch.utils.data.DataLoader, which has no such argument"
    symptom = "crash (TypeError) or inputs never normalised; loss not improving"
    triggers = ("DataLoader",)

    bad = [
        Example(
            """
            from torch.utils.data import DataLoader

            loader = DataLoader(dataset, batch_size=64, shuffle=True, transform=transform)
            """
        ),
        Example(
            """
            import torch

            loader = torch.utils.data.DataLoader(dataset, target_transform=to_index)
            """
        ),
    ]
    good = [
        Example(
            """
            from torch.utils.data import DataLoader
            from torchvision.datasets import ImageFolder

            dataset = ImageFolder("data/train", transform=transform)
            loader = DataLoader(dataset, batch_size=64, shuffle=True)
            """
        ),
        Example(
            """
            from torch_geometric.loader import LinkNeighborLoader

            loader = LinkNeighborLoader(data, num_neighbors=[10], transform=transform)
            """
        ),
    ]

    def check(self, analysis):
        index = analysis.index
        for call in index.calls_to(api.TORCH_DATALOADER):
            if call.expects_exception:
                continue
            for arg in call.node.args:
                if arg.keyword is not None and arg.keyword.value in TRANSFORM_KEYWORDS:
                    keyword = arg.keyword.value
                    yield self.report(
                        arg,
                        f"DataLoader() has no '{keyword}' argument (TypeError at run time)",
                        explanation="Deleting the argument to silence the error drops the preprocessing "
                        f"without a word (loss not improving). Pass {keyword}= to the Dataset instead.",
                    )
