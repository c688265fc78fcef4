"""Causes, their evidence, and the ranking.

A cause is ranked by ``relevance × strength``: how strongly it produces the
symptom the user named (0-3, a property of the cause) times how sure the
evidence makes us that it is present in this script (0-1: a static finding
by its severity, raised by a probe confirmation and lowered by a
refutation; a runtime measurement by how abnormal it is). So the ranking
depends on the script's evidence, and the symptom word only weighs it:
the same script ranks differently for ``flat-loss`` and ``nan-loss``.

Static findings are turned into causes here. Pure Python, torch-free and
plot-free (``lintorch diagnose`` without torch ranks static causes only).
"""

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

LIKELY, POSSIBLE = 0.5, 0.2  # score thresholds

# How strongly each rule's bug produces each symptom (0 none .. 3 typical).
# Rules missing here (added later) are matched on the words of their Symptom line.
_F, _I, _C, _N, _V, _S, _O = ("flat-loss", "identical-outputs", "chance-accuracy", "nan-loss", "noisy-validation",
                              "slow-convergence", "overfitting")
RULE_RELEVANCE: Dict[str, Dict[str, int]] = {
    "LT101": {_C: 3, _F: 2, _S: 1, _I: 1},
    "LT102": {_F: 3, _C: 3, _S: 2, _I: 1},
    "LT103": {_F: 3, _C: 2, _S: 1, _N: 1},
    "LT104": {_F: 3, _I: 2, _C: 2, _S: 1},
    "LT105": {_N: 3, _F: 1},
    "LT106": {_I: 3, _F: 3, _S: 1},
    "LT107": {_C: 2, _F: 1, _V: 1},
    "LT201": {_F: 2, _N: 2, _S: 2, _V: 1, _I: 1},
    "LT202": {_F: 3, _I: 2, _C: 2},
    "LT203": {_F: 1, _S: 1},
    "LT204": {_S: 3, _F: 2},
    "LT206": {_F: 3, _C: 2, _I: 1},
    "LT207": {_F: 3, _I: 2, _C: 2},
    "LT208": {_F: 3, _C: 2, _I: 1},
    "LT209": {_N: 3, _V: 2, _F: 2, _I: 2, _C: 1, _S: 1},
    "LT210": {_S: 2, _F: 1},
    "LT301": {_V: 3, _C: 1},
    "LT303": {_S: 2, _V: 1},
    "LT304": {_V: 3, _C: 1},
    "LT501": {_F: 1},
    "LT502": {_F: 1, _S: 1},
    "LT503": {_V: 2, _S: 2, _C: 2, _F: 1, _I: 1},
    "LT504": {_O: 3, _V: 1},
    "LT601": {_I: 3, _F: 2, _C: 2},
}

# words of a rule's Symptom line -> the symptom they describe (for rules not in the table)
_SYMPTOM_WORDS = (
    (_N, ("nan", "inf", "diverg", "explod")),
    (_F, ("not changing", "not learning", "stops changing", "not improving", "plateau")),
    (_I, ("identical",)),
    (_C, ("chance",)),
    (_V, ("noisy", "change between runs")),
    (_O, ("overfit",)),
    (_S, ("slow",)),
)

# what a probe status does to the strength of a static finding
_SEVERITY_STRENGTH = {"error": 0.75, "warning": 0.5, "info": 0.25}
CONFIRMED_STRENGTH, REFUTED_STRENGTH = 1.0, 0.1


@dataclass
class Cause:
    id: str  # a rule code (LT201) or a measurement's name (lr-too-small)
    title: str
    why: str  # how it produces the symptom
    fix: str
    relevance: Dict[str, int]
    strength: float = 0.0
    evidence: List[dict] = field(default_factory=list)  # {"kind": "static"|"measurement", "text", ...}
    related: Tuple[str, ...] = ()  # rule codes describing the same bug (merged when both are present)

    def score(self, symptom: str) -> float:
        return round(self.relevance.get(symptom, 0) / 3.0 * self.strength, 3)

    def sources(self) -> str:
        kinds = {e["kind"] for e in self.evidence}
        if kinds == {"static", "measurement"}:
            return "static finding + probe measurement"
        return "static finding" if kinds == {"static"} else "probe measurement"


@dataclass
class Fact:
    topic: str  # loss, gradients, updates, relu, outputs, labels, inputs, lr, parameters, validation, data
    text: str
    normal: bool = True


def relevance_of_rule(code: str, symptom_line: str = "") -> Dict[str, int]:
    if code in RULE_RELEVANCE:
        return dict(RULE_RELEVANCE[code])
    text = symptom_line.lower()
    return {name: 2 for name, words in _SYMPTOM_WORDS if any(w in text for w in words)}


def _sections(doc: str) -> Dict[str, str]:
    """'**Why is this bad?** text **Fix.** text' -> {'why is this bad?': text, 'fix.': text}."""
    parts = re.split(r"\*\*([^*]+)\*\*", doc)
    out = {}
    for title, body in zip(parts[1::2], parts[2::2]):
        out[title.strip().lower()] = " ".join(body.split())
    return out


def rule_texts(code: str) -> Tuple[str, str, str]:
    """(summary, why, fix) from the rule's documentation; empty when unknown."""
    from lintorch import registry

    try:
        cls = registry.rule_by_selector(code)
    except registry.UnknownSelector:
        return "", "", ""
    sections = _sections(cls.explanation())
    why = sections.get("why is this bad?", "")
    symptom = sections.get("symptom.", "")
    if symptom:
        why = (why + " Symptom: " + symptom).strip()
    return cls.summary, why, sections.get("fix.", "")


def static_causes(findings: Sequence, checks_by_code: Dict[str, dict] = None) -> List[Cause]:
    """One cause per rule code among ``findings`` (lintorch Finding objects
    or probe report finding dicts with the probe's ``status``)."""
    by_code: Dict[str, Cause] = {}
    for f in findings:
        get = f.get if isinstance(f, dict) else lambda k, d=None, f=f: getattr(f, k, d)
        code = get("code")
        severity = get("severity")
        severity = getattr(severity, "value", severity) or "warning"
        summary, why, fix = rule_texts(code)
        cause = by_code.get(code)
        if cause is None:
            from lintorch import registry

            symptom_line = ""
            try:
                symptom_line = registry.rule_by_selector(code).symptom
            except registry.UnknownSelector:
                pass
            cause = by_code[code] = Cause(code, summary or get("name") or code, why, fix,
                                          relevance_of_rule(code, symptom_line), 0.0)
        status = get("status")
        evidence = {"kind": "static", "code": code, "line": get("line"), "column": get("column"),
                    "severity": severity, "text": get("message"),
                    "strength": {"confirmed": CONFIRMED_STRENGTH, "refuted": REFUTED_STRENGTH}.get(
                        status, _SEVERITY_STRENGTH.get(severity, 0.5))}
        if status:
            evidence["probe"] = status
        cause.evidence.append(evidence)
        # the best-supported finding of the code counts; a refuted one only when all are
        kept = [e["strength"] for e in cause.evidence if e.get("probe") != "refuted"]
        cause.strength = max(kept) if kept else REFUTED_STRENGTH
    for code, cause in by_code.items():
        check = (checks_by_code or {}).get(code)
        probe_statuses = {e.get("probe") for e in cause.evidence}
        if check and "confirmed" in probe_statuses:
            cause.evidence.append({"kind": "measurement", "code": code, "text": check["evidence"]})
    return list(by_code.values())


def merge(static: List[Cause], measured: List[Cause]) -> List[Cause]:
    """A measurement that describes the same bug as another cause (its
    ``related`` ids: a static finding's code, or a measurement that explains
    it, as huge updates explain exploding gradients) becomes evidence of that
    cause; the others stand alone. Causes that explain others are placed first."""
    by_id = {c.id: c for c in static}
    out = list(static)
    present = set(by_id) | {m.id for m in measured}
    alias: Dict[str, str] = {}
    for m in sorted(measured, key=lambda m: sum(1 for r in m.related if r in present)):
        target = by_id.get(m.id)
        for related in m.related:
            if target is None:
                target = by_id.get(alias.get(related, related))
        if target is None:
            by_id[m.id] = m
            out.append(m)
            continue
        alias[m.id] = target.id
        static_refuted = [e for e in target.evidence if e["kind"] == "static"] and all(
            e.get("probe") == "refuted" for e in target.evidence if e["kind"] == "static")
        if static_refuted:
            target.strength = max(target.strength, m.strength * 0.8)  # measured after all: the check was narrower
        else:
            target.strength = round(min(1.0, max(target.strength, m.strength) + 0.1), 3)
        target.evidence.extend(m.evidence)
        for symptom, weight in m.relevance.items():
            target.relevance[symptom] = max(target.relevance.get(symptom, 0), weight)
        target.why = target.why or m.why
        target.fix = target.fix or m.fix
    return out


def rank(causes: List[Cause], symptom: str) -> List[Tuple[Cause, float, str]]:
    """(cause, score, likely|possible|unlikely), best first; causes that do
    not produce this symptom at all are left out."""
    ranked = []
    for cause in causes:
        score = cause.score(symptom)
        if cause.relevance.get(symptom, 0) <= 0 or cause.strength <= 0:
            continue
        label = "likely" if score >= LIKELY else "possible" if score >= POSSIBLE else "unlikely"
        ranked.append((cause, score, label))
    # ties: a confirmed static finding before a measurement alone, then the stronger evidence
    ranked.sort(key=lambda item: (-item[1], -len({e["kind"] for e in item[0].evidence}), -item[0].strength,
                                  item[0].id))
    return ranked


def checks_by_code(report: Optional[dict]) -> Dict[str, dict]:
    return {c["code"]: c for c in (report or {}).get("checks", [])}
