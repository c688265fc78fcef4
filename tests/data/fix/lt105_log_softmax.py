import torch
import torch.nn.functional as F


def log_probs(model, x):
    a = torch.log(torch.softmax(model(x), dim=1))
    b = model(x).softmax(1).log()  # method spelling
    c = torch.log(  # spread over lines
        F.softmax(model(x), dim=-1)
    )
    probs = F.softmax(model(x), dim=1)
    d = torch.log(probs)  # through a variable: no fix
    return a, b, c, d
