import torch.nn as nn

model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
grad_norms = []


def record(module, grad_input, grad_output):
    grad_norms.append(grad_output[0].norm().item())


handle = model[2].register_backward_hook(record)
model[0].register_backward_hook(  # the first layer too
    record
)
nn.modules.module.register_module_backward_hook(record)
