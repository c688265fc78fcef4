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


def test_mode_helper_read_with_its_arguments():
    analysis = index_of(
        """
        def net_mode(net, train):
            if train:
                net.train()
            else:
                net.eval()

        def restore(net):
            net.eval()
            run(net)
            net.train()

        net_mode(model, True)
        net_mode(model, train=False)
        net_mode(model, flag)
        restore(model)
        """
    )
    calls = [c for c in analysis.index.module_scope.calls]
    assert [analysis.modes.call_mode(c) for c in calls] == ["train", "eval", "mode?", "train"]


def test_mode_at_follows_the_last_mode_set():
    analysis = index_of(
        """
        import torch
        import torch.nn as nn

        model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))

        def validate(net, loader):
            net.eval()
            with torch.no_grad():
                score = [net(x) for x, _ in loader]
            net.train()
            return score

        validate(model, val_loader)
        first = model(a)
        model.eval()
        second = model(b)
        if flag:
            model.train()
        third = model(c)
        other.train()
        fourth = model(d)
        """
    )
    forwards = {c.node.args[0].value.value: c for c in analysis.index.calls if c.dotted == "model" and c.node.args}
    inner = next(c for c in analysis.index.calls if c.dotted == "net")
    modes = analysis.modes
    assert modes.mode_at(inner) == "eval"
    assert [modes.mode_at(forwards[k]) for k in "abcd"] == ["train", "eval", None, None]


def test_evaluation_passes_by_behaviour():
    analysis = index_of(
        """
        import torch
        import torch.nn as nn
        from torch.utils.data import DataLoader

        model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        loaders = {"train": DataLoader(a), "valid": DataLoader(b)}

        def check(net, data):
            return sum((net(x).argmax(1) == y).sum().item() for x, y in data)

        def library_evaluate(net, test_iter):
            net.eval()
            for batch in test_iter:
                print(net(batch.text))

        for epoch in range(10):
            optimizer.zero_grad()
            nn.functional.mse_loss(model(X_train), y_train).backward()
            optimizer.step()
            out = model(X_test)
            print(check(model, pairs), out.mean())
            for x, y in loaders["valid"]:
                print(model(x))
        """
    )
    passes = analysis.passes.evaluation_passes()
    found = {(p.kind, p.function.name if p.function else None): (sorted(p.evidence), p.dataset) for p in passes}
    assert found == {
        ("comprehension", "check"): (["training"], False),
        ("loop", "library_evaluate"): (["eval_mode", "loader"], True),
        ("block", None): (["training"], False),
        ("loop", None): (["loader", "training"], True),
    }
    grad = {p.kind + str(p.function and p.function.name): analysis.modes.grad_enabled(p.forwards[0]) for p in passes}
    assert set(grad.values()) == {True}  # the uncalled library helper too: autograd is on by default


def test_not_evaluation_passes():
    analysis = index_of(
        """
        import torch
        import torch.nn as nn
        import pytorch_lightning as pl

        class Net(nn.Module):
            def forward(self, x):
                for block in self.blocks:
                    x = block(x)
                return x

        class Lit(pl.LightningModule):
            def validation_step(self, batch, batch_idx):
                with torch.no_grad():
                    return self(batch[0])

        generator = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8))
        model = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for x, y in train_loader:
            optimizer.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
            with torch.no_grad():
                monitored = model(x).mean()
                sample = generator(torch.randn(4, 8))
            print(monitored, sample)
        with torch.no_grad():
            for x, _ in train_loader:
                model(x)
        with torch.no_grad():
            for x, _ in val_loader:
                unused = model(x)
        """
    )
    assert analysis.passes.evaluation_passes() == []


def test_no_passes_in_test_files_and_dead_notebook_helpers():
    code = """
        import torch
        def evaluate(model, loader):
            model.eval()
            return [model(x) for x, _ in loader]
        """
    text = textwrap.dedent(code)
    in_tests = Analysis(ModuleIndex(cst.parse_module(text), "tests/test_model.py", text))
    assert in_tests.passes.evaluation_passes() == []
    notebook = Analysis(ModuleIndex(cst.parse_module(text), "explore.ipynb", text))
    (found,) = notebook.passes.evaluation_passes()
    assert notebook.modes.grad_enabled(found.forwards[0]) is None  # no cell calls it: it never runs


def test_phase_loop_evaluation_phase():
    analysis = index_of(
        """
        for split in ["train", "valid"]:
            for batch in loaders[split]:
                loss = criterion(model(batch), batch)
                if split == "train":
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
        """
    )
    (found,) = analysis.passes.evaluation_passes()
    assert found.kind == "phase" and [c.dotted for c in found.forwards] == ["model"]


def test_training_forwards_through_helpers_and_unpacking():
    analysis = index_of(
        """
        import torch.nn as nn

        class Net(nn.Module):
            def training_step(self, batch):
                images, labels = batch
                return nn.functional.cross_entropy(self(images), labels)

        mu, logvar, z = encoder(x)
        loss = ((decoder(z) - x) ** 2).mean() + logvar.exp().mean()
        loss.backward()
        model = Net()
        model.training_step(batch).backward()
        fake = generator(noise)
        g_loss = -discriminator(fake).mean()
        g_loss += penalty
        g_loss.backward()
        """
    )
    trained = sorted(c.dotted for c in analysis.index.calls if analysis.forwards.is_training_forward(c))
    assert trained == ["decoder", "discriminator", "encoder", "generator", "model.training_step", "self"]


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


def test_under_no_grad():
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

        def uncalled(model, loader):
            for x, y in loader:
                model(x)

        with torch.no_grad():
            evaluate(net, test_loader)
        """
    )
    by_function = {analysis.index.enclosing_function(c.scope).name: c for c in analysis.index.calls if c.dotted == "model"}
    modes = analysis.modes
    assert modes.under_no_grad(by_function["validate"]) is True
    assert modes.under_no_grad(by_function["evaluate"]) is True
    assert modes.under_no_grad(by_function["uncalled"]) is None
    assert modes.under_no_grad(by_function["uncalled"], uncalled=False) is False


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


def test_split_and_loader_names():
    from lintorch.analyze import names

    assert [names.is_iterator_name(n) for n in ("test_iter", "iterator", "val_iterator", "literal", "items")] == [
        True, True, True, False, False,
    ]
    assert [names.is_evaluation_split(n) for n in ("val", "valid", "test", "train", "value")] == [True, True, True, False, False]
    assert [names.is_training_flag_name(n) for n in ("is_train", "training", "train_mode", "trainer")] == [True, True, True, False]
    assert names.is_validation_loader_name("test_load") and names.is_noise_name("fixed_noise") and not names.is_noise_name("zoom")


def test_pass_size_decides_lt302_severity():
    analysis = index_of(
        """
        import torch

        def evaluate(model, loader, files):
            model.eval()
            tk = tqdm(self.testloader)
            for x, y in tk:
                print(model(x).argmax(1))
            for i, (x, y) in enumerate(loader):
                print(model(x).argmax(1))
                if (i + 1) * batch_size > limit:
                    break
            for count, (x, y) in enumerate(samples):
                print(model(x).argmax(1))
                if count == 4:
                    break
            for name in files:
                print(model(load(name)).argmax(1))
        """
    )
    sizes = [p.dataset for p in sorted(analysis.passes.evaluation_passes(), key=lambda p: p.forwards[0].order)]
    assert sizes == [True, True, False, False]


def test_value_used_follows_reads_after_the_assignment():
    analysis = index_of(
        """
        a = model(x)
        print(a)
        b = model(x)
        b = model(y)
        print(b)
        c = model(c)
        for batch in loader:
            print(d)
            d = model(batch)
        model(x)
        out = model(x)
        out = 10 ** out
        """
    )
    facts = analysis.statements.of(analysis.index.module_scope)
    used = [facts.value_used(c.node) for c in analysis.index.calls if c.dotted == "model"]
    # a read; b's first value overwritten unread; c never read after; d read by the next iteration;
    # a bare call thrown away; out read by the statement that replaces it
    assert used == [True, False, True, False, True, False, True]
