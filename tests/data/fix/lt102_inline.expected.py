import torch
import torch.nn as nn
import torch.nn.functional as F

criterion = nn.CrossEntropyLoss()


def train_step(model, x, y):
    logits = model(x)
    # the loss wants raw logits
    loss = criterion(logits, y)  # keep this comment
    extra = F.cross_entropy(
        (logits + 0.0).float(),  # and this one
        y,
    )
    return loss + extra
