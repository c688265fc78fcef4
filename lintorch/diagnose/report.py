"""The diagnosis: ranked causes, facts, and what to try next; as text or
JSON. Torch-free and plot-free (the HTML page is ``lintorch.diagnose.html``).

JSON shape (stable keys)::

    {"script", "symptom": {"name", "description", "asked"},
     "runtime": {"status": ran|skipped|failed, "message", "steps", "seconds", "device", "torch",
                 "stop_reason", "outcome"},
     "reproduced": {"status": reproduced|not_reproduced|not_measured, "text"},
     "explained": bool,
     "causes": [{"rank", "id", "title", "likelihood": likely|possible|unlikely, "score", "sources",
                 "evidence": [{"kind": static|measurement, "text", "code"?, "line"?, "column"?, "probe"?}],
                 "why", "fix"}],
     "facts": [{"topic", "text", "normal"}],
     "next_experiments": [...],
     "writes": the probe's record of the script's attempted writes}
"""

import json
from typing import List, Optional, Sequence

from lintorch.diagnose import causes as causes_mod
from lintorch.diagnose.symptoms import Symptom

GENERIC_EXPERIMENTS = [
    "Overfit one batch: train on a single fixed batch for 200 steps (batch = next(iter(loader)), then loop over "
    "[batch] * 200). The loss should fall to near 0. If it does not, the model, loss or optimizer wiring is "
    "broken; if it does, look at the data and the regularisation.",
    "Lower the learning rate 10x and compare the first 100 steps; if that helps, also try 3x lower and add "
    "warm-up or gradient clipping.",
    "Check the labels: print a few (input, label) pairs and the label counts; make sure labels stay aligned with "
    "their inputs through shuffling, augmentation and the train/validation split.",
]

SPECIFIC_EXPERIMENTS = {
    "nan-loss": "Run with torch.autograd.set_detect_anomaly(True) to find the operation that first produces NaN, "
                "and assert torch.isfinite(x).all() on the inputs and targets.",
    "identical-outputs": "Print the model's output for two very different inputs before and after the final "
                         "activation; compare the outputs at initialisation with those after training.",
    "chance-accuracy": "Compute the accuracy of always predicting the majority class: if yours matches it, the "
                       "model collapsed to one class.",
    "noisy-validation": "Evaluate the same checkpoint twice: different numbers mean randomness in evaluation "
                        "(train mode, dropout); equal numbers point at a too-small validation set.",
    "slow-convergence": "Run an lr range test: raise the learning rate exponentially over a few hundred steps "
                        "and pick one a little below where the loss starts to rise.",
    "overfitting": "Plot training and validation loss per epoch; stop at the lowest validation loss and add "
                   "augmentation or weight decay.",
    "flat-loss": "Check that the weights change at all: compare a parameter before and after one "
                 "optimizer.step().",
}


def build(script: str, symptom: Symptom, asked: str, static: Sequence, probe_report: Optional[dict],
          runtime: dict, measured=None) -> dict:
    """``static``: lintorch Finding objects; ``probe_report``: the probe's
    report when the script ran (None otherwise); ``measured``: a
    ``measure.Measured`` from that run."""
    statuses = {}
    for f in (probe_report or {}).get("findings", []):
        statuses[(f["code"], f["line"], f["column"])] = f["status"]
    findings = [{"code": f.code, "name": f.name, "line": f.line, "column": f.column, "severity": f.severity.value,
                 "message": f.message, "status": statuses.get((f.code, f.line, f.column))} for f in static]
    causes = causes_mod.static_causes(findings, causes_mod.checks_by_code(probe_report))
    if measured is not None:
        causes = causes_mod.merge(causes, measured.causes)
    ranked = causes_mod.rank(causes, symptom.name)
    out_causes = []
    for i, (cause, score, label) in enumerate(ranked, 1):
        evidence = []
        for e in cause.evidence:
            item = {"kind": e["kind"], "text": e["text"]}
            for key in ("id", "code", "line", "column", "probe", "severity"):
                if e.get(key) is not None:
                    item[key] = e[key]
            evidence.append(item)
        out_causes.append({"rank": i, "id": cause.id, "title": cause.title, "likelihood": label, "score": score,
                           "sources": cause.sources(), "evidence": evidence, "why": cause.why, "fix": cause.fix})
    explained = any(c["likelihood"] == "likely" for c in out_causes)
    reproduced = (measured.reproduced.get(symptom.name) if measured is not None else None) or {
        "status": "not_measured", "text": "the script was not run"}
    facts = [{"topic": f.topic, "text": f.text, "normal": f.normal} for f in (measured.facts if measured else [])]
    experiments = []
    if not explained:
        experiments = list(GENERIC_EXPERIMENTS)
        if symptom.name in SPECIFIC_EXPERIMENTS:
            experiments.append(SPECIFIC_EXPERIMENTS[symptom.name])
    return {
        "script": script,
        "symptom": {"name": symptom.name, "description": symptom.description, "asked": asked},
        "runtime": runtime,
        "reproduced": reproduced,
        "explained": explained,
        "causes": out_causes,
        "facts": facts,
        "next_experiments": experiments,
        "writes": (probe_report or {}).get("writes"),
    }


def exit_status(diagnosis: dict) -> int:
    """1 when a likely cause was found, else 0 (2 is decided by the CLI)."""
    return 1 if diagnosis["explained"] else 0


def write_json(diagnosis: dict, stream) -> None:
    from lintorch.probe.report import _strict

    json.dump(_strict(diagnosis), stream, indent=2, allow_nan=False)
    stream.write("\n")


def _evidence_line(script: str, e: dict) -> str:
    if e["kind"] == "static":
        probe = {"confirmed": ", confirmed by the probe", "refuted": ", REFUTED by the probe",
                 "not_reached": ", not reached by the probe"}.get(e.get("probe"), "")
        return "static %s:%s:%s %s%s: %s" % (script, e.get("line"), e.get("column"), e.get("code"), probe, e["text"])
    return "measured: %s" % e["text"]


def _wrap(text: str, indent: str, width: int = 100) -> List[str]:
    import textwrap

    return textwrap.wrap(text, width=width, initial_indent=indent, subsequent_indent=indent + "  ") or [indent]


def write_text(d: dict, stream) -> None:
    w = stream.write
    rt = d["runtime"]
    head = "lintorch diagnose %s --symptom %s (%s)" % (d["script"], d["symptom"]["name"], d["symptom"]["description"])
    w(head + "\n")
    if rt["status"] == "ran":
        w("  probed run (%s, %ss): %s\n" % (rt.get("device") or "unknown", rt.get("seconds"), rt["message"]))
    else:
        w("  runtime measurements: %s\n" % rt["message"])
    rep = d["reproduced"]
    label = {"reproduced": "reproduced", "not_reproduced": "NOT reproduced", "not_measured": "not measured"}[
        rep["status"]]
    w("  symptom %s in the probed run: %s\n" % (label, rep["text"]))

    groups = (("likely", "Likely causes, most likely first"), ("possible", "Possible causes"))
    for kind, title in groups:
        items = [c for c in d["causes"] if c["likelihood"] == kind]
        if not items:
            continue
        w("\n%s:\n" % title)
        for c in items:
            w("%2d. %s  [%s, %s; score %.2f]\n" % (c["rank"], c["title"], c["id"], c["sources"], c["score"]))
            seen = set()
            for e in c["evidence"]:
                text = _evidence_line(d["script"], e)
                if e["kind"] == "static" and (e.get("code"), e["text"]) in seen:
                    text = "also at %s:%s:%s" % (d["script"], e.get("line"), e.get("column"))
                seen.add((e.get("code"), e["text"]))
                for line in _wrap(text, "      "):
                    w(line + "\n")
            if c["why"]:
                for line in _wrap("why: " + c["why"], "    "):
                    w(line + "\n")
            if c["fix"]:
                for line in _wrap("fix: " + c["fix"], "    "):
                    w(line + "\n")
    unlikely = [c for c in d["causes"] if c["likelihood"] == "unlikely"]
    if unlikely:
        w("\nUnlikely here: %s\n" % "; ".join("%s (%s)" % (c["title"], c["id"]) for c in unlikely))
    if not d["explained"]:
        w("\nNothing found explains this symptom%s.\n" % (
            "" if not d["causes"] else " with confidence (only possible causes above)"))
    if d["facts"]:
        w("\nMeasured (%s):\n" % ("abnormal ones marked !" if any(not f["normal"] for f in d["facts"]) else
                                  "all normal"))
        for f in d["facts"]:
            for line in _wrap("%s %s: %s" % ("!" if not f["normal"] else "-", f["topic"], f["text"]), "  "):
                w(line + "\n")
    if d["next_experiments"]:
        w("\nNext experiments:\n")
        for i, text in enumerate(d["next_experiments"], 1):
            for line in _wrap("%d. %s" % (i, text), "  "):
                w(line + "\n")
