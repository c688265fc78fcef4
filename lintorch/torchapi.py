"""Facts about the PyTorch API that rules share, keyed by canonical qualified
names (``torch.nn.CrossEntropyLoss``, ``torch.nn.functional.softmax``).

Nothing here imports torch: these are names, not objects.
"""

import re
from typing import Optional

_MODULES_PATH = re.compile(r"^torch\.nn\.modules\.(?:[a-z_0-9]+\.)?([A-Za-z_0-9]+)$")
_SUBMODULE_ALIASES = (
    (re.compile(r"^torch\.utils\.data\.(?:dataloader|dataset|sampler|distributed)\.(\w+)$"), "torch.utils.data."),
    (re.compile(r"^torch\.optim\.(?!lr_scheduler)(?:[a-z_0-9]+)\.([A-Z]\w*)$"), "torch.optim."),
    (re.compile(r"^torch\.nn\.parallel\.(?:[a-z_0-9]+)\.(\w+)$"), "torch.nn.parallel."),
)


def canonical(qualname: Optional[str]) -> Optional[str]:
    """Collapse implementation paths onto the public name users import."""
    if qualname is None:
        return None
    match = _MODULES_PATH.match(qualname)
    if match:
        return "torch.nn." + match.group(1)
    for pattern, prefix in _SUBMODULE_ALIASES:
        match = pattern.match(qualname)
        if match:
            return prefix + match.group(1)
    if qualname.startswith("torch.nn.functional.") or qualname.startswith("torch.special."):
        return qualname
    return qualname


# Output activations -------------------------------------------------------

SOFTMAX_FUNCS = frozenset({"torch.softmax", "torch.nn.functional.softmax", "torch.special.softmax"})
SIGMOID_FUNCS = frozenset(
    {"torch.sigmoid", "torch.nn.functional.sigmoid", "torch.special.expit"}
)
LOG_SOFTMAX_FUNCS = frozenset(
    {"torch.log_softmax", "torch.nn.functional.log_softmax", "torch.special.log_softmax"}
)
SOFTMAX_MODULES = frozenset({"torch.nn.Softmax", "torch.nn.Softmax2d"})
SIGMOID_MODULES = frozenset({"torch.nn.Sigmoid"})
LOG_SOFTMAX_MODULES = frozenset({"torch.nn.LogSoftmax"})

#: Tensor methods spelled like the functions above: ``x.softmax(1)``.
ACTIVATION_METHODS = {"softmax": "softmax", "sigmoid": "sigmoid", "log_softmax": "log_softmax", "tanh": "tanh"}

# Losses -------------------------------------------------------------------

CROSS_ENTROPY_MODULES = frozenset({"torch.nn.CrossEntropyLoss"})
CROSS_ENTROPY_FUNCS = frozenset({"torch.nn.functional.cross_entropy"})
NLL_MODULES = frozenset({"torch.nn.NLLLoss"})
NLL_FUNCS = frozenset({"torch.nn.functional.nll_loss"})
BCE_MODULES = frozenset({"torch.nn.BCELoss", "torch.nn.BCEWithLogitsLoss"})
BCE_FUNCS = frozenset(
    {
        "torch.nn.functional.binary_cross_entropy",
        "torch.nn.functional.binary_cross_entropy_with_logits",
        "torch.binary_cross_entropy_with_logits",
    }
)
ONE_HOT_FUNCS = frozenset({"torch.nn.functional.one_hot"})

#: Single-label classification datasets of torchvision whose items are
#: ``(image, class index)``, with their number of classes.
CLASSIFICATION_DATASET_CLASSES = {
    "torchvision.datasets." + name: classes
    for name, classes in (
        ("MNIST", 10), ("FashionMNIST", 10), ("KMNIST", 10), ("QMNIST", 10), ("USPS", 10), ("SVHN", 10),
        ("CIFAR10", 10), ("CIFAR100", 100), ("STL10", 10), ("GTSRB", 43), ("EuroSAT", 10), ("DTD", 47),
        ("Food101", 101), ("Flowers102", 102), ("StanfordCars", 196), ("Country211", 211), ("ImageNet", 1000),
    )
}

# Containers and layers ------------------------------------------------------

SEQUENTIAL = frozenset({"torch.nn.Sequential"})
LINEAR = frozenset({"torch.nn.Linear", "torch.nn.LazyLinear"})
MODULE_BASES = frozenset({"torch.nn.Module"})
#: Lightning's module class: an ``nn.Module`` whose ``self(x)`` runs ``forward``.
LIGHTNING_MODULES = frozenset(
    {
        "pytorch_lightning.LightningModule", "pytorch_lightning.core.LightningModule",
        "pytorch_lightning.core.module.LightningModule", "lightning.LightningModule",
        "lightning.pytorch.LightningModule", "lightning.pytorch.core.LightningModule",
        "lightning.pytorch.core.module.LightningModule",
    }
)

# Data ---------------------------------------------------------------------

TORCH_DATALOADER = frozenset({"torch.utils.data.DataLoader"})

# Optimisation --------------------------------------------------------------

OPTIMIZER_PREFIX = "torch.optim."
LR_SCHEDULER_PREFIX = "torch.optim.lr_scheduler."
GRAD_SCALERS = frozenset(
    {"torch.cuda.amp.GradScaler", "torch.amp.GradScaler", "torch.cpu.amp.GradScaler", "torch.amp.grad_scaler.GradScaler"}
)

#: Methods that return a tensor with the same values (for the purposes of
#: "what kind of values flow here"), so analysis looks through them.
VALUE_PRESERVING_METHODS = frozenset(
    {
        "float", "double", "half", "bfloat16", "to", "cuda", "cpu", "type", "type_as",
        "squeeze", "unsqueeze", "view", "view_as", "reshape", "reshape_as", "flatten",
        "contiguous", "clone", "permute", "transpose", "long", "int", "detach", "requires_grad_",
    }
)

# Added for LT103-LT107, LT601, LT602 -----------------------------------------

TANH_FUNCS = frozenset({"torch.tanh", "torch.nn.functional.tanh"})
TANH_MODULES = frozenset({"torch.nn.Tanh"})

BCE_WITH_LOGITS_MODULES = frozenset({"torch.nn.BCEWithLogitsLoss"})
BCE_WITH_LOGITS_FUNCS = frozenset(
    {"torch.nn.functional.binary_cross_entropy_with_logits", "torch.binary_cross_entropy_with_logits"}
)

#: Element-wise regression losses whose targets must lie in the output's range.
REGRESSION_LOSS_MODULES = frozenset(
    {"torch.nn.MSELoss", "torch.nn.L1Loss", "torch.nn.SmoothL1Loss", "torch.nn.HuberLoss"}
)
REGRESSION_LOSS_FUNCS = frozenset(
    {
        "torch.nn.functional.mse_loss",
        "torch.nn.functional.l1_loss",
        "torch.nn.functional.smooth_l1_loss",
        "torch.nn.functional.huber_loss",
    }
)

#: Softmax-family APIs whose ``dim`` is optional (implicit dim, deprecated).
#: ``torch.softmax(x)`` and ``x.softmax()`` require ``dim`` and raise instead.
IMPLICIT_DIM_SOFTMAX_FUNCS = frozenset(
    {"torch.nn.functional.softmax", "torch.nn.functional.log_softmax", "torch.nn.functional.softmin"}
)
IMPLICIT_DIM_SOFTMAX_MODULES = frozenset({"torch.nn.Softmax", "torch.nn.LogSoftmax", "torch.nn.Softmin"})
LOG_FUNCS = frozenset({"torch.log"})

NN_INIT_CONSTANT = frozenset(
    {
        "torch.nn.init.constant_", "torch.nn.init.zeros_", "torch.nn.init.ones_",
        "torch.nn.init.constant", "torch.nn.init.zeros", "torch.nn.init.ones",
    }
)
#: Layers whose ``weight`` is a matrix mixing features: constant values there
#: make every unit compute the same thing.
WEIGHT_LAYERS = frozenset(
    {
        "torch.nn.Linear", "torch.nn.LazyLinear", "torch.nn.Bilinear",
        "torch.nn.Conv1d", "torch.nn.Conv2d", "torch.nn.Conv3d",
        "torch.nn.ConvTranspose1d", "torch.nn.ConvTranspose2d", "torch.nn.ConvTranspose3d",
        "torch.nn.LazyConv1d", "torch.nn.LazyConv2d", "torch.nn.LazyConv3d",
    }
)
NORM_LAYERS = frozenset(
    {
        "torch.nn.BatchNorm1d", "torch.nn.BatchNorm2d", "torch.nn.BatchNorm3d", "torch.nn.SyncBatchNorm",
        "torch.nn.LazyBatchNorm1d", "torch.nn.LazyBatchNorm2d", "torch.nn.LazyBatchNorm3d",
        "torch.nn.LayerNorm", "torch.nn.GroupNorm", "torch.nn.RMSNorm", "torch.nn.LocalResponseNorm",
        "torch.nn.InstanceNorm1d", "torch.nn.InstanceNorm2d", "torch.nn.InstanceNorm3d",
    }
)
#: Modules with no parameters that pass a layer's output on (activations,
#: dropout, pooling, reshaping): a layer followed only by these is final.
PASS_THROUGH_MODULES = frozenset(
    {
        "torch.nn.ReLU", "torch.nn.ReLU6", "torch.nn.LeakyReLU", "torch.nn.ELU", "torch.nn.SELU",
        "torch.nn.CELU", "torch.nn.GELU", "torch.nn.SiLU", "torch.nn.Mish", "torch.nn.Sigmoid",
        "torch.nn.Tanh", "torch.nn.Softmax", "torch.nn.LogSoftmax", "torch.nn.Softplus", "torch.nn.Hardtanh",
        "torch.nn.Hardswish", "torch.nn.Hardsigmoid", "torch.nn.Dropout", "torch.nn.Dropout1d",
        "torch.nn.Dropout2d", "torch.nn.Dropout3d", "torch.nn.AlphaDropout", "torch.nn.Identity",
        "torch.nn.Flatten", "torch.nn.Unflatten", "torch.nn.MaxPool1d", "torch.nn.MaxPool2d",
        "torch.nn.AvgPool1d", "torch.nn.AvgPool2d", "torch.nn.AdaptiveAvgPool1d", "torch.nn.AdaptiveAvgPool2d",
        "torch.nn.AdaptiveMaxPool2d", "torch.nn.PReLU",
    }
)

#: Modules whose forward is one autograd operation: a legacy backward hook
#: on them sees the right gradients (guided backprop on ``nn.ReLU``).
SINGLE_OP_MODULES = (PASS_THROUGH_MODULES - {"torch.nn.Identity"}) | frozenset(
    {
        "torch.nn.Conv1d", "torch.nn.Conv2d", "torch.nn.Conv3d", "torch.nn.MaxPool3d", "torch.nn.AvgPool3d",
        "torch.nn.Linear", "torch.nn.BatchNorm1d", "torch.nn.BatchNorm2d", "torch.nn.BatchNorm3d",
        "torch.nn.Embedding",
    }
)

# Optimisation-loop rules (LT2xx) -------------------------------------------

#: Optimisers that scale each step by a running gradient statistic, so their
#: useful learning rates are around 1e-3 (``Adadelta``, default lr 1.0, is not one).
ADAPTIVE_OPTIMIZERS = frozenset(
    {
        "torch.optim.Adam", "torch.optim.AdamW", "torch.optim.RMSprop", "torch.optim.Adagrad",
        "torch.optim.Adamax", "torch.optim.NAdam", "torch.optim.RAdam", "torch.optim.SparseAdam",
    }
)
#: Schedulers whose schedule is naturally counted in epochs.
EPOCH_SCHEDULERS = frozenset(
    {
        "torch.optim.lr_scheduler.StepLR", "torch.optim.lr_scheduler.MultiStepLR",
        "torch.optim.lr_scheduler.ExponentialLR", "torch.optim.lr_scheduler.CosineAnnealingLR",
    }
)
#: Schedulers that replace the optimiser's lr from their first step on
#: (a warm-up, a cycle or a multiplier), so a large base lr is not used as is.
LR_OVERRIDING_SCHEDULERS = frozenset(
    {
        "torch.optim.lr_scheduler.LambdaLR", "torch.optim.lr_scheduler.MultiplicativeLR",
        "torch.optim.lr_scheduler.OneCycleLR", "torch.optim.lr_scheduler.CyclicLR",
        "torch.optim.lr_scheduler.LinearLR", "torch.optim.lr_scheduler.ConstantLR",
        "torch.optim.lr_scheduler.SequentialLR", "torch.optim.lr_scheduler.ChainedScheduler",
    }
)
REDUCE_ON_PLATEAU = "torch.optim.lr_scheduler.ReduceLROnPlateau"
#: Context managers / decorators that turn gradient recording off.
GRAD_DISABLING = frozenset({"torch.no_grad", "torch.inference_mode", "torch.autograd.grad_mode.no_grad",
                            "torch.autograd.grad_mode.inference_mode", "torch.autograd.no_grad"})
GRAD_ENABLING = frozenset({"torch.enable_grad", "torch.autograd.grad_mode.enable_grad", "torch.autograd.enable_grad"})
SET_GRAD_ENABLED = frozenset({"torch.set_grad_enabled", "torch.autograd.grad_mode.set_grad_enabled",
                              "torch.autograd.set_grad_enabled"})

# Train/eval mode (LT3xx) -----------------------------------------------------

#: Context managers (called) and decorators under which no graph is built.
NO_GRAD_CONTEXTS = frozenset(
    {
        "torch.no_grad", "torch.inference_mode", "torch.autograd.no_grad",
        "torch.autograd.grad_mode.no_grad", "torch.autograd.grad_mode.inference_mode",
        "torch.autograd.inference_mode",
    }
)
SET_GRAD_ENABLED = frozenset({"torch.set_grad_enabled", "torch.autograd.set_grad_enabled", "torch.autograd.grad_mode.set_grad_enabled"})

#: Layers that behave differently in train() and eval() mode.
MODE_DEPENDENT_LAYERS = frozenset(
    {
        "torch.nn.Dropout", "torch.nn.Dropout1d", "torch.nn.Dropout2d", "torch.nn.Dropout3d",
        "torch.nn.AlphaDropout", "torch.nn.FeatureAlphaDropout",
        "torch.nn.BatchNorm1d", "torch.nn.BatchNorm2d", "torch.nn.BatchNorm3d", "torch.nn.SyncBatchNorm",
        "torch.nn.LazyBatchNorm1d", "torch.nn.LazyBatchNorm2d", "torch.nn.LazyBatchNorm3d",
        "torch.nn.Transformer", "torch.nn.TransformerEncoder", "torch.nn.TransformerDecoder",
        "torch.nn.TransformerEncoderLayer", "torch.nn.TransformerDecoderLayer",
    }
)
#: torch.nn layers whose mode dependence is a ``dropout=`` argument (default 0).
DROPOUT_ARGUMENT_LAYERS = frozenset(
    {"torch.nn.LSTM", "torch.nn.GRU", "torch.nn.RNN", "torch.nn.MultiheadAttention"}
)
#: torch.nn containers whose layers are their arguments.
MODULE_CONTAINERS = frozenset({"torch.nn.Sequential", "torch.nn.ModuleList", "torch.nn.ModuleDict"})
#: Model zoos whose models (nearly) all contain dropout or batch norm.
#: Calls that return (a wrapper of) the module passed as their first
#: argument: the wrapped model keeps its layers and output activation.
MODULE_WRAPPERS = frozenset(
    {
        "torch.nn.DataParallel", "torch.nn.parallel.DataParallel", "torch.nn.parallel.DistributedDataParallel",
        "torch.nn.DistributedDataParallel", "torch.compile", "torch.nn.utils.weight_norm",
        "torch.nn.utils.spectral_norm", "torch.nn.utils.parametrizations.weight_norm",
        "torch.nn.utils.parametrizations.spectral_norm", "torch.nn.utils.parametrizations.orthogonal",
        "torch.nn.SyncBatchNorm.convert_sync_batchnorm", "torch.jit.script",
    }
)
#: Methods that hand back the objects they are given, in order, ready for
#: the device or precision (``model, opt = accelerator.prepare(model, opt)``),
#: keyed by the class of their receiver.
ARGUMENT_RETURNING_METHODS = {
    "accelerate.Accelerator": "prepare",
    "lightning.Fabric": "setup",
    "lightning.fabric.Fabric": "setup",
    "lightning_fabric.Fabric": "setup",
}
#: Functions that do the same (``model, opt = amp.initialize(model, opt)``).
ARGUMENT_RETURNING_FUNCS = frozenset({"apex.amp.initialize"})
#: Wrappers whose own ``forward`` does their work (scatter, gather, sync).
DATA_PARALLEL = frozenset(
    {
        "torch.nn.DataParallel", "torch.nn.parallel.DataParallel", "torch.nn.parallel.DistributedDataParallel",
        "torch.nn.DistributedDataParallel",
    }
)
MODEL_ZOO_PREFIXES = ("torchvision.models.", "timm.", "transformers.", "torch.hub.load")

DROPOUT_FUNCS = frozenset(
    {
        "torch.nn.functional.dropout", "torch.nn.functional.dropout1d", "torch.nn.functional.dropout2d",
        "torch.nn.functional.dropout3d", "torch.nn.functional.alpha_dropout",
        "torch.nn.functional.feature_alpha_dropout",
    }
)

# Data pipeline (LT5xx) ---------------------------------------------------------

TO_TENSOR = frozenset({"torchvision.transforms.ToTensor", "torchvision.transforms.v2.ToTensor", "torchvision.transforms.transforms.ToTensor"})
COMPOSE = frozenset({"torchvision.transforms.Compose", "torchvision.transforms.v2.Compose", "torchvision.transforms.transforms.Compose"})
#: Functions that return a torch tensor.
TENSOR_FACTORIES = frozenset(
    {
        "torch.tensor", "torch.as_tensor", "torch.from_numpy", "torch.rand", "torch.randn", "torch.randint",
        "torch.zeros", "torch.ones", "torch.empty", "torch.full", "torch.arange", "torch.linspace",
        "torch.stack", "torch.cat", "torch.rand_like", "torch.randn_like", "torch.zeros_like",
        "torch.ones_like", "torch.empty_like", "torch.Tensor", "torch.FloatTensor", "torch.LongTensor",
    }
)
TENSOR_DATASET = frozenset({"torch.utils.data.TensorDataset"})
ITERABLE_DATASETS = frozenset({"torch.utils.data.IterableDataset", "torch.utils.data.IterDataPipe"})
DATASET_BASES = frozenset({"torch.utils.data.Dataset"})
#: numpy generator objects: a copy of one in every worker repeats its stream.
NUMPY_GENERATORS = frozenset(
    {"numpy.random.default_rng", "numpy.random.RandomState", "numpy.random.Generator"}
)
