"""Every rule's code and name, known without importing the rules.

Selection (``select``/``ignore``, ``per-file-ignores``) and the findings
cache only need codes and names; importing the rules would import libcst,
which is most of the time of a run served entirely from the cache. The
registry checks, whenever it imports the rules, that this table lists
exactly their codes and names (``lintorch.registry.all_rules``).
"""

RULE_CODES = {
    "LT101": "bce-on-multiclass",
    "LT102": "activation-before-cross-entropy",
    "LT103": "softmax-before-nll",
    "LT104": "sigmoid-before-bce-with-logits",
    "LT105": "log-of-softmax",
    "LT106": "bounded-output-regression",
    "LT107": "softmax-dim",
    "LT201": "missing-zero-grad",
    "LT202": "zero-grad-before-step",
    "LT203": "scheduler-step-order",
    "LT204": "epoch-scheduler-per-batch",
    "LT205": "loss-kept-with-graph",
    "LT206": "backward-without-grad",
    "LT207": "graph-broken-before-loss",
    "LT208": "nothing-to-optimise",
    "LT209": "suspicious-learning-rate",
    "LT210": "scheduler-step-metric",
    "LT301": "eval-without-eval-mode",
    "LT302": "eval-without-no-grad",
    "LT303": "train-mode-not-restored",
    "LT304": "functional-dropout-always-on",
    "LT401": "forward-hook-for-gradients",
    "LT402": "legacy-backward-hook",
    "LT501": "dataloader-transform",
    "LT502": "totensor-on-tensor",
    "LT503": "train-loader-not-shuffled",
    "LT504": "numpy-rng-in-workers",
    "LT601": "constant-weight-init",
    "LT602": "direct-forward-call",
}
