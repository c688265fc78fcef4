"""One real diagnose run per script of fixtures/diagnose/, shared by the
test modules that need them (each script is run once per session).

Each script states what the ranking must give, in a header comment:

    # diagnose: flat-loss -> LT102, lr-too-small     (the planted causes, ranked first and second)
    # diagnose: flat-loss, chance-accuracy -> none    (a fixed twin: no cause ranked likely)
    # diagnose-steps: 80                               (optional: a fixed --steps)
"""

import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, NamedTuple

from conftest import REPO

FIXTURES = REPO / "fixtures" / "diagnose"
HEADER = re.compile(r"^# diagnose: (?P<symptoms>[a-z, -]+) -> (?P<causes>.+)$", re.M)
STEPS = re.compile(r"^# diagnose-steps: (\d+)$", re.M)


class Expectation(NamedTuple):
    script: str
    symptoms: List[str]
    causes: List[str]  # empty: a fixed twin
    steps: object


def expectations() -> List[Expectation]:
    out = []
    for path in sorted(FIXTURES.glob("*.py")):
        text = path.read_text()
        match = HEADER.search(text)
        assert match, "%s has no '# diagnose:' header" % path.name
        causes = [c.strip() for c in match.group("causes").split(",")]
        steps = STEPS.search(text)
        out.append(Expectation(path.name, [s.strip() for s in match.group("symptoms").split(",")],
                               [] if causes == ["none"] else causes, int(steps.group(1)) if steps else None))
    return out


_runs: Dict[str, dict] = {}
_lock = threading.Lock()


def _run(expectation: Expectation) -> dict:
    from lintorch.diagnose.cli import diagnose
    from lintorch.diagnose.symptoms import parse

    return diagnose(str(FIXTURES / expectation.script), parse(expectation.symptoms[0]), steps=expectation.steps,
                    timeout=240)


def run_all() -> Dict[str, dict]:
    """Every fixture's diagnosis (for its first symptom), two runs at a time.
    The scripts' models are tiny: one torch thread each keeps two runs from
    fighting over the cores."""
    with _lock:
        missing = [e for e in expectations() if e.script not in _runs]
        if missing:
            previous = os.environ.get("OMP_NUM_THREADS")
            os.environ["OMP_NUM_THREADS"] = "1"
            try:
                with ThreadPoolExecutor(max_workers=2) as pool:
                    for e, result in zip(missing, pool.map(_run, missing)):
                        _runs[e.script] = result
            finally:
                if previous is None:
                    os.environ.pop("OMP_NUM_THREADS", None)
                else:
                    os.environ["OMP_NUM_THREADS"] = previous
        return dict(_runs)


def rerank(run: dict, symptom: str) -> dict:
    """The same run's measurements ranked for another symptom."""
    from lintorch.diagnose import measure, report
    from lintorch.diagnose.symptoms import parse
    from lintorch.probe.cli import static_findings

    probe = run["_probe"]
    data = (probe["_run"].report or {}).get("data") or {}
    script = str(REPO / run["script"]) if not os.path.isabs(run["script"]) else run["script"]
    return report.build(run["script"], parse(symptom), symptom, static_findings(script, run["script"]), probe,
                        run["runtime"], measure.measure(data, probe))


def cause_names(cause: dict) -> set:
    """The cause's id and the ids/codes of everything merged into it."""
    names = {cause["id"]}
    for e in cause["evidence"]:
        names.update(v for v in (e.get("id"), e.get("code")) if v)
    return names
