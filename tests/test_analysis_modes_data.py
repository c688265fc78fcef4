"""The shared facts added for the LT3xx/LT5xx rules: train/eval mode calls,
validation loops, mode-dependent layers, loaders feeding loops, tensors."""
import textwrap

import libcst as cst

from lintorch.analysis import Analysis
from lintorch.index import ModuleIndex
from lintorch.analyze.modes import mode_call_kind


def index_of(code: str) -> Analysis:
    text = textwrap.dedent(code)
    return Analysis(ModuleIndex(cst.parse_module(text), "t.py", text))


def test_mode_call_kinds():
    analysis = index_of(
        """
        model.eval()
        model.train()
        model.train(False)
        model.train(mode=True)
        model.train(flag)
        trainer.train()
        eval("1 + 1")
        """
    )
    kinds = [mode_call_kind(call) for call in analysis.index.calls]
    assert kinds == ["eval", "train", "eval", "train", None, None, None]


def test_function_modes_last_call_wins():
    analysis = index_of(
        """
        def evaluate(model):
            model.eval()
            run(model)
            model.train()

        def freeze(model):
            model.eval()
        """
    )
    evaluate, freeze = analysis.index.functions
    assert analysis.modes.function_modes(evaluate) == ("train", frozenset({"eval", "train"}))
    assert analysis.modes.function_modes(freeze) == ("eval", frozenset({"eval"}))


def test_mode_layers():
    analysis = index_of(
        """
        import torch.nn as nn
        import torchvision

        class Plain(nn.Module):
            def __init__(self, width):
                super().__init__()
                self.width = width
                self.fc = nn.Linear(width, 2)

        class WithDropout(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.1))

        class Head(nn.Module):
            def __init__(self, p=0.0):
                super().__init__()
                self.drop = nn.Dropout(p=p)
                self.fc = nn.Linear(4, 2)

        a = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
        b = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
        c = Plain(8)
        d = WithDropout().to("cpu")
        e = torchvision.models.resnet18()
        f = load_somehow()
        g = nn.LSTM(4, 4, dropout=0.2)
        h = nn.LSTM(4, 4, num_layers=2, dropout=0.2)
        i = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.0))
        j = nn.Embedding.from_pretrained(weights)
        k = nn.DataParallel(WithDropout())
        l = Head()
        m = Head(p=0.3)
        """
    )
    module = analysis.index.module_scope
    result = {name: analysis.models.mode_layers(cst.Name(name), module, 10_000) for name in "abcdefghijklm"}
    assert result == {
        "a": False, "b": True, "c": False, "d": True, "e": True, "f": None,
        "g": False,  # recurrent dropout acts between stacked layers: none with one
        "h": True, "i": False, "j": False, "k": True, "l": False, "m": True,
    }


def test_dataloader_feeding_a_loop_through_a_parameter():
    analysis = index_of(
        """
        from torch.utils.data import DataLoader

        def train(loader):
            for i, (x, y) in enumerate(tqdm(loader)):
                pass

        train(DataLoader(ds, batch_size=4))
        """
    )
    (loop,) = analysis.index.loops
    found = analysis.data.dataloader_calls(loop.node.iter, loop.scope, loop.order)
    assert len(found) == 1 and analysis.values.constructor(found[0])[0] == "torch.utils.data.DataLoader"


def test_validation_loops_and_no_grad():
    analysis = index_of(
        """
        import torch

        @torch.no_grad()
        def validate(model, val_loader):
            for x, y in val_loader:
                model(x)

        def evaluate(model, loader):
            for x, y in loader:
                model(x)

        def train(model, loader):
            for x, y in loader:
                optimizer.zero_grad()
                model(x).sum().backward()
                optimizer.step()

        with torch.no_grad():
            evaluate(net, test_loader)
        """
    )
    loops = analysis.modes.validation_loops()
    assert sorted(v.function.name for v in loops) == ["evaluate", "validate"]
    for found in loops:
        assert all(analysis.modes.under_no_grad(call) is True for call in found.forwards)


def test_is_tensor():
    analysis = index_of(
        """
        import numpy as np
        import torch

        a = torch.rand(3, 4)
        b = a[0].float()
        c = np.zeros(3)
        d = torch.tensor(c)[1:]
        """
    )
    module = analysis.index.module_scope
    assert [analysis.values.is_tensor(cst.Name(n), module, 10_000) for n in "abcd"] == [True, True, False, True]


def test_self_call_and_local_functions():
    analysis = index_of(
        """
        import torch.nn as nn

        class Net(nn.Module):
            def training_step(self, batch):
                return self(batch[0])

        class Helper:
            def run(self, x):
                return self(x)

        def eval_model(model, loader):
            return 0

        eval_model(net, loader)
        """
    )
    assert [analysis.models.is_model_call(c) for c in analysis.index.calls] == [True, False, False]


def test_dataloaders_through_a_dict():
    analysis = index_of(
        """
        from torch.utils.data import DataLoader

        loaders = {"train": DataLoader(a, shuffle=True), "val": DataLoader(b)}
        phases = {p: DataLoader(sets[p]) for p in ("train", "val")}
        for x in loaders["val"]:
            pass
        for x in phases[phase]:
            pass
        for x in loaders[phase]:
            pass
        """
    )
    counts = [len(analysis.data.dataloader_calls(loop.node.iter, loop.scope, loop.order)) for loop in analysis.index.loops]
    assert counts == [1, 1, 2]
