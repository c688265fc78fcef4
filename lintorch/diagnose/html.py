"""``lintorch diagnose --html FILE``: one self-contained page.

The ranked causes, then the plots: the loss curve, a heat map of per-layer
gradient norms over steps, the update/weight ratios, activation histograms
and the learning-rate trace. Plots are drawn with matplotlib's object API
(``Figure`` + the Agg canvas: no pyplot, no global state, no display) and
embedded as base64 PNG ``data:`` URIs; the CSS is inline and there is no
script, so nothing is fetched when the page is viewed.

Only ``lintorch diagnose --html`` imports this module (matplotlib is the
``lintorch[report]`` extra).
"""

import base64
import html
import io
import math
import os
import tempfile
from typing import Dict, List, Optional

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from lintorch.diagnose.measure import HEALTHY_UPDATE, _per_layer

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       color: #1d1d1f; background: #ffffff; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.meta { color: #555; } code { background: #f3f3f3; padding: 0 .25em; border-radius: 3px; }
.cause { border-left: 4px solid #c0392b; padding: .3em .9em; margin: .8em 0; background: #fdf4f3; }
.cause.possible { border-color: #e0a800; background: #fffaf0; }
.cause h3 { margin: .2em 0; font-size: 1.05em; } .badge { font-size: .8em; color: #555; }
.evidence { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .85em; white-space: pre-wrap; margin: .3em 0; }
.plots { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; }
figure { margin: 0; } figure img { width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #555; } .wide { grid-column: 1 / 3; }
li.abnormal { color: #a02b1f; } .none { color: #555; font-style: italic; }
"""


def _png(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _finish(fig: Figure, ax, ylabel: str, log: bool) -> Figure:
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.grid(alpha=.3)
    fig.tight_layout()
    return fig


def loss_plot(series: dict) -> Optional[Figure]:
    steps, values = series.get("loss") or ([], [])
    points = [(s, v) for s, v in zip(steps, values) if _finite(v)]
    if not points:
        return None
    fig = Figure(figsize=(5.4, 3.2))
    ax = fig.add_subplot()
    ax.plot([p[0] for p in points], [p[1] for p in points], color="#1f77b4", lw=1.2, label="training loss (each backward)")
    val = [(v["step"], v["loss_sum"] / v["loss_samples"]) for v in series.get("validation") or [] if v.get("loss_samples")]
    if val:
        ax.plot([p[0] for p in val], [p[1] for p in val], "o-", color="#d62728", ms=4, label="validation loss")
    bad = [s for s, v in zip(steps, values) if not _finite(v)]
    if bad:
        ax.axvline(bad[0], color="#d62728", ls="--", lw=1, label="not finite from step %d" % bad[0])
    positive = all(p[1] > 0 for p in points) and max(p[1] for p in points) > 30 * min(p[1] for p in points)
    return _finish(fig, ax, "loss", positive)


def gradient_heatmap(series: dict) -> Optional[Figure]:
    grads = series.get("grad_norms") or {}
    steps = grads.get("steps") or []
    layers = _per_layer(grads.get("rows") or [])
    if not steps or not layers:
        return None
    names = list(layers)[:24]
    grid = [[v if _finite(v) and v > 0 else float("nan") for v in layers[n]] for n in names]
    finite = [v for row in grid for v in row if v == v]
    fig = Figure(figsize=(10.8, 0.9 + 0.32 * len(names)))
    ax = fig.add_subplot()
    if finite:
        image = ax.imshow(grid, aspect="auto", interpolation="nearest", cmap="viridis",
                          norm=LogNorm(vmin=min(finite), vmax=max(max(finite), min(finite) * 1.0001)),
                          extent=(steps[0] - 0.5, steps[-1] + 0.5, len(names) - 0.5, -0.5))
        fig.colorbar(image, ax=ax, label="norm (log)")
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=8)
    ax.set_xlabel("optimizer step (grey: no gradient, zero or not finite)")
    ax.set_facecolor("#bbbbbb")
    fig.tight_layout()
    return fig


def update_plot(series: dict) -> Optional[Figure]:
    updates = series.get("updates") or {}
    steps, layers = updates.get("steps") or [], updates.get("layers") or {}
    if not steps or not layers:
        return None
    fig = Figure(figsize=(5.4, 3.2))
    ax = fig.add_subplot()
    drawn = False
    for name, values in list(layers.items())[:10]:
        points = [(s, v) for s, v in zip(steps, values) if _finite(v) and v > 0]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", lw=1, label=name)
            drawn = True
    ax.axhline(HEALTHY_UPDATE, color="#2ca02c", ls="--", lw=1, label="healthy ~1e-3")
    if drawn:
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step (sampled)")
    ax.set_ylabel("||dw|| / ||w||")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=.3)
    fig.tight_layout()
    return fig


def histogram_plot(series: dict) -> Optional[Figure]:
    hist = series.get("histograms") or {}
    items = [(name, entry) for name, entry in hist.items() if entry.get("first")][:6]
    if not items:
        return None
    cols = min(3, len(items))
    rows = (len(items) + cols - 1) // cols
    fig = Figure(figsize=(10.8, 2.4 * rows))
    for i, (name, entry) in enumerate(items):
        ax = fig.add_subplot(rows, cols, i + 1)
        for key, color in (("first", "#9ecae1"), ("last", "#08519c")):
            record = entry.get(key)
            if not record or (key == "last" and record is entry.get("first")):
                continue
            lo, hi = record["range"]
            counts = record["counts"]
            width = (hi - lo) / max(len(counts), 1)
            ax.bar([lo + width * (j + 0.5) for j in range(len(counts))], counts, width=width, color=color,
                   alpha=.75, label="step %d" % record["step"])
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def lr_plot(series: dict) -> Optional[Figure]:
    lr = series.get("lr") or {}
    steps, rows = lr.get("steps") or [], lr.get("rows") or []
    keys: List[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    if not steps or not keys:
        return None
    fig = Figure(figsize=(5.4, 3.2))
    ax = fig.add_subplot()
    positive = True
    for key in keys:
        points = [(s, row.get(key)) for s, row in zip(steps, rows) if _finite(row.get(key))]
        positive = positive and all(p[1] > 0 for p in points)
        ax.plot([p[0] for p in points], [p[1] for p in points], lw=1.4, label=key)
    return _finish(fig, ax, "learning rate", positive)


PLOTS = (
    ("loss", "Loss curve", loss_plot, False),
    ("lr", "Learning-rate trace", lr_plot, False),
    ("gradients", "Per-layer gradient norm at each optimizer step", gradient_heatmap, True),
    ("updates", "Update-to-weight ratio per layer", update_plot, False),
    ("activations", "Activation histograms (first and latest sampled step)", histogram_plot, True),
)


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def render(diagnosis: dict, series: dict) -> str:
    d = diagnosis
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           "<title>lintorch diagnose: %s</title>" % _e(d["script"]), "<style>%s</style></head><body>" % _CSS]
    out.append("<h1>lintorch diagnose: <code>%s</code></h1>" % _e(d["script"]))
    out.append('<p class="meta">Symptom <b>%s</b> (%s). %s</p>' % (
        _e(d["symptom"]["name"]), _e(d["symptom"]["description"]), _e(_runtime_line(d))))
    rep = d["reproduced"]
    out.append('<p class="meta">Symptom %s in the probed run: %s</p>' % (
        {"reproduced": "reproduced", "not_reproduced": "<b>not</b> reproduced", "not_measured": "not measured"}[
            rep["status"]], _e(rep["text"])))
    out.append("<h2>Ranked causes</h2>")
    shown = [c for c in d["causes"] if c["likelihood"] in ("likely", "possible")]
    if not shown:
        out.append('<p class="none">Nothing found explains this symptom.</p>')
    for c in shown:
        out.append('<div class="cause %s"><h3>%d. %s</h3><div class="badge">%s &middot; %s &middot; %s &middot; '
                   'score %.2f</div>' % (_e(c["likelihood"]), c["rank"], _e(c["title"]), _e(c["likelihood"]),
                                         _e(c["id"]), _e(c["sources"]), c["score"]))
        seen = set()
        for e in c["evidence"]:
            where = "%s:%s:%s %s " % (d["script"], e.get("line"), e.get("column"), e.get("code")) if (
                e["kind"] == "static") else ""
            probe = " (probe: %s)" % e["probe"] if e.get("probe") else ""
            text = e["text"]
            if e["kind"] == "static" and (e.get("code"), text) in seen:
                text = "(the same finding again)"
            seen.add((e.get("code"), e["text"]))
            out.append('<div class="evidence">%s %s%s%s</div>' % (
                "static" if e["kind"] == "static" else "measured", _e(where), _e(text), _e(probe)))
        if c["why"]:
            out.append("<p><b>Why:</b> %s</p>" % _e(c["why"]))
        if c["fix"]:
            out.append("<p><b>Fix:</b> %s</p>" % _e(c["fix"]))
        out.append("</div>")
    if d["next_experiments"]:
        out.append("<h2>Next experiments</h2><ol>%s</ol>" % "".join("<li>%s</li>" % _e(t) for t in d["next_experiments"]))
    out.append("<h2>Measurements</h2>")
    if series:
        out.append('<div class="plots">')
        for key, caption, draw, wide in PLOTS:
            fig = draw(series)
            cls = ' class="wide"' if wide else ""
            if fig is None:
                out.append('<figure%s><p class="none">%s: no data in this run</p></figure>' % (cls, _e(caption)))
                continue
            out.append('<figure%s><img class="plot" data-plot="%s" alt="%s" src="data:image/png;base64,%s">'
                       '<figcaption>%s</figcaption></figure>' % (cls, key, _e(caption), _png(fig), _e(caption)))
        out.append("</div>")
    else:
        out.append('<p class="none">The script was not run: no runtime measurements.</p>')
    if d["facts"]:
        out.append("<ul>%s</ul>" % "".join('<li class="%s">%s: %s</li>' % (
            "normal" if f["normal"] else "abnormal", _e(f["topic"]), _e(f["text"])) for f in d["facts"]))
    out.append('<p class="meta">Made by lintorch diagnose. This page is self-contained: nothing is fetched when it '
               "is viewed.</p></body></html>")
    return "\n".join(out) + "\n"


def _runtime_line(d: dict) -> str:
    rt = d["runtime"]
    if rt["status"] == "ran":
        return "Probed run on %s, %ss: %s" % (rt.get("device"), rt.get("seconds"), rt.get("message"))
    return rt["message"]


def write(path: str, diagnosis: dict, series: Dict) -> None:
    """Write the page atomically (a temporary file beside it, then a rename)."""
    text = render(diagnosis, series)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".lintorch-report-", suffix=".html", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
