"""Recall and precision on real training code written by others.

``bench/realcode.tsv`` is a labelled set of files from public repositories
(facts only: repository, commit, path, line, code, label, note; never their
code). This script fetches nothing: point it at local clones or the bare git
directories of those repositories, and it checks out each listed commit's
Python files into a scratch directory, runs the installed ``lintorch`` CLI
there exactly as a user would (``--isolated --no-cache``), and compares.

    python bench/realcode.py --repos /work/.mirror            # summary
    python bench/realcode.py --repos /work/.mirror --list     # every finding and miss
    python bench/realcode.py --repos DIR --json out.json      # for before/after diffs

A repository ``owner/name`` is looked up under ``--repos`` as
``owner+name/repo/.git``, ``owner+name/repo``, ``owner+name`` or
``owner/name`` (a work tree or a bare git directory).

Labels (column ``label``):

* ``file``: the file was read in full and every bug of lintorch's rule
  classes in it is labelled; ``line`` and ``code`` are ``-``. Only files with
  a ``file`` row make up the corpus.
* ``bug``: a real bug of that rule's class. lintorch should report it.
* ``fp``: lintorch reported (or may report) this code here and it is wrong.
* ``noise``: a true but harmless observation (style, hygiene): it must not
  be a default-enabled finding.

``line`` is ``N`` or ``N-M`` (the span of the bug: a loop, a class); a
finding matches a row of its code within that span, two lines either side.
For notebooks it is ``C:N`` or ``C:N-M``: cell ``C`` (counting every cell,
as lintorch reports), line ``N`` of that cell.

Recall counts a ``bug`` as found when any finding of its code matches,
with every rule selected (``--select ALL``, info findings included).
Precision is measured on what a default run prints: a matching ``bug`` is a
true positive, a matching ``fp`` or ``noise`` is a false positive, anything
else is unclassified (listed with ``--list``; label it).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
LABELS = ("file", "bug", "fp", "noise")
SLACK = 2
SUFFIXES = (b".py", b".ipynb", b".toml", b".cfg")


@dataclass(frozen=True)
class Row:
    repo: str
    commit: str
    path: str
    cell: Optional[int]
    start: int
    end: int
    code: str
    label: str
    note: str
    source_line: int  # line of the TSV, for messages

    def matches(self, finding: dict) -> bool:
        if finding["code"] != self.code:
            return False
        if self.cell is not None and finding.get("cell") != self.cell:
            return False
        return self.start - SLACK <= finding["line"] <= self.end + SLACK

    @property
    def where(self) -> str:
        span = f"{self.start}" if self.start == self.end else f"{self.start}-{self.end}"
        return f"{self.repo}:{self.path}:{'' if self.cell is None else f'cell {self.cell}:'}{span}"


def _span(text: str) -> Tuple[Optional[int], int, int]:
    cell = None
    if ":" in text:
        cell_text, text = text.split(":", 1)
        cell = int(cell_text)
    first, _, last = text.partition("-")
    return cell, int(first), int(last or first)


def read_rows(path: Path) -> List[Row]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if fields[0] == "repo":
            continue  # header
        if len(fields) < 6:
            raise SystemExit(f"{path}:{number}: want 7 tab-separated fields, got {len(fields)}")
        repo, commit, file_path, span, code, label = fields[:6]
        note = fields[6] if len(fields) > 6 else ""
        if label not in LABELS:
            raise SystemExit(f"{path}:{number}: unknown label {label!r} (one of {', '.join(LABELS)})")
        if label == "file":
            cell, start, end = None, 0, 0
        else:
            try:
                cell, start, end = _span(span)
            except ValueError:
                raise SystemExit(f"{path}:{number}: bad line {span!r} (N, N-M, C:N or C:N-M)") from None
        rows.append(Row(repo, commit, file_path, cell, start, end, code, label, note, number))
    return rows


def git_dir(root: Path, repo: str) -> Optional[Path]:
    owner, _, name = repo.partition("/")
    for candidate in (
        root / f"{owner}+{name}" / "repo" / ".git",
        root / f"{owner}+{name}" / "repo",
        root / f"{owner}+{name}",
        root / owner / name / ".git",
        root / owner / name,
    ):
        if (candidate / "HEAD").is_file() and (candidate / "objects").is_dir():
            return candidate
    return None


def materialise(git: Path, commit: str, into: Path) -> List[str]:
    """The commit's Python files, notebooks and config files as a plain
    directory tree (lintorch may read a file's neighbours, as it does in a
    user's clone). Read with ``git cat-file``: nothing is fetched. Returns
    the files whose content the clone lacks."""
    listing = subprocess.run(
        ["git", "--git-dir", str(git), "ls-tree", "-r", "-z", commit], capture_output=True, check=False
    )
    if listing.returncode != 0:
        raise RuntimeError(listing.stderr.decode(errors="replace").strip())
    wanted = []
    for entry in listing.stdout.split(b"\0"):
        if not entry:
            continue
        meta, _, name = entry.partition(b"\t")
        mode, kind, sha = meta.split()
        if kind == b"blob" and mode != b"120000" and name.endswith(SUFFIXES):
            wanted.append((sha, name.decode("utf-8", "surrogateescape")))
    batch = subprocess.run(
        ["git", "--git-dir", str(git), "cat-file", "--batch"],
        input=b"".join(sha + b"\n" for sha, _ in wanted),
        capture_output=True,
        check=True,
    ).stdout
    position = 0
    missing = []
    for _, name in wanted:
        header_end = batch.index(b"\n", position)
        header = batch[position:header_end].split()
        if header[-1] == b"missing":  # a snapshot without large blobs
            position = header_end + 1
            missing.append(name)
            continue
        size = int(header[2])
        body = batch[header_end + 1 : header_end + 1 + size]
        position = header_end + 1 + size + 1
        target = into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
    return missing


def run_lintorch(root: Path, files: List[str], select_all: bool) -> List[dict]:
    command = [sys.executable, "-m", "lintorch", "--format", "json", "--isolated", "--no-cache", "--exit-zero"]
    if select_all:
        command += ["--select", "ALL"]
    result = subprocess.run(command + files, cwd=root, capture_output=True, text=True, check=False)
    if result.returncode not in (0, 1):
        raise RuntimeError(f"lintorch exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout or "[]")


def evaluate(rows: List[Row], repos_root: Path, scratch: Path) -> dict:
    corpus: Dict[Tuple[str, str], List[str]] = defaultdict(list)
    for row in rows:
        if row.label == "file":
            corpus[(row.repo, row.commit)].append(row.path)
    by_file: Dict[Tuple[str, str, str], List[Row]] = defaultdict(list)
    for row in rows:
        if row.label != "file":
            by_file[(row.repo, row.commit, row.path)].append(row)
    missing_file_rows = sorted({k for k in by_file if k[2] not in corpus.get(k[:2], [])})

    findings: Dict[str, Dict[Tuple[str, str, str], List[dict]]] = {"all": {}, "default": {}}
    lines = 0
    skipped = []
    for (repo, commit), paths in sorted(corpus.items()):
        git = git_dir(repos_root, repo)
        if git is None:
            skipped.append(f"{repo} (no clone under {repos_root})")
            continue
        tree = scratch / repo.replace("/", "+") / commit[:12]
        try:
            lacking = materialise(git, commit, tree)
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            skipped.append(f"{repo}@{commit[:12]} ({exc})")
            continue
        skipped.extend(f"{repo}:{p} (content missing from the clone)" for p in paths if p in lacking)
        present = [p for p in paths if (tree / p).is_file()]
        skipped.extend(f"{repo}:{p} (not in the commit)" for p in paths if p not in present and p not in lacking)
        if not present:
            continue
        for p in present:
            lines += _count_lines(tree / p)
        for mode in ("all", "default"):
            for finding in run_lintorch(tree, present, select_all=(mode == "all")):
                key = (repo, commit, os.path.normpath(finding["path"]))
                findings[mode].setdefault(key, []).append(finding)
    return _score(rows, corpus, by_file, findings, lines, skipped, missing_file_rows)


def _count_lines(path: Path) -> int:
    if path.suffix == ".ipynb":
        try:
            cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
        except (ValueError, OSError):
            return 0
        total = 0
        for cell in cells:
            if cell.get("cell_type") == "code":
                source = cell.get("source", "")
                total += len(source) if isinstance(source, list) else source.count("\n") + 1
        return total
    return path.read_bytes().count(b"\n")


def _score(rows, corpus, by_file, findings, lines, skipped, missing_file_rows) -> dict:
    recall: Dict[str, List[int]] = defaultdict(lambda: [0, 0])
    misses, hits = [], []
    for key, labelled in by_file.items():
        reported = findings["all"].get(key, [])
        for row in labelled:
            if row.label != "bug":
                continue
            found = any(row.matches(f) for f in reported)
            recall[row.code][1] += 1
            if found:
                recall[row.code][0] += 1
                hits.append(row)
            else:
                misses.append(row)
    verdicts: Counter = Counter()
    per_code: Dict[str, Counter] = defaultdict(Counter)
    listed = []
    for key, reported in findings["default"].items():
        labelled = by_file.get(key, [])
        for finding in reported:
            matched = [row for row in labelled if row.matches(finding)]
            labels = {row.label for row in matched}
            verdict = "tp" if "bug" in labels else ("fp" if labels & {"fp", "noise"} else "unclassified")
            verdicts[verdict] += 1
            per_code[finding["code"]][verdict] += 1
            listed.append((verdict, key, finding))
    classified = verdicts["tp"] + verdicts["fp"]
    return {
        "files": sum(len(p) for p in corpus.values()),
        "repositories": len({repo for repo, _ in corpus}),
        "lines": lines,
        "recall": {code: {"found": f, "bugs": n} for code, (f, n) in sorted(recall.items())},
        "bugs": sum(n for _, n in recall.values()),
        "found": sum(f for f, _ in recall.values()),
        "default_findings": sum(verdicts.values()),
        "findings_per_10k_lines": round(sum(verdicts.values()) * 10000 / max(lines, 1), 2),
        "precision": round(verdicts["tp"] / classified, 3) if classified else None,
        "verdicts": dict(verdicts),
        "per_code": {code: dict(c) for code, c in sorted(per_code.items())},
        "misses": [row.where + f" {row.code}  {row.note}" for row in misses],
        "findings": [
            f"{verdict:<12} {key[0]}:{f['path']}:{_where(f)} {f['code']} [{f['severity']}] {f['message'][:160]}"
            for verdict, key, f in sorted(listed, key=lambda item: (item[0], item[1], item[2]["line"]))
        ],
        "skipped": skipped,
        "rows_without_file_row": [f"{r}:{p}" for r, _, p in missing_file_rows],
    }


def _where(finding: dict) -> str:
    cell = finding.get("cell")
    return f"cell {cell}:{finding['line']}" if cell is not None else str(finding["line"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repos", required=True, type=Path, help="directory holding the clones (see above)")
    parser.add_argument("--tsv", type=Path, default=HERE / "realcode.tsv")
    parser.add_argument("--list", action="store_true", help="list every default finding and every missed bug")
    parser.add_argument("--json", type=Path, help="write the whole result as JSON")
    parser.add_argument("--keep", type=Path, help="check out into this directory and keep it")
    args = parser.parse_args()

    rows = read_rows(args.tsv)
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="lintorch-realcode-"))
    try:
        result = evaluate(rows, args.repos, scratch)
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(
        f"{result['files']} files from {result['repositories']} repositories, {result['lines']} lines; "
        f"{result['bugs']} labelled bugs"
    )
    print(f"{'code':<8}{'recall':>10}")
    for code, counts in result["recall"].items():
        print(f"{code:<8}{counts['found']:>5}/{counts['bugs']:<4}")
    print(f"{'all':<8}{result['found']:>5}/{result['bugs']:<4}")
    v = result["verdicts"]
    print(
        f"default-enabled findings: {result['default_findings']} ({result['findings_per_10k_lines']} per 10k lines): "
        f"{v.get('tp', 0)} true, {v.get('fp', 0)} false or noise, {v.get('unclassified', 0)} unclassified; "
        f"precision {result['precision']}"
    )
    for code, counts in result["per_code"].items():
        print(f"  {code}: " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items())))
    if args.list:
        print("\nmissed bugs:")
        for line in result["misses"]:
            print("  " + line)
        print("\ndefault findings:")
        for line in result["findings"]:
            print("  " + line)
    for line in result["skipped"]:
        print(f"skipped: {line}", file=sys.stderr)
    for line in result["rows_without_file_row"]:
        print(f"warning: labelled rows in a file with no 'file' row (not in the corpus): {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
