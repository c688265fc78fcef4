"""flake8 adapter: the same engine, flake8's conventions.

flake8 owns file discovery, selection (``--select``/``--extend-ignore``) and
``# noqa``; this plugin only runs every lintorch rule and hands findings over
with flake8's 0-based column (flake8 adds 1 when it prints, so both tools
print the same column). flake8 hands over one file at a time; the plugin
still reads the project modules that file imports and the files importing
it, as the ``lintorch`` command does, through one project per process.
"""

import gc
from typing import Iterator, List, Tuple

from lintorch import __version__


class LintorchFlake8:
    name = "lintorch"
    version = __version__
    _rules = None
    _project = None

    # flake8 picks the arguments by parameter name; ``tree`` marks this as an
    # AST plugin (it is unused: lintorch parses with libcst).
    def __init__(self, tree, filename: str, lines: List[str]):
        self.filename = filename
        self.lines = lines

    @classmethod
    def rules(cls):
        if cls._rules is None:
            from lintorch import registry

            cls._rules = registry.instantiate(registry.resolve_enabled(["ALL"], []))
        return cls._rules

    @classmethod
    def project(cls):
        if cls._project is None:
            from lintorch.runner import new_project

            cls._project = new_project()
        return cls._project

    def run(self) -> Iterator[Tuple[int, int, str, type]]:
        from lintorch import engine

        text = "".join(self.lines)
        project = self.project() if self.filename not in ("-", "stdin") else None
        if project is not None:
            project.begin(self.filename)
        try:
            findings = engine.lint_text(text, self.filename, self.rules(), apply_noqa=False, project=project)
        finally:
            if project is not None:
                project.end()
                # The project's parsed modules live for the whole run: frozen,
                # the cyclic collector stops rescanning them (seconds per run).
                gc.freeze()
        for finding in findings:
            yield finding.line, finding.column - 1, f"{finding.code} {finding.message}", type(self)
