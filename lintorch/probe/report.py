"""Turn the child's recorded data and the static findings into the probe
report: one JSON object (stable keys, for CI) or human-readable text.

JSON shape::

    {"script", "device", "torch", "steps", "steps_requested", "seconds",
     "outcome": {"status", "message", "traceback"?, "output_tail"?},
     "findings": [{"code", "name", "line", "column", "status", "evidence", "message"}],
     "checks":   [{"code", "name", "status", "evidence", "static_finding"}],
     "symptoms": {"loss", "outputs", "parameters", "gradients", "learning_rate",
                  "validation", "checkpoints"}}

``outcome.status`` is one of: stopped (the requested steps ran), finished
(the script ended by itself), exited (sys.exit), crashed, timeout,
no_device, no_torch, no_report.
"""

import json
import math
from typing import Dict, List, Sequence

from lintorch.probe import checks

FLAT_RELATIVE = 1e-5  # loss range below this fraction of its size: "flat"
# A gradient "explodes" when its norm is this many times larger than the
# weights it updates, after allowing for the size of the loss (gradients
# scale with it: a correct regression with an MSE of 1e6 has large ones).
EXPLODING_RATIO = 1e3


def _g(value) -> str:
    return checks._g(value)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


# -- symptoms -------------------------------------------------------------------


def loss_symptom(data: dict) -> dict:
    trace = [b.get("loss") for b in data.get("backwards", [])]
    trace = [x for x in trace if x is not None]
    out = {"trace": trace, "flat": None, "change": None}
    values = [x for x in trace if _finite(x)]
    if len(values) != len(trace):
        out["non_finite"] = True
    if len(values) >= 2:
        spread = max(values) - min(values)
        size = max(abs(values[0]), 1e-12)
        out["change"] = float("%.6g" % (values[-1] - values[0]))
        out["flat"] = spread <= FLAT_RELATIVE * size
    return out


def output_symptom(data: dict) -> dict:
    forwards = data.get("forwards", [])
    train = [f for f in forwards if f["training"] and f["grad_enabled"]]
    last = data.get("last_train_forward") or (train[-1] if train else None)
    out = {"identical": None}
    if last is None or "spread" not in last:
        return out
    out.update(
        module=last["module"],
        batch=last["batch"],
        shape=last["shape"],
        max_spread=last["spread"],
        scale=last["scale"],
        identical=last["spread"] <= 1e-6 * max(last["scale"], 1e-30),
        after_step=last["step"],
    )
    if "distinct_argmax" in last:
        out["distinct_predictions"] = last["distinct_argmax"]
        out["classes"] = last["classes"]
    return out


def parameter_symptom(data: dict) -> dict:
    built = [r for r in data.get("optimizer_params", []) if "params" in r]
    return {
        "optimizer_parameters": sum(r["params"] for r in built),
        "trainable": sum(r["trainable"] for r in built),
        "compared": data.get("params_compared", 0),
        "never_changed": data.get("params_unchanged", []),
        "identical_rows": [r["param"] for r in data.get("weight_rows", []) if r["identical"]],
    }


def gradient_symptom(data: dict) -> dict:
    per: Dict[str, List] = {}
    weight: Dict[str, float] = {}
    for s in data.get("steps", []):
        for name, norm in s.get("grad_norms", {}).items():
            per.setdefault(name, []).append(norm)
        for name, norm in (s.get("weight_norms") or {}).items():
            if _finite(norm):
                weight[name] = max(weight.get(name, 0.0), norm)
    losses = [abs(x) for x in loss_symptom(data)["trace"] if _finite(x)]
    loss_scale = max([1.0] + losses)
    layers = {}
    for name, norms in per.items():
        present = [n for n in norms if n is not None]
        state = "ok"
        entry = {"norms": norms}
        if not present:
            state = "none"
        elif any(not _finite(n) for n in present):
            state = "non_finite"
        elif all(n == 0 for n in present):
            state = "zero"
        else:
            ratio = max(present) / (max(weight.get(name, 0.0), 1.0) * loss_scale)
            entry["relative"] = float("%.3g" % ratio)
            if ratio > EXPLODING_RATIO:
                state = "exploding"
        entry["state"] = state
        layers[name] = entry
    return {"per_parameter": layers, "problems": {n: v["state"] for n, v in layers.items() if v["state"] != "ok"}}


def lr_symptom(data: dict) -> dict:
    traces: Dict[str, List] = {}
    for s in data.get("steps", []):
        key = "%s[%d]" % (s["optimizer_type"], s["optimizer"])
        traces.setdefault(key, []).append(s["lr"][0] if s["lr"] else None)
    return traces


def validation_symptom(data: dict) -> dict:
    passes = [f for f in data.get("forwards", [])
              if (not f["grad_enabled"] or not f["training"]) and not f.get("backpropagated")]
    return {
        "passes": len(passes),
        "train_mode": sum(1 for f in passes if f["training"]),
        "grad_enabled": sum(1 for f in passes if f["grad_enabled"]),
        "train_mode_layers": sorted({r["module"] for r in data.get("nograd_train_mode", [])}),
    }


def symptoms(data: dict) -> dict:
    return {
        "loss": loss_symptom(data),
        "outputs": output_symptom(data),
        "parameters": parameter_symptom(data),
        "gradients": gradient_symptom(data),
        "learning_rate": lr_symptom(data),
        "validation": validation_symptom(data),
        "checkpoints": [s["path"] for s in data.get("saves", [])],
    }


# -- the report -----------------------------------------------------------------


def build(script: str, findings: Sequence, result, steps_requested: int) -> dict:
    """``findings``: lintorch Finding objects for the script; ``result``: a runner.RunResult."""
    child = result.report or {}
    data = child.get("data") or {}
    outcome = dict(child.get("outcome") or {})
    if not child:
        if result.timed_out:
            outcome = {"status": "timeout", "message": "timed out; the script did not respond (stuck outside Python)"}
            stack = getattr(result, "native_stack", None)
            if stack:
                lines = [line for line in stack.splitlines() if line.strip().startswith("File")]
                user = [line for line in lines
                        if "site-packages" not in line and "lintorch" not in line and '"<' not in line]
                outcome["traceback"] = "\n".join(user or lines) + "\n"
        else:
            outcome = {"status": "no_report", "message": "the probe's child process died without a report "
                       "(exit status %s)" % result.returncode}
    if result.timed_out and outcome.get("status") == "timeout":
        if child:
            outcome["message"] = "timed out after %s s" % _g(result.seconds)
        else:
            outcome["message"] = "timed out after %s s; the script ignored the stop signal and was killed" % (
                _g(result.seconds))
    status = outcome.get("status")
    total = int(data.get("total_steps") or 0)
    if status in ("crashed", "exited", "timeout", "finished", "no_report") and total == 0:
        outcome["before_first_step"] = True
    if status in ("crashed", "exited", "timeout", "no_report") and result.output_tail:
        outcome["output_tail"] = result.output_tail

    devices = data.get("devices") or []
    device = ", ".join(devices) if devices else child.get("default_device")
    if child.get("cuda_device") and any(d.startswith("cuda") for d in devices):
        device = "%s (%s)" % (device, child["cuda_device"])

    found_codes = set()
    out_findings = []
    for f in findings:
        found_codes.add(f.code)
        check = checks.run_check(f.code, data, f.line)
        out_findings.append({
            "code": f.code,
            "name": f.name,
            "line": f.line,
            "column": f.column,
            "status": check.status,
            "evidence": check.evidence,
            "message": f.message,
        })
    out_checks = []
    for code in checks.CONFIRMABLE:
        m = checks.TABLE[code]
        check = checks.run_check(code, data)
        status = check.status
        if status == checks.CONFIRMED and code not in found_codes:
            status = checks.OBSERVED
        out_checks.append({
            "code": code,
            "name": m.name,
            "status": status,
            "problem": status == checks.OBSERVED and (m.standalone if check.problem is None else check.problem),
            "evidence": check.evidence,
            "static_finding": code in found_codes,
        })
    return {
        "script": script,
        "device": device,
        "torch": child.get("torch"),
        "steps": total,
        "steps_requested": steps_requested,
        "stop_reason": data.get("stop_reason"),
        "processes": data.get("processes", []),
        "seconds": result.seconds,
        "outcome": outcome,
        "findings": out_findings,
        "checks": out_checks,
        "symptoms": symptoms(data) if data else {},
        "writes": writes_section(child, result),
    }


def writes_section(child: dict, result) -> dict:
    """What the script tried to write, and how the guarantee was enforced."""
    writes = child.get("writes") or {}
    return {
        "enforcement": child.get("sandbox"),
        "events": writes.get("events", []),
        "count": writes.get("count", 0),
        "own_session_processes": list(getattr(result, "own_session", []) or []),
    }


def exit_status(report: dict) -> int:
    """1: a static finding confirmed, or a standalone measurement confirmed;
    2: the probe could not run the script to a training step and confirmed
    nothing; 0 otherwise."""
    confirmed = any(f["status"] == checks.CONFIRMED for f in report["findings"])
    confirmed = confirmed or any(c.get("problem") for c in report["checks"])
    if report["outcome"].get("probe_caused"):
        return 2  # the run was changed by the probe itself: no verdict is trustworthy
    if confirmed:
        return 1
    if report["outcome"].get("status") in ("no_device", "no_torch", "no_report", "no_sandbox") or report["outcome"].get(
        "before_first_step"
    ):
        return 2
    return 0


def _strict(value):
    """JSON has no NaN/Infinity: a diverged loss is written as the string "nan"/"inf"/"-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if value != value else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def write_json(report: dict, stream) -> None:
    json.dump(_strict(report), stream, indent=2, sort_keys=False, allow_nan=False)
    stream.write("\n")


# -- text -------------------------------------------------------------------------

_NO_CUDA = ("Torch not compiled with CUDA enabled", "No CUDA GPUs are available", "Found no NVIDIA driver",
            "CUDA driver initialization failed", "no CUDA-capable device")
_STATUS = {checks.CONFIRMED: "CONFIRMED", checks.REFUTED: "refuted", checks.NOT_REACHED: "not reached"}


def _outcome_line(report: dict) -> str:
    o = report["outcome"]
    status = o.get("status")
    steps = report["steps"]
    if status == "stopped":
        why = {"validation": " after its first validation pass", "epoch": " after its first epoch",
               "budget": " at the time budget (no validation pass or epoch end seen)"}.get(report.get("stop_reason"), "")
        return "ran %d optimizer step(s) and stopped the script%s" % (steps, why)
    workers = [p for p in report.get("processes", []) if p.get("target") != "_worker_loop"]
    if status == "finished":
        if steps == 0 and workers:
            return ("the script ended without an optimizer step in the probed process; it started %d worker "
                    "process(es) (%s, target %s), which the probe does not instrument: steps they ran were not "
                    "measured. Probe a single-process variant of the script (e.g. world size 1)" % (
                        len(workers), workers[0]["method"], workers[0]["target"]))
        if steps == 0:
            return "the script ended without reaching a training step (no optimizer.step() call)"
        return "the script ended by itself after %d optimizer step(s)" % steps
    where = "before the first step" if o.get("before_first_step") else "after %d optimizer step(s)" % steps
    if status == "exited":
        return "the script called sys.exit(%s) %s" % (o.get("exit_code"), where)
    if status == "timeout":
        return "script %s %s (%s)" % ("timed out", where, o.get("message"))
    if status == "crashed":
        head = "script failed %s: %s" % (where, o.get("message"))
        if any(t in str(o.get("message")) for t in _NO_CUDA):
            head += ("\n  this script calls CUDA (.cuda(), device='cuda') and this machine has none: run it on a GPU "
                     "machine, or make the device configurable: torch.device('cuda' if torch.cuda.is_available() "
                     "else 'cpu')")
        if o.get("network"):
            head += "\n  it tried to download data and there is no network: download it beforehand " \
                    "and point the script at the local copy"
        return head
    return o.get("message") or str(status)


def write_text(report: dict, stream) -> None:
    w = stream.write
    requested = report["steps_requested"]
    w("lintorch probe %s: device %s, torch %s, %d%s optimizer steps, %ss\n" % (
        report["script"], report["device"] or "unknown", report["torch"] or "unknown",
        report["steps"], "/%d" % requested if requested else "", _g(report["seconds"])))
    w("  " + _outcome_line(report).replace("\n", "\n  ") + "\n")
    o = report["outcome"]
    if o.get("traceback"):
        w("  traceback of user code:\n")
        for line in o["traceback"].rstrip().splitlines():
            w("    %s\n" % line)
    if o.get("output_tail"):
        w("  last lines of the script's output:\n")
        for line in o["output_tail"][-8:]:
            w("    | %s\n" % line)
    if o.get("probe_caused"):
        w("  PROBE-CAUSED FAILURE: %s\n" % o["probe_caused"])
    if o.get("status") in ("no_device", "no_torch", "no_sandbox"):
        return

    w("\nStatic findings, checked at run time:\n")
    if not report["findings"]:
        w("  (no static findings)\n")
    for f in report["findings"]:
        w("  %s:%d:%d %s %s: %s\n      %s\n" % (
            report["script"], f["line"], f["column"], f["code"], f["name"], _STATUS[f["status"]], f["evidence"]))

    others = [c for c in report["checks"] if not c["static_finding"]]
    problems = [c for c in others if c["status"] == checks.OBSERVED and c.get("problem")]
    seen = [c for c in others if c["status"] == checks.OBSERVED and not c.get("problem")]
    refuted = [c["code"] for c in others if c["status"] == checks.REFUTED]
    if problems or seen or refuted:
        w("\nRuntime checks without a static finding:\n")
        for c in problems:
            w("  %s %s: OBSERVED (a bug the static pass missed)\n      %s\n" % (c["code"], c["name"], c["evidence"]))
        for c in seen:
            w("  %s %s: observed, not necessarily a bug (no static finding says the pattern is wrong here)\n"
              "      %s\n" % (c["code"], c["name"], c["evidence"]))
        if refuted:
            w("  refuted: %s (evidence in --format json)\n" % ", ".join(refuted))

    s = report["symptoms"]
    if not s:
        return
    w("\nSymptoms:\n")
    loss = s["loss"]
    if loss["trace"]:
        trace = " ".join(_g(x) for x in loss["trace"][:12]) + (" ..." if len(loss["trace"]) > 12 else "")
        verdict = ""
        if loss.get("non_finite"):
            verdict = "  -> NOT FINITE: training diverged"
        elif loss["flat"] is True:
            verdict = "  -> FLAT: the loss is not changing"
        elif loss["flat"] is False:
            verdict = "  (changed by %s)" % _g(loss["change"])
        w("  loss: %s%s\n" % (trace, verdict))
    out = s["outputs"]
    if out.get("identical") is not None:
        text = "outputs across a batch of %d (%s %s): max spread %s" % (
            out["batch"], out["module"], out["shape"], _g(out["max_spread"]))
        if out["identical"]:
            text += "  -> IDENTICAL for every input"
        if "distinct_predictions" in out:
            text += "; %d distinct predicted class(es) of %d" % (out["distinct_predictions"], out["classes"])
        w("  %s\n" % text)
    params = s["parameters"]
    if params.get("optimizer_parameters") and not params.get("trainable"):
        w("  parameters never changed: all %d held by the optimizer (none of them is trainable)\n" % (
            params["optimizer_parameters"]))
        w("  gradient norms at step(): none (no trainable parameter)\n")
    elif params["compared"]:
        never = params["never_changed"]
        w("  parameters never changed: %s\n" % (", ".join(never[:6]) + (" ..." if len(never) > 6 else "")
                                                 if never else "none (of %d)" % params["compared"]))
    grads = s["gradients"]["per_parameter"]
    if grads:
        parts = []
        for name, v in list(grads.items())[:8]:
            present = [n for n in v["norms"] if n is not None]
            rng = "None" if not present else (_g(present[0]) if len(present) == 1 else "%s..%s" % (
                _g(min(present)), _g(max(present))))
            flag = "" if v["state"] == "ok" else " [%s]" % v["state"].upper()
            parts.append("%s %s%s" % (name, rng, flag))
        w("  gradient norms at step(): %s%s\n" % ("; ".join(parts), " ..." if len(grads) > 8 else ""))
    for key, trace in s["learning_rate"].items():
        values = sorted({x for x in trace if x is not None})
        desc = "%s (constant)" % _g(values[0]) if len(values) == 1 else " ".join(_g(x) for x in trace[:12])
        w("  learning rate %s: %s\n" % (key, desc))
    val = s["validation"]
    if val["passes"]:
        w("  validation passes: %d (%d with the model in training mode, %d with grad enabled)%s\n" % (
            val["passes"], val["train_mode"], val["grad_enabled"],
            "; training-mode layers: " + ", ".join(val["train_mode_layers"][:4]) if val["train_mode_layers"] else ""))
    else:
        w("  validation passes: none within the probed steps\n")
    _write_writes(report.get("writes") or {}, w)


_SHOWN_WRITES = 12


def _write_writes(writes: dict, w) -> None:
    enforcement = writes.get("enforcement") or {}
    if enforcement.get("kernel"):
        how = "kernel-enforced (Landlock ABI %s)" % enforcement.get("abi")
    else:
        how = "NOT kernel-enforced (--allow-writes): only Python-level writes were redirected"
    events = writes.get("events") or []
    w("\nFiles: the script may read anything; writes outside a scratch area are redirected or blocked, %s\n" % how)
    if not events:
        w("  no write outside the scratch area was attempted\n")
    for e in events[:_SHOWN_WRITES]:
        where = e.get("where") or "library code"
        times = " (%d times)" % e["count"] if e.get("count", 1) > 1 else ""
        w("  %s: %s %s [%s] -> %s%s\n" % (where, e["op"], e["path"], e["via"], e["result"].upper()
                                          if e["result"] == "blocked" else e["result"], times))
    if len(events) > _SHOWN_WRITES or writes.get("count", 0) > sum(e.get("count", 1) for e in events):
        w("  ... %d attempted operation(s) in all (see --format json)\n" % writes.get("count", 0))
    for p in writes.get("own_session_processes") or []:
        w("  process %s (%s) left the probe's process group (a session of its own): killed\n" % (
            p["pid"], p["command"]))
