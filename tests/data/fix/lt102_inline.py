import torch
import torch.nn as nn
import torch.nn.functional as F

criterion = nn.CrossEntropyLoss()


def train_step(model, x, y):
    logits = model(x)
    # the loss wants raw logits
    loss = criterion(torch.softmax(logits, dim=1), y)  # keep this comment
    extra = F.cross_entropy(
        F.softmax(logits + 0.0, dim=-1).float(),  # and this one
        y,
    )
    return loss + extra
