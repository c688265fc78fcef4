"""The one home of naming heuristics.

Code says what a value is through its construction when that is visible;
when it is not (a parameter of unknown type, an object from another
module), its name is the remaining evidence. Every word list lintorch uses
lives here so that all domains and rules read names the same way. Names may
raise or lower confidence; the domains decide whether a name alone may gate
a finding (a validation pass, for instance, is recognised by behaviour).

Each function takes the last component of a dotted name (``val_loader``
for ``self.val_loader``) unless it says otherwise.
"""

import re
from typing import Optional

# -- models -----------------------------------------------------------------

#: Names that say "a network": ``model``, ``net``, ``resnet``, ``backbone``.
_MODEL = re.compile(
    r"^(?:model|net|network|classifier|clf|encoder|decoder|backbone|generator|discriminator|student|module)$"
    r"|model$|net$",
    re.I,
)
#: Names that say "not a network", even when they end in a model word.
_NOT_MODEL = re.compile(r"loss|criterion|metric|optim|sched|transform|augment|loader|collate|fn$|func", re.I)
#: A second copy of the model that is deliberately left in eval mode.
_FROZEN_MODEL = re.compile(r"teacher|ema|target|frozen|pretrained|ref|momentum|shadow|averaged|swa|tgt|old", re.I)
#: Receivers of ``.train()``/``.eval()`` that are not modules (a Hugging Face
#: trainer's ``train()`` runs a whole training).
_NOT_MODULE_RECEIVER = re.compile(
    r"trainer|engine|pipeline|runner|learner|estimator|session|tuner|agent|solver", re.I
)


def is_model_name(name: str) -> bool:
    return bool(_MODEL.search(name)) and not _NOT_MODEL.search(name)


def is_not_model_name(name: str) -> bool:
    return bool(_NOT_MODEL.search(name))


def is_frozen_model_name(name: str) -> bool:
    return bool(_FROZEN_MODEL.search(name))


def is_not_module_receiver(name: str) -> bool:
    return bool(_NOT_MODULE_RECEIVER.search(name))


#: Name parts that mark an output or residual projection, where zero or
#: constant initialisation is a deliberate, well-known technique.
_OUTPUT_LAYER_WORDS = frozenset(
    {
        "last", "out", "output", "outputs", "head", "proj", "projection", "final", "classifier",
        "logits", "logit", "cls", "pred", "predictor", "prediction", "readout", "zero", "gate", "adaln",
        "modulation", "residual", "skip", "fc_out", "to_out",
    }
)


def is_output_layer_name(name: str) -> bool:
    """``head``, ``out_proj``, ``fc_out``, ``adaLN_modulation``, ``zero_conv``:
    a layer named as the output or a residual branch's projection (the name
    and each of its ``_``/digit-separated parts)."""
    lowered = name.lower()
    return bool(({lowered} | set(filter(None, re.split(r"[_\d]+", lowered)))) & _OUTPUT_LAYER_WORDS)


# -- losses -------------------------------------------------------------------

_LOSS_WORDS = ("criterion", "loss_fn", "loss_func", "lossfn", "loss_function", "criteria")


def is_loss_function_name(name: str) -> bool:
    """``criterion``, ``self.loss_fn``: a callable computing a loss."""
    lowered = name.lower()
    return any(word in lowered for word in _LOSS_WORDS)


#: Objects whose ``backward(loss)`` runs the backward pass for the user.
_BACKWARD_RUNNERS = ("accelerator", "fabric", "engine", "trainer", "strategy")


def is_backward_runner_name(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _BACKWARD_RUNNERS)


# -- optimisation -------------------------------------------------------------


def optimisation_kind(name: Optional[str]) -> Optional[str]:
    """``optimizer`` | ``scheduler`` | ``scaler`` from a receiver's name
    (``opt``, ``lr_sched``, ``grad_scaler``), when its construction is not
    visible."""
    if not name:
        return None
    last = name.rsplit(".", 1)[-1].lower()
    if "sched" in last:
        return "scheduler"
    if "scaler" in last:
        return "scaler"
    if "opt" in last:
        return "optimizer"
    return None


# -- data ---------------------------------------------------------------------

_LOADER = re.compile(r"loader|_dl$|^dl$|dataset|_ds$|^ds$|batches", re.I)
_VAL_LOADER = re.compile(
    r"^(?:val|valid|validation|test|testing|eval|evaluation|dev|holdout)_?"
    r"(?:loader|load|dataloader|dl|ds|dataset|data|set|batches|iter|iterator)s?$|(?:val|valid|test|eval)(?:_)?loader$",
    re.I,
)
_TRAIN_PREFIX = re.compile(r"^_?train", re.I)
_TRAIN_LOADER = re.compile(r"^_?train(?:ing)?_?(?:loader|dataloader|dl|data_loader)$", re.I)
_EVAL_WORD = re.compile(r"val|test|eval|dev|holdout|infer|predict|calib", re.I)

#: Words one of which a file must contain to hold a loop over data that
#: ``is_loader_name`` or a traced ``DataLoader`` recognises: rules built on
#: evaluation passes over loaders use them as trigger words.
LOADER_TRIGGERS = ("loader", "Loader", "dataset", "_dl", "_ds", " dl", " ds", "(dl", "(ds", "batches")


_BATCH_ITERABLE = re.compile(r"loader|batches|batch_iter|_dl$|^dl$", re.I)

#: ``test_iter``, ``iterator``, ``val_iterator``: a (torchtext-style) batch iterator.
_ITERATOR = re.compile(r"(?:^|_)iter(?:ator)?s?$|^iter_|iterator", re.I)
ITERATOR_TRIGGERS = ("_iter", "iter_", "iterator", "Iterator")

#: Values of a split or phase variable (``loaders["valid"]``, ``phase == "val"``).
_EVAL_SPLIT = re.compile(r"^(?:val|valid|validation|test|testing|eval|evaluation|dev|holdout)$", re.I)
_TRAIN_SPLIT = re.compile(r"^train(?:ing)?$", re.I)
#: A boolean that says "this pass trains": ``is_train``, ``training``, ``train_mode``.
_TRAIN_FLAG = re.compile(r"^(?:is_)?train(?:ing)?(?:_mode|_phase)?$", re.I)


#: Latent noise fed to a generator: ``fixed_noise``, ``z``, ``static_z``, ``latent``.
_NOISE = re.compile(r"noise|latent|^z(?:_|$)|_z$|^zs$", re.I)


def is_noise_name(name: str) -> bool:
    """``fixed_noise``, ``z``, ``static_z``, ``latent_code``: generator input, not data."""
    return bool(_NOISE.search(name))


_BATCH_FETCH = re.compile(r"batch|^next(?:_|$)", re.I)


def is_batch_fetch_name(name: str) -> bool:
    """``get_batch``, ``next_batch``, ``next``: a call that hands out the next batch."""
    return bool(_BATCH_FETCH.search(name))


def is_iterator_name(name: str) -> bool:
    """``test_iter``, ``iterator``, ``train_iter``: yields batches."""
    return bool(_ITERATOR.search(name))


def is_evaluation_split(value: str) -> bool:
    """``"val"``, ``"valid"``, ``"test"``: a split key or phase value that evaluates."""
    return bool(_EVAL_SPLIT.match(value))


def is_training_split(value: str) -> bool:
    """``"train"``, ``"training"``: a split key or phase value that trains."""
    return bool(_TRAIN_SPLIT.match(value))


def is_training_flag_name(name: str) -> bool:
    """``is_train``, ``training``, ``train_mode``: a flag that is true while training."""
    return bool(_TRAIN_FLAG.match(name))


def is_batch_iterable_name(name: str) -> bool:
    """``train_loader``, ``dl``, ``val_dl``, ``batches``: yields batches
    (a dataset, unlike a loader, yields single samples)."""
    return bool(_BATCH_ITERABLE.search(name))


def is_loader_name(name: str) -> bool:
    """``train_loader``, ``test_dl``, ``ds``, ``batches``."""
    return bool(_LOADER.search(name))


def is_validation_loader_name(name: str) -> bool:
    """``val_loader``, ``test_dl``, ``valid_data``, ``evalloader``."""
    return bool(_VAL_LOADER.search(name))


def is_training_name(name: str) -> bool:
    """``train_loader``, ``train_ds``, ``training_set``: starts with train."""
    return bool(_TRAIN_PREFIX.search(name))


def is_training_loader_name(name: str) -> bool:
    return bool(_TRAIN_LOADER.search(name))


def has_evaluation_word(name: str) -> bool:
    """``val``, ``test``, ``eval``, ``dev``, ``predict``... anywhere in it."""
    return bool(_EVAL_WORD.search(name))


# -- functions ----------------------------------------------------------------

_VAL_FUNCTION = re.compile(
    r"^_?(?:run_|do_)?(?:val|valid|validate|validation|eval|evaluate|evaluation)(?:_|$)"
    r"|^_?(?:run_|do_)?test(?:_(?:model|epoch|one_epoch|loop|net|network|accuracy))?$"
    r"|_(?:val|valid|validate|validation|eval|evaluate|evaluation)$",
    re.I,
)


def is_validation_function_name(name: str) -> bool:
    """``validate``, ``evaluate_model``, ``run_eval``, ``test_epoch``."""
    return bool(_VAL_FUNCTION.search(name))


def is_test_file_name(path: str) -> bool:
    """Unit-test files: ``test_*.py``, ``*_test.py``, ``conftest.py``."""
    name = (path or "").replace("\\", "/").rsplit("/", 1)[-1]
    return name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py"
