"""Models and value-range facts: value ranges,
final layers, module instances, batch sources and enclosing blocks."""

import textwrap

import libcst as cst
import pytest

from lintorch.analysis import Analysis
from lintorch.index import ModuleIndex


def index_of(source: str) -> Analysis:
    return Analysis(ModuleIndex(cst.parse_module(textwrap.dedent(source))))


def last_call(analysis: Analysis, dotted: str):
    return [c for c in analysis.index.calls if c.dotted == dotted][-1]


@pytest.mark.parametrize(
    "definition, expected",
    [
        ("X = torch.randn(10, 1)\ny = 2 * X + 1", (-1.0, 3.0)),
        ("y = torch.rand(10, 1)", (0.0, 1.0)),
        ("y = torch.tensor([[3.0], [7.5], [-2.0]])", (-2.0, 7.5)),
        ("y = torch.randint(0, 10, (64,)).float()", (0.0, 9.0)),
        ("y = torch.linspace(-5, 5, 100) ** 2", (0.0, 25.0)),
        ("t = torch.arange(100)\ny = torch.sin(t) * 3", (-3.0, 3.0)),
        ("y = torch.from_numpy(np.random.uniform(2, 4, size=10))", (2.0, 4.0)),
        ("y = torch.tensor(MinMaxScaler().fit_transform(raw))", (0.0, 1.0)),
        ("y = torch.tensor(StandardScaler().fit_transform(raw))", None),
        ("s = MinMaxScaler(feature_range=(-1, 1))\ny = s.fit_transform(raw)", (-1.0, 1.0)),
        ("y = raw / 255", None),
        ("y = torch.randn(10)\ny = (y - y.min()) / (y.max() - y.min())", None),
        ("y = torch.randn(10)\ny.div_(10)", None),
    ],
)
def test_value_range(definition, expected):
    source = "import numpy as np\nimport torch\nfrom sklearn.preprocessing import MinMaxScaler\n" + definition + "\nuse(y)\n"
    analysis = index_of(source)
    call = last_call(analysis, "use")
    got = analysis.ranges.value_range(call.node.args[0].value, call.scope, call.order)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


def test_value_range_through_tensordataset_batches():
    analysis = index_of(
        """
        import torch
        from torch.utils.data import DataLoader, TensorDataset
        X = torch.randn(100, 3)
        y = torch.tensor([[10.0], [20.0]])
        loader = DataLoader(TensorDataset(X, y), batch_size=8)
        for xb, yb in loader:
            use(yb)
        """
    )
    call = last_call(analysis, "use")
    assert analysis.ranges.value_range(call.node.args[0].value, call.scope, call.order) == (10.0, 20.0)


def test_final_layer_attrs_follow_residuals_and_activations():
    analysis = index_of(
        """
        import torch
        import torch.nn as nn
        import torch.nn.functional as F

        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1 = nn.Linear(4, 8)
                self.act = nn.GELU()
                self.fc2 = nn.Linear(8, 4)
                self.head = nn.Linear(4, 2)

            def forward(self, x):
                h = self.act(self.fc1(x))
                x = x + self.fc2(h)
                return torch.sigmoid(self.head(x)), F.relu(self.fc2(h))
        """
    )
    klass = analysis.index.classes[0]
    assert analysis.models.final_layer_attrs(klass) == {"fc2", "head"}
    assert analysis.models.class_weight_layer_count(klass) == 3


def test_final_layer_attrs_unknown_through_loops():
    analysis = index_of(
        """
        import torch.nn as nn

        class Deep(nn.Module):
            def forward(self, x):
                for layer in self.layers:
                    x = layer(x)
                return x
        """
    )
    assert analysis.models.final_layer_attrs(analysis.index.classes[0]) is None


def test_module_instance_and_batch_source():
    analysis = index_of(
        """
        import torch
        import torch.nn as nn

        class Net(nn.Module):
            pass

        class Plain:
            pass

        net = Net().to("cpu")
        plain = Plain()
        for x, y in train_loader:
            net(x)
            plain(x)
        net(torch.randn(32, 4))
        net(torch.randn(4))
        """
    )
    calls = [c for c in analysis.index.calls if c.dotted in ("net", "plain")]
    net_loop, plain_loop, net_batch, net_vector = calls
    assert analysis.models.module_instance(net_loop.node.func, net_loop.scope, net_loop.order) is not None
    assert analysis.models.module_instance(plain_loop.node.func, plain_loop.scope, plain_loop.order) is None
    assert analysis.data.batch_source(net_loop.node.args[0].value, net_loop.scope, net_loop.order) is not None
    assert analysis.data.batch_source(net_batch.node.args[0].value, net_batch.scope, net_batch.order) is not None
    assert analysis.data.batch_source(net_vector.node.args[0].value, net_vector.scope, net_vector.order) is None


def test_enclosing_blocks():
    analysis = index_of(
        """
        def init(m):
            if isinstance(m, nn.Linear):
                for p in m.parameters():
                    touch(p)
            else:
                other(m)
        """
    )
    touch = last_call(analysis, "touch")
    other = last_call(analysis, "other")
    kinds = [(type(node).__name__, branch) for node, branch in analysis.values.enclosing_blocks(touch)]
    assert kinds == [("If", "body"), ("For", "body")]
    assert [(type(n).__name__, b) for n, b in analysis.values.enclosing_blocks(other)] == [("If", "orelse")]


def test_output_width():
    analysis = index_of(
        """
        import torch.nn as nn
        import torchvision

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Linear(8, 32)
                self.classifier = nn.Linear(32, 7)

            def forward(self, x):
                return self.classifier(self.body(x).relu())

        a = nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1))
        b = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1), nn.Dropout(0.1))
        c = Net()
        d = torchvision.models.resnet18(num_classes=2)
        e = torchvision.models.resnet18()
        use(a, b, c, d, e)
        """
    )
    call = last_call(analysis, "use")
    widths = [
        analysis.models.output_width(analysis.models.module_instance(arg.value, call.scope, call.order)) for arg in call.node.args
    ]
    assert widths == [3, 1, 7, 2, 1000]
