"""Data-domain facts (lintorch.analyze.data): rows permuted once."""

from conftest import analysis_of as build


def test_permuted_once():
    analysis = build(
        """
        import numpy as np
        import torch
        from sklearn.model_selection import train_test_split
        from torch.utils.data import Dataset, Subset, TensorDataset, random_split

        class MyDataset(Dataset):
            def __init__(self, x, y):
                self.x, self.y = x, y

        a_train, a_test = train_test_split(a, test_size=0.2)
        b_train, b_test = train_test_split(b, test_size=0.2, shuffle=False)
        part, rest = random_split(full, [80, 20])
        perm = torch.randperm(100)
        idx = list(range(100))
        np.random.shuffle(idx)
        use(
            TensorDataset(torch.tensor(a_train).float(), y),
            TensorDataset(torch.tensor(b_train), y),
            part,
            x[perm[:80]],
            Subset(full, idx),
            Subset(full, range(80)),
            frame.sample(frac=1).values,
            MyDataset(a_train, y),
            x,
        )
        """
    )
    call = [c for c in analysis.index.calls if c.dotted == "use"][-1]
    found = [analysis.data.permuted_once(a.value, call.scope, call.order) is not None for a in call.node.args]
    assert found == [True, False, True, True, True, False, True, True, False]


def test_permuted_rows_through_a_local_helper_and_drawn_once():
    analysis = build(
        """
        from sklearn.model_selection import train_test_split
        from torch.utils.data import DataLoader, TensorDataset

        def prepare(rows, targets):
            return rows / 255, targets

        x_fit, x_val, y_fit, y_val = train_test_split(x, y)
        px, py = prepare(x_fit, y_fit)
        qx, qy = prepare(x, y)
        use(TensorDataset(px, py), TensorDataset(qx, qy))

        demo_loader = DataLoader(data, batch_size=8)
        images, labels = next(iter(demo_loader))
        epoch_loader = DataLoader(data, batch_size=8)
        first = next(iter(epoch_loader))
        for batch in epoch_loader:
            pass
        """
    )
    call = [c for c in analysis.index.calls if c.dotted == "use"][-1]
    found = [analysis.data.permuted_once(a.value, call.scope, call.order) is not None for a in call.node.args]
    assert found == [True, False]
    assert analysis.data.drawn_once(["demo_loader"])
    assert not analysis.data.drawn_once(["epoch_loader"])
