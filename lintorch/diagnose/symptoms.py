"""The symptom vocabulary of ``lintorch diagnose``, and reading what the
user typed with spelling slack (case, spaces, underscores, word order,
common synonyms and small typos)."""

import difflib
import re
from typing import Dict, List, NamedTuple, Optional


class Symptom(NamedTuple):
    name: str
    description: str  # what the user sees
    aliases: tuple  # other ways of saying it, already normalised (see _key)


VOCABULARY: Dict[str, Symptom] = {s.name: s for s in (
    Symptom("flat-loss", "the loss does not decrease",
            ("flat", "loss flat", "loss not decreasing", "loss not changing", "loss stuck", "stuck loss",
             "constant loss", "loss constant", "loss plateau", "not learning", "no learning", "loss same")),
    Symptom("identical-outputs", "the model gives the same prediction for every input",
            ("identical output", "same output", "same outputs", "same prediction", "same predictions",
             "identical prediction", "identical predictions", "constant output", "constant outputs",
             "constant prediction", "constant predictions", "collapsed outputs", "one class", "same class")),
    Symptom("chance-accuracy", "accuracy stays at chance level",
            ("chance", "accuracy chance", "random accuracy", "chance level", "accuracy stuck", "stuck accuracy",
             "accuracy not improving", "low accuracy", "chance level accuracy")),
    Symptom("nan-loss", "the loss becomes NaN or infinite",
            ("nan", "loss nan", "inf loss", "loss inf", "infinite loss", "nan loss after", "diverging loss",
             "loss diverges", "exploding loss", "loss explodes")),
    Symptom("noisy-validation", "the validation metric jumps around from one evaluation to the next",
            ("noisy val", "noisy validation accuracy", "validation noisy", "unstable validation",
             "validation jumps", "validation fluctuates", "fluctuating validation", "noisy eval",
             "validation accuracy jumps", "val noisy", "noisy validation loss")),
    Symptom("slow-convergence", "the loss decreases, but far too slowly",
            ("slow", "slow training", "converges slowly", "slow convergence", "loss decreases slowly",
             "slow learning", "learning slowly", "slowly converging", "loss slow")),
    Symptom("overfitting", "the training loss keeps falling while the validation loss rises",
            ("overfit", "over fitting", "overfits", "train val gap", "generalisation gap", "generalization gap",
             "validation loss increasing", "val loss rising", "memorising", "memorizing")),
)}


class UnknownSymptom(ValueError):
    def __init__(self, text: str, suggestions: List[str]):
        self.text, self.suggestions = text, suggestions
        hint = " (did you mean %s?)" % " or ".join(suggestions) if suggestions else ""
        super().__init__("unknown symptom %r%s; known symptoms: %s" % (text, hint, ", ".join(VOCABULARY)))


_FILLER = {"the", "my", "is", "are", "a", "an", "of", "it"}


def _key(text: str) -> str:
    """'Flat_Loss', 'flat loss', 'FLAT-LOSS', 'flatLoss' -> 'flat loss'."""
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text.strip())
    words = re.sub(r"[^a-z0-9]+", " ", text.lower()).split()
    return " ".join(w for w in words if w not in _FILLER)


def _index() -> Dict[str, str]:
    table = {}
    for s in VOCABULARY.values():
        table[_key(s.name)] = s.name
        table[" ".join(reversed(_key(s.name).split()))] = s.name  # 'loss flat', 'outputs identical'
        for alias in s.aliases:
            table[_key(alias)] = s.name
    return table


def parse(text: str) -> Symptom:
    """The vocabulary entry ``text`` names; :class:`UnknownSymptom` with
    suggestions otherwise."""
    key = _key(text or "")
    table = _index()
    if key in table:
        return VOCABULARY[table[key]]
    words = set(key.split())
    partial = sorted({n for n in VOCABULARY if words and words <= set(_key(n).split())})
    if len(partial) == 1:  # 'identical', 'noisy'
        return VOCABULARY[partial[0]]
    if partial:  # 'loss': flat-loss or nan-loss
        raise UnknownSymptom(text, partial)
    close = difflib.get_close_matches(key, list(table), n=3, cutoff=0.75)
    names = sorted({table[c] for c in close})
    if len(names) == 1:  # one plausible reading of a typo ('flat-los', 'nan-lose')
        return VOCABULARY[names[0]]
    if not names:
        names = sorted({table[c] for c in difflib.get_close_matches(key, list(table), n=3, cutoff=0.6)})
    raise UnknownSymptom(text, names)


def describe() -> str:
    return "; ".join("%s: %s" % (s.name, s.description) for s in VOCABULARY.values())


def lookup(name: str) -> Optional[Symptom]:
    return VOCABULARY.get(name)
