from lintorch import torchapi as api
from lintorch.index import iter_nodes
from lintorch.rule import Example, Rule, Severity

#: Output range of each bounded activation.
_RANGES = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}
#: Tolerance, as a fraction of the activation's range: small noise added to
#: in-range targets (``torch.sin(x) + 0.05 * torch.randn_like(x)``) is fine.
_SLACK = 0.1


class BoundedOutputRegression(Rule):
    """
    **What it does.** Flags a regression loss (`nn.MSELoss`, `nn.L1Loss`,
    `nn.SmoothL1Loss`, `nn.HuberLoss` and their `F.*` functions) whose
    input comes out of a `sigmoid` (range [0, 1]) or `tanh` (range [-1, 1]):
    inline, as the last layer of an `nn.Sequential`, or returned by
    `forward`, when the script visibly builds targets outside that range.

    Target ranges are read from the script itself: literals and
    `torch.tensor([[...]])`, `torch.randn` (typical values taken as one
    standard deviation, [-1, 1]), `torch.rand`, `randint`, `linspace`,
    `arange`, `sin`, `MinMaxScaler`, combined with `+ - * /`, powers, their
    method and function spellings (`x.mul(500)`, `torch.add(a, b)`), sums,
    means and matrix products (`X.sum(dim=1)`, `X @ w`, counting the summed
    elements when the sizes are literal), followed through variables,
    indexing and the batches of a `DataLoader` over a `TensorDataset(X, y)`
    or a dataset class whose `__getitem__` returns `self.x[i], self.y[i]`.
    So `y = 2 * X + 1` with `X = torch.randn(...)` (about [-1, 3]) and
    `price = torch.rand(n) * 500 + ...` are flagged under a sigmoid. When the
    range is not visible (data read from files, targets divided by a
    statistic such as `(y - y.min()) / (y.max() - y.min())` or `y / y.sum()`,
    `/ 255`, in-place changes) nothing is reported: precision first. Images and autoencoder inputs normalised
    to the activation's range, and targets from `torch.rand`, are fine.

    **Why is this bad?** A sigmoid or tanh output can never reach a target
    outside its range. To get as close as it can, the network pushes the
    activation into saturation, where its gradient is almost zero, and the
    layers below stop learning.

    **Symptom.** Identical regression outputs: the model predicts nearly the
    same value (0 or 1, -1 or 1) for every input while the loss converges to
    a high value and stops changing.

    **Fix.** For unbounded regression, remove the final `sigmoid`/`tanh` and
    return the linear layer's output. If the targets really are bounded,
    scale them into the activation's range (`MinMaxScaler`, division by the
    maximum) and invert the scaling on the predictions.
    """

    code = "LT106"
    name = "bounded-output-regression"
    severity = Severity.WARNING
    summary = "sigmoid/tanh output trained with a regression loss on targets outside its range"
    symptom = "identical regression outputs; loss not changing"
    triggers = ("mse_loss", "MSELoss", "l1_loss", "L1Loss", "smooth_l1", "SmoothL1Loss", "huber_loss", "HuberLoss")

    bad = [
        Example(
            """
            import torch
            import torch.nn as nn

            model = nn.Sequential(nn.Linear(1, 16), nn.ReLU(), nn.Linear(16, 1), nn.Sigmoid())
            criterion = nn.MSELoss()
            X = torch.randn(100, 1)
            y = 3 * X + 2
            loss = criterion(model(X), y)
            """
        ),
    ]
    good = [
        Example(
            """
            import torch
            import torch.nn as nn

            model = nn.Sequential(nn.Linear(1, 16), nn.ReLU(), nn.Linear(16, 1), nn.Sigmoid())
            criterion = nn.MSELoss()
            X = torch.randn(100, 1)
            y = 3 * X + 2
            y = (y - y.min()) / (y.max() - y.min())
            loss = criterion(model(X), y)
            """
        ),
    ]

    def check(self, analysis):
        for loss in analysis.losses.loss_calls(api.REGRESSION_LOSS_MODULES, api.REGRESSION_LOSS_FUNCS):
            if loss.input is None or loss.target is None:
                continue
            scope, order = loss.call.scope, loss.call.order
            activation = analysis.models.activation(loss.input, scope, order)
            if activation is None or activation.kind not in _RANGES:
                continue
            low, high = _RANGES[activation.kind]
            target = analysis.ranges.value_range(loss.target, scope, order)
            if target is None:
                continue
            slack = _SLACK * (high - low)
            if target[0] >= low - slack and target[1] <= high + slack:
                continue
            inline = any(node is activation.node for node in iter_nodes(loss.input))
            where = "" if inline else ", line {line0}"
            yield self.report(
                loss.call.node,
                f"{loss.short_name} fits a {activation.kind} output (range [{low:g}, {high:g}]{where}) to "
                f"targets in about [{_fmt(target[0])}, {_fmt(target[1])}]",
                explanation=f"The {activation.kind} ({activation.via}) keeps every prediction in "
                f"[{low:g}, {high:g}], so the model can never reach these targets: the {activation.kind} "
                "saturates and its gradient vanishes, so it predicts nearly the same value for every input "
                f"(identical regression outputs, loss not changing). Remove the final {activation.kind} for "
                f"unbounded regression, or scale the targets into [{low:g}, {high:g}] (e.g. MinMaxScaler) and "
                "unscale the predictions.",
                related=() if inline else (activation.node,),
            )


def _fmt(value: float) -> str:
    if abs(value) >= 1e6:
        return f"{value:.3g}"
    return f"{value:.4g}"
