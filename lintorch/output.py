"""Output formats for findings and rule documentation."""

import json
from collections import Counter
from typing import IO, Dict, Iterable, List, Sequence

from lintorch import registry
from lintorch.rule import Finding


def format_text(finding: Finding) -> str:
    """``path:line:col: CODE message``: the form editors and CI parse
    (``path:cell N:line:col: ...`` for a notebook cell)."""
    if finding.cell is not None:
        return f"{finding.path}:cell {finding.cell}:{finding.line}:{finding.column}: {finding.code} {finding.message}"
    return f"{finding.path}:{finding.line}:{finding.column}: {finding.code} {finding.message}"


def write_text(findings: Sequence[Finding], stream: IO[str], files_checked: int) -> None:
    for finding in findings:
        stream.write(format_text(finding) + "\n")
    if findings:
        files = len({f.path for f in findings})
        noun = "finding" if len(findings) == 1 else "findings"
        file_noun = "file" if files == 1 else "files"
        stream.write(f"Found {len(findings)} {noun} in {files} {file_noun} ({files_checked} checked).\n")


def write_json(findings: Sequence[Finding], stream: IO[str]) -> None:
    json.dump([f.as_dict() for f in findings], stream, indent=2)
    stream.write("\n")


def write_statistics(findings: Sequence[Finding], stream: IO[str]) -> None:
    counts = Counter(f.code for f in findings)
    names: Dict[str, str] = registry.known_codes()
    width = max((len(str(n)) for n in counts.values()), default=1)
    for code, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        stream.write(f"{count:>{width}}  {code}  {names.get(code, '')}\n")


# -- rule documentation -----------------------------------------------------


def severity_label(cls) -> str:
    """``warning`` or, for rules whose findings vary, ``warning (error ...)``."""
    return f"{cls.severity.value} ({cls.severity_cases})" if cls.severity_cases else cls.severity.value


def rule_text(cls) -> str:
    lines = [f"{cls.code} {cls.name} ({severity_label(cls)})", "", cls.summary, ""]
    lines.append(f"Symptom: {cls.symptom}")
    lines.append("")
    lines.append(cls.explanation())
    for title, examples in (("Example (flagged)", cls.bad), ("Use instead", cls.good)):
        if examples:
            lines += ["", f"{title}:", ""]
            for example in examples[:2]:
                lines += ["    " + line if line else "" for line in example.code.splitlines()]
                lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def rule_markdown(cls) -> str:
    lines = [f"## {cls.code} `{cls.name}`", ""]
    lines += [f"**Severity:** {severity_label(cls)}  ", f"**Symptom:** {cls.symptom}", ""]
    lines += [cls.summary, "", cls.explanation(), ""]
    for title, examples in (("Example", cls.bad), ("Use instead", cls.good)):
        if examples:
            lines += [f"### {title}", ""]
            for example in examples[:2]:
                lines += ["```python", example.code.rstrip(), "```", ""]
    return "\n".join(lines)


def rule_table_markdown(classes: Iterable[type]) -> str:
    """The README's rule table, generated from rule metadata."""
    rows = ["| code | name | severity | symptom | what it flags |", "|---|---|---|---|---|"]
    rows.append(
        f"| {registry.UNPARSABLE_CODE} | {registry.UNPARSABLE_NAME} | error | none: the file is skipped | "
        "a file that cannot be read, decoded or parsed |"
    )
    rows.append(
        f"| {registry.INTERNAL_ERROR_CODE} | {registry.INTERNAL_ERROR_NAME} | error | none | "
        "a bug inside lintorch while checking a file (please report it) |"
    )
    for cls in classes:
        rows.append(f"| {cls.code} | {cls.name} | {severity_label(cls)} | {cls.symptom} | {cls.summary} |")
    return "\n".join(rows) + "\n"


def rules_json(classes: Iterable[type]) -> List[dict]:
    return [
        {
            "code": cls.code,
            "name": cls.name,
            "severity": cls.severity.value,
            **({"severity_cases": cls.severity_cases} if cls.severity_cases else {}),
            "summary": cls.summary,
            "symptom": cls.symptom,
            "explanation": cls.explanation(),
        }
        for cls in classes
    ]
