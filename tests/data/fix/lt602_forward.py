import torch.nn as nn

model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))


def predict(batch):
    return model.forward(batch).argmax(dim=1)


class Wrapper(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(8, 2)

    def forward(self, x):
        return self.inner.forward(x)  # inside a module's own forward: not flagged


scores = model.forward(  # keep
    features
)
