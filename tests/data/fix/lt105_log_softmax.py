import torch
import torch.nn.functional as F


def log_probs(model, x, y):
    a = torch.log(torch.softmax(model(x), dim=1))
    b = model(x).softmax(1).log()  # method spelling
    c = torch.log(  # spread over lines
        F.softmax(model(x), dim=-1)
    )
    probs = F.softmax(model(x), dim=1)
    d = torch.log(probs)  # through a variable: no fix
    e = torch.log(F.softmax(model(x), dim=1).gather(1, y))  # a selection: no fix
    f = torch.log(torch.softmax(model(x), dim=1)[:, -1])  # a selection: no fix
    return a, b, c, d, e, f
