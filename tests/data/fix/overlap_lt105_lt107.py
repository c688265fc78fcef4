import torch
import torch.nn.functional as F


def scores(logits):
    # two findings on one expression: LT105 (safe) then LT107 (unsafe)
    return torch.log(F.softmax(logits))
