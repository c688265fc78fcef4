"""flake8 adapter: the same engine, flake8's conventions.

flake8 owns file discovery, selection (``--select``/``--extend-ignore``) and
``# noqa``; this plugin only runs every lintorch rule and hands findings over
with flake8's 0-based column (flake8 adds 1 when it prints, so both tools
print the same column).
"""

from typing import Iterator, List, Tuple

from lintorch import __version__


class LintorchFlake8:
    name = "lintorch"
    version = __version__
    _rules = None

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

    def run(self) -> Iterator[Tuple[int, int, str, type]]:
        from lintorch import engine

        text = "".join(self.lines)
        for finding in engine.lint_text(text, self.filename, self.rules(), apply_noqa=False):
            yield finding.line, finding.column - 1, f"{finding.code} {finding.message}", type(self)
