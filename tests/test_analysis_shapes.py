"""Shapes facts: tensor ranks through operations, layers, helpers and a
module's call sites, and the batch axis of model outputs."""

import textwrap

import libcst as cst
import pytest

from lintorch.analysis import Analysis
from lintorch.analyze.values import Value
from lintorch.index import ModuleIndex


def analyse(source: str) -> Analysis:
    return Analysis(ModuleIndex(cst.parse_module(textwrap.dedent(source))))


def rank_of_use(source: str):
    analysis = analyse("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n" + source + "\nuse(y)\n")
    call = [c for c in analysis.index.calls if c.dotted == "use"][-1]
    return analysis.shapes.rank(call.node.args[0].value, call.scope, call.order)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("y = torch.randn(4, 5, 6)", 3),
        ("y = torch.zeros((4, 5))", 2),
        ("x = torch.randn(4, 5, 6)\ny = x.permute(2, 0, 1)", 3),
        ("x = torch.randn(4, 5, 1)\ny = x.squeeze(2)", 2),
        ("x = torch.randn(4, 5, 1)\ny = x.squeeze()", None),
        ("x = torch.randn(4, 5)\ny = torch.unsqueeze(x, 0)", 3),
        ("x = torch.randn(4, 5)\ny = x.sum(1)", 1),
        ("x = torch.randn(4, 5)\ny = x.mean(dim=1, keepdim=True)", None),
        ("x = torch.randn(4, 5, 6)\ny = x[:, -1, :]", 2),
        ("x = torch.randn(4, 5)\ny = x[None, ..., 0]", 2),
        ("x = torch.randn(4, 5)\ny = x[mask]", None),
        ("a = torch.randn(4, 5)\ny = torch.cat((a, a), 1)", 2),
        ("a = torch.randn(4, 5)\ny = torch.stack([a, a])", 3),
        ("a = torch.randn(4, 5)\ny = a * 2 + torch.randn(5)", 2),
        ("a = torch.randn(4, 5)\ny = a @ torch.randn(5, 3)", 2),
        ("x = torch.randn(8, 3, 32, 32)\ny = x.view(x.size(0), -1)", 2),
        ("x = torch.randn(8, 3, 32, 32)\ny = x.flatten(1)", 2),
        ("def f(t):\n    return t.cuda() if flag else t\ny = f(torch.zeros(3))\nz = f(torch.zeros(3, 3))", 1),
        ("emb = nn.Embedding(10, 4)\ny = emb(torch.zeros(2, 7).long())", 3),
        ("net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))\ny = net(images)", 2),
        ("inner = nn.Sequential(nn.Linear(4, 4), nn.ReLU())\nnet = nn.Sequential(inner, nn.Linear(4, 2))\ny = net(torch.randn(3, 4))", 2),
        ("class Res(nn.Module):\n    pass\nnet = nn.Sequential(nn.Sequential(Res()), nn.Flatten(), nn.Linear(8, 2))\ny = net(x)", 2),
        ("class Res(nn.Module):\n    pass\nnet = nn.Sequential(nn.Flatten(), Res())\ny = net(x)", None),
        # A recurrent layer's output keeps its input's rank, 3 when that is not visible.
        ("emb = nn.Embedding(10, 4)\nlstm = nn.LSTM(4, 8)\nh, (c, s) = lstm(emb(torch.zeros(2, 7).long()))\ny = nn.Linear(8, 3)(h)", 3),
        ("gru = nn.GRU(4, 8, batch_first=True)\nout, _ = gru(x)\nlast = out\ny = last[:, -1]", 2),
        ("lstm = nn.LSTM(4, 8)\nout, _ = lstm(torch.randn(7, 4))\ny = out", 2),
        ("gru = nn.GRU(4, 8)\n_, y = gru(x)", None),
        ("gru = nn.GRU(4, 8)\ny = gru(x)", None),
    ],
)
def test_rank(source, expected):
    assert rank_of_use(source) == expected


def test_rank_of_a_module_layer_reads_its_call_sites():
    analysis = analyse(
        """
        import torch.nn as nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.first = nn.Sequential(nn.Linear(64, 32), nn.ReLU())
                self.last = nn.Sequential(nn.Linear(32, 10), nn.Softmax())
                self.head = nn.Sequential(self.first, self.last)
                self.other = nn.Softmax()

            def forward(self, x):
                y = self.head(x.view(x.shape[0], -1))
                return self.other(y.unsqueeze(1))
        """
    )
    softmaxes = [c for c in analysis.index.calls if c.dotted == "nn.Softmax"]
    ranks = [analysis.shapes.module_input_rank(Value(c.node, c.scope, c.order)) for c in softmaxes]
    assert ranks == [2, 3]


def test_batched_model_output_needs_a_batch_and_several_columns():
    analysis = analyse(
        """
        import torch
        import torch.nn as nn

        wide = nn.DataParallel(nn.Sequential(nn.Linear(8, 4)))
        narrow = nn.Linear(8, 1)
        for x, y in train_loader:
            use(wide(x), narrow(x), wide(x[0]))
        """
    )
    call = [c for c in analysis.index.calls if c.dotted == "use"][-1]
    found = [analysis.shapes.batched_model_output(a.value, call.scope, call.order) for a in call.node.args]
    assert [f is not None for f in found] == [True, False, False]
