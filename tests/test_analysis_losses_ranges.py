"""Losses and value-range facts (lintorch.analyze.losses, lintorch.analyze.ranges)."""

import libcst as cst
import pytest

from conftest import analysis_of as build


def log_operands(analysis):
    """(operand source, activation kind or None) for every torch.log(...) call."""
    out = []
    for call in analysis.index.calls:
        if call.qualname == "torch.log":
            operand = call.arg(0)
            found = analysis.losses.probability_activation(operand, call.scope, call.order)
            out.append((analysis.index.module.code_for_node(operand), found.kind if found else None))
    return out


def test_probability_activation_sees_through_selections():
    analysis = build(
        """
        import torch
        import torch.nn.functional as F

        probs = F.softmax(logits, dim=1)
        picked = torch.gather(probs, 1, a).squeeze(1)
        counts = hist / hist.sum()
        torch.log(torch.gather(probs, 1, a))
        torch.log(picked)
        torch.log(probs.index_select(0, idx)[:, 0])
        torch.log(torch.gather(counts, 0, a))
        torch.log(picked.clamp(min=1e-8))
        """
    )
    assert log_operands(analysis) == [
        ("torch.gather(probs, 1, a)", "softmax"),
        ("picked", "softmax"),
        ("probs.index_select(0, idx)[:, 0]", "softmax"),
        ("torch.gather(counts, 0, a)", None),
        ("picked.clamp(min=1e-8)", None),
    ]


@pytest.mark.parametrize(
    "definition, expected",
    [
        ("X = torch.rand(200, 3) * 500\ny = X.sum(dim=1)", (0.0, 1500.0)),
        ("y = torch.sum(torch.rand(10, 4), 1)", (0.0, 4.0)),
        ("y = torch.randn(10, 3).sum(1)", (-3.0, 3.0)),
        ("y = torch.rand(10, k).sum(1) * 500", (0.0, 500.0)),  # count unknown: at least one term
        ("y = torch.randn(10, k).sum(1)", None),  # mixed signs may cancel
        ("y = torch.rand(10, 1).mul(500).add(3)", (3.0, 503.0)),
        ("y = torch.mul(torch.rand(10), 4)", (0.0, 4.0)),
        ("y = torch.add(torch.rand(10), torch.rand(10), alpha=3)", None),
        ("y = torch.rand(10, 3) @ torch.tensor([[2.0], [3.0], [1.0]])", (0.0, 9.0)),
        ("a = torch.rand(10) * 500\nb = torch.rand(10) * 20\ny = a * 3 + b", (0.0, 1520.0)),
        ("y = torch.rand(10, 5).mean(1) * 500", (0.0, 500.0)),
        ("y = torch.rand(10) * 5\ny = y / y.sum()", None),
        ("y = torch.rand(10) * 5 + 1\ny = (y - y.mean()) / y.std()", None),
    ],
)
def test_value_range_of_arithmetic_and_reductions(definition, expected):
    analysis = build("import torch\n" + definition + "\nuse(y)\n")
    call = [c for c in analysis.index.calls if c.dotted == "use"][-1]
    got = analysis.ranges.value_range(call.node.args[0].value, call.scope, call.order)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_value_range_through_a_dataset_class():
    analysis = build(
        """
        import torch
        from torch.utils.data import DataLoader, Dataset

        class Houses(Dataset):
            def __init__(self, n):
                self.x = torch.rand(n, 3)
                self.y = self.x[:, :1] * 500 + 20

            def __len__(self):
                return len(self.x)

            def __getitem__(self, i):
                return self.x[i], self.y[i]

        for xb, yb in DataLoader(Houses(100), batch_size=10, shuffle=True):
            use(xb, yb)
        """
    )
    call = [c for c in analysis.index.calls if c.dotted == "use"][-1]
    ranges = [analysis.ranges.value_range(a.value, call.scope, call.order) for a in call.node.args]
    assert ranges == [(0.0, 1.0), (20.0, 520.0)]


def test_batch_item_and_label_classes():
    analysis = build(
        """
        import torch
        from torch.utils.data import DataLoader, TensorDataset
        from torchvision import datasets

        mnist = datasets.MNIST("data", train=True)
        labels = torch.randint(0, 5, (100,))
        for i, (x, y) in enumerate(DataLoader(mnist, batch_size=8)):
            use(x, y)
        for xb, yb in DataLoader(TensorDataset(torch.randn(100, 3), labels), batch_size=8):
            use(xb, yb)
        for a, b in pairs:
            use(a, b)
        """
    )
    uses = [c for c in analysis.index.calls if c.dotted == "use"]
    items = [analysis.data.batch_item(a.value, c.scope, c.order) for c in uses for a in c.node.args]
    assert [item.position if item else None for item in items] == [0, 1, 0, 1, None, None]
    classes = [analysis.losses.label_classes(a.value, c.scope, c.order) for c in uses for a in c.node.args]
    assert [found[0] if found else None for found in classes] == [None, 10, None, 5, None, None]


def test_model_output_and_argmax_prediction():
    analysis = build(
        """
        import torch
        import torch.nn as nn

        net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 6))
        for x, y in loader:
            out = net(x)
            probs = torch.sigmoid(out).squeeze(1)
            _, predicted = torch.max(out.data, 1)
            accuracy = (predicted == y).float().mean()
            top = probs.argmax(0)
        """
    )
    call = next(c for c in analysis.index.calls if c.dotted == "net")
    probs = next(c for c in analysis.index.calls if c.dotted == "use" or c.method == "argmax")
    assert analysis.losses.model_output(cst.Name("probs"), probs.scope, probs.order) is call
    assert analysis.losses.model_output_width(call) == 6
    prediction = analysis.losses.argmax_prediction(call)
    assert analysis.index.module.code_for_node(prediction) == "torch.max(out.data, 1)"


def test_loss_value_and_backpropagated_bindings():
    analysis = build(
        """
        import torch.nn.functional as F

        for x, y in train_loader:
            loss = F.cross_entropy(model(x), y)
            loss += 0.01 * penalty
            loss.backward()
        for x, y in test_loader:
            loss = F.cross_entropy(model(x), y)
            scaled = loss / 4
            use(loss, scaled)
        """
    )
    index = analysis.index
    use = [c for c in index.calls if c.dotted == "use"][-1]
    backward = next(c for c in index.calls if c.method == "backward")
    trained = analysis.losses.loss_value(cst.Name("loss"), backward.scope, backward.order)
    evaluated = analysis.losses.loss_value(cst.Name("loss"), use.scope, use.order)
    scaled = analysis.losses.loss_value(cst.Name("scaled"), use.scope, use.order)
    losses = [c for c in index.calls if c.dotted == "F.cross_entropy"]
    assert trained[0] is losses[0] and [b.kind for b in trained[1]] == ["augassign", "assign"]
    assert evaluated[0] is losses[1] and scaled[0] is losses[1]
    backpropagated = analysis.optim.backpropagated_bindings(index.module_scope)
    assert all(id(b) in backpropagated for b in trained[1])
    assert not any(id(b) in backpropagated for b in evaluated[1])
