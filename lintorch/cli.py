"""The ``lintorch`` command.

    lintorch [check] [PATH ...] [options]   lint files and directories
    lintorch rule CODE | --all              print rule documentation
    lintorch probe SCRIPT [options]         run the script under instrumentation
    lintorch diagnose SCRIPT --symptom S    rank the likely causes of a symptom

Exit status (ruff's contract): 0 no findings, 1 findings, 2 usage,
configuration or path errors.
"""

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

from lintorch import __version__, config as config_mod, registry
from lintorch.rule import Finding

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
#: The human-readable formats (ruff's names; ``text`` is the older name of ``concise``).
TEXT_FORMATS = ("concise", "full", "text")


def _selector_list(text: str) -> List[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _check_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lintorch",
        description="Find the bugs that make a PyTorch training script silently fail to learn.",
        epilog="Other commands: `lintorch rule CODE|--all`, `lintorch probe SCRIPT`, "
        "`lintorch diagnose SCRIPT --symptom NAME` (see --help of each).",
    )
    parser.add_argument("paths", nargs="*", metavar="PATH", help="files or directories; - reads stdin (default: .)")
    parser.add_argument(
        "--output-format", "--format", dest="format", choices=TEXT_FORMATS + ("json", "sarif", "github"),
        default="concise",
        help="concise (one line per finding; text is the same), full (plus the offending line and why it is "
        "wrong, its symptom and the fix), json, sarif (SARIF 2.1.0, for GitHub code scanning), "
        "github (GitHub Actions annotations) (default: concise)",
    )
    parser.add_argument("--output-file", "-o", metavar="FILE", help="write the report to FILE instead of stdout")
    parser.add_argument("--show-source", action="store_true", help="the same as --output-format full")
    parser.add_argument(
        "--color", choices=("auto", "always", "never"), default="auto",
        help="colour the text output (auto: on a terminal, unless NO_COLOR is set)",
    )
    parser.add_argument("--fix", action="store_true", help="apply safe fixes to the files")
    parser.add_argument("--unsafe-fixes", action="store_true", help="also apply fixes that change behaviour (with --fix/--diff)")
    parser.add_argument("--diff", action="store_true", help="print the fixes as a unified diff instead of writing them")
    parser.add_argument("--statistics", action="store_true", help="print the number of findings per code")
    parser.add_argument(
        "-q", "--quiet", action="store_true",
        help="text format: no closing summary (Found.../All checks passed...), nor --fix's count",
    )
    parser.add_argument("--select", type=_selector_list, help="codes, prefixes (LT2) or names to enable, replacing the config")
    parser.add_argument("--ignore", type=_selector_list, default=[], help="codes, prefixes or names to disable")
    parser.add_argument("--extend-select", type=_selector_list, default=[], help="codes to enable on top of select")
    parser.add_argument("--exit-zero", action="store_true", help="exit 0 even when there are findings")
    parser.add_argument("--config", type=Path, help="pyproject.toml to read [tool.lintorch] from")
    parser.add_argument("--isolated", action="store_true", help="ignore all configuration files")
    parser.add_argument(
        "--exclude", type=_selector_list, metavar="PATTERNS",
        help="comma-separated globs to skip, relative to the working directory, replacing the config's exclude",
    )
    parser.add_argument(
        "--extend-exclude", type=_selector_list, default=[], metavar="PATTERNS",
        help="globs to skip on top of exclude (relative to the working directory)",
    )
    parser.add_argument(
        "--force-exclude", action="store_true",
        help="apply exclude to files named on the command line (and to --stdin-filename) too",
    )
    parser.add_argument("--stdin-filename", help="the path to report (and match config against) for stdin input")
    parser.add_argument("-j", "--jobs", type=int, default=0, help="worker processes (default: all cores; 1: serial)")
    parser.add_argument(
        "--module-memory", type=int, metavar="MB", default=None,
        help="memory each process keeps for parsed modules that other files take facts from (default: 150)",
    )
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the findings cache")
    parser.add_argument("--cache-dir", help="where to keep the cache (default: .lintorch_cache beside pyproject.toml)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    parser.add_argument("--version", action="version", version=f"lintorch {__version__}")
    return parser


def _load_config(args: argparse.Namespace) -> config_mod.Config:
    if args.isolated:
        config = config_mod.Config()
    else:
        path = args.config
        if path is not None and not path.is_file():
            raise config_mod.ConfigError(f"{path}: config file not found")
        if path is None:
            start = [args.stdin_filename] if args.stdin_filename else (args.paths or ["."])
            path = config_mod.find_pyproject(start)
        config = config_mod.load(path)
    if args.select is not None:
        config.select = args.select
    config.force_exclude = config.force_exclude or args.force_exclude
    if args.exclude is not None:
        config.exclude = []
        config.command_line_exclude = list(args.exclude)
    config.command_line_exclude += args.extend_exclude
    config.ignore = config.ignore + args.ignore
    config.extend_select = config.extend_select + args.extend_select
    config_mod.validate_selectors(config, "command line")
    return config


def _cache_dir(args: argparse.Namespace, config: config_mod.Config) -> Optional[str]:
    if args.no_cache:
        return None
    if args.cache_dir:
        return args.cache_dir
    from lintorch.cache import CACHE_DIR_NAME

    root = config.root if config.source is not None else Path.cwd()
    return str(root / CACHE_DIR_NAME)


def check_main(argv: Sequence[str]) -> int:
    from lintorch import files, formats, runner

    args = _check_parser().parse_args(argv)
    try:
        config = _load_config(args)
    except config_mod.ConfigError as exc:
        print(f"lintorch: error: {exc}", file=sys.stderr)
        return EXIT_ERROR

    if args.fix or args.diff:
        return _fix_main(args, config)

    findings: List[Finding] = []
    paths = args.paths or ["."]
    status = EXIT_CLEAN
    checked = 0
    stdin_text: Dict[str, str] = {}

    if "-" in paths:
        display = args.stdin_filename or "-"
        # --force-exclude covers the name stdin stands for, as it covers named files (ruff too)
        if not (config.force_exclude and args.stdin_filename and config.is_excluded(args.stdin_filename)):
            linter = runner.FileLinter(config, None, args.debug)
            data = sys.stdin.buffer.read()
            stdin_text[display] = data.decode("utf-8", errors="replace")
            findings += linter.lint_data(data, display)
            checked += 1
        paths = [p for p in paths if p != "-"]

    discovery = files.discover(paths, config)
    for path, reason in discovery.missing:
        print(f"lintorch: error: {path}: {reason}", file=sys.stderr)
        status = EXIT_ERROR
    if config.enabled_codes():
        results = runner.lint_paths(
            discovery.files, config, jobs=args.jobs, cache_dir=_cache_dir(args, config), debug=args.debug,
            project_memory_mb=args.module_memory,
        )
        for _, found in formats.progress(results, total=len(discovery.files)):
            findings += found
            checked += 1

    return _finish(args, config, findings, checked, stdin_text, status)


def _finish(
    args: argparse.Namespace,
    config: config_mod.Config,
    findings: List[Finding],
    checked: int,
    stdin_text: Dict[str, str],
    status: int,
) -> int:
    """Report, then the exit status: 2 if anything failed, 1 if findings
    remain (unless --exit-zero), else 0."""
    _warn_if_nothing_checked(args, config, checked, status)
    if not config.enabled_codes():
        checked = 0  # stdin was read, but no rule looked at it
    if not _report(args, findings, checked, stdin_text):
        return EXIT_ERROR
    if status == EXIT_ERROR:
        return status
    if findings and not args.exit_zero:
        return EXIT_FINDINGS
    return EXIT_CLEAN


def _warn_if_nothing_checked(args: argparse.Namespace, config: config_mod.Config, checked: int, status: int) -> None:
    """A run that checked nothing says so on stderr: silence must mean clean."""
    if not config.enabled_codes():
        print("lintorch: warning: no rule is selected (select, ignore); nothing was checked", file=sys.stderr)
    elif checked == 0 and status != EXIT_ERROR:  # (a missing path was already reported)
        where = " ".join(args.paths or ["."])
        print(
            f"lintorch: warning: no Python files or notebooks to check in {where} "
            "(*.py, *.pyi, *.ipynb; excluded paths are skipped); nothing was checked",
            file=sys.stderr,
        )


class OutputError(Exception):
    """The report could not be written (a full disk, a closed stream)."""

    def __init__(self, target: str, error: OSError):
        super().__init__(f"cannot write {target}: {error.strerror or error}")
        self.to_stdout = target == "to standard output"


@contextlib.contextmanager
def _writing(target: Optional[str] = None) -> Iterator[None]:
    """Turn a failed write (not a closed pipe, which ends quietly) into
    :class:`OutputError`; ``target`` is a file name, None for stdout."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OutputError(f"to {target}" if target else "to standard output", exc) from None


def _report(args: argparse.Namespace, findings: List[Finding], checked: int, stdin_text: Dict[str, str]) -> bool:
    """Write the report in the chosen format, to stdout or --output-file."""
    from lintorch import formats, output

    if args.output_file:
        try:
            stdout = open(args.output_file, "w", encoding="utf-8")
        except OSError as exc:
            print(f"lintorch: error: {args.output_file}: {exc.strerror or exc}", file=sys.stderr)
            return False
    else:
        stdout = sys.stdout
    with _writing(args.output_file):
        try:
            if args.format == "json":
                output.write_json(findings, stdout)
            elif args.format == "sarif":
                formats.write_sarif(findings, stdout)
            elif args.format == "github":
                formats.write_github(findings, stdout)
            else:
                style = formats.Style(formats.use_color(args.color, stdout))
                formats.write_text(
                    findings, stdout, checked, style=style, full=args.show_source or args.format == "full",
                    sources=formats.SourceLines(stdin_text), unsafe_fixes=args.unsafe_fixes, quiet=args.quiet,
                )
                if args.statistics:
                    output.write_statistics(findings, stdout)
            if args.format not in TEXT_FORMATS and args.statistics:
                output.write_statistics(findings, sys.stderr)
            stdout.flush()
        finally:
            if stdout is not sys.stdout:
                stdout.close()  # flushes again: a full disk raises here too
    return True


def _fix_main(args: argparse.Namespace, config: config_mod.Config) -> int:
    """``--fix`` / ``--diff``: fix each file, then report what is left."""
    from lintorch import files, fix, formats, runner

    rules = runner.RuleCache(config)
    paths = [p for p in (args.paths or ["."]) if p != "-"]
    if len(paths) != len(args.paths or ["."]):
        print("lintorch: error: --fix and --diff work on files, not on stdin", file=sys.stderr)
        return EXIT_ERROR
    status = EXIT_CLEAN
    discovery = files.discover(paths, config)
    for path, reason in discovery.missing:
        print(f"lintorch: error: {path}: {reason}", file=sys.stderr)
        status = EXIT_ERROR
    findings: List[Finding] = []
    fixed = fixed_files = 0
    project = runner.new_project(args.module_memory) if discovery.files else None
    for path in formats.progress(discovery.files if config.enabled_codes() else []):
        codes = rules.codes_for(runner.display_path(path))
        project.begin(runner.display_path(path))
        try:
            outcome = fix.fix_file(
                path, runner.display_path(path), rules.rules_for(codes), unsafe=args.unsafe_fixes,
                keep=lambda f: f.code in codes, write=not args.diff, debug=args.debug, project=project,
            )
        except (OSError, fix.FileChangedError) as exc:
            print(f"lintorch: error: {path}: not fixed: {exc}", file=sys.stderr)
            status = EXIT_ERROR
            continue
        finally:
            project.end()
        for finding, reason in outcome.dropped:
            cell = f"cell {finding.cell}:" if finding.cell is not None else ""
            print(
                f"lintorch: warning: {finding.path}:{cell}{finding.line}:{finding.column}: {finding.code} "
                f"fix dropped: {reason}",
                file=sys.stderr,
            )
        if outcome.skipped:
            print(f"lintorch: warning: {outcome.path}: {outcome.skipped}", file=sys.stderr)
        if outcome.changed:
            fixed += len(outcome.applied)
            fixed_files += 1
            if args.diff:
                with _writing():
                    sys.stdout.write(outcome.diff())
        findings += outcome.remaining
    checked = len(discovery.files) if config.enabled_codes() else 0
    if args.diff:
        with _writing():
            sys.stdout.flush()
        if not args.quiet:
            print(
                f"Would apply {formats.plural(fixed, 'fix', 'fixes')} in {formats.plural(fixed_files, 'file')}.",
                file=sys.stderr,
            )
        _warn_if_nothing_checked(args, config, checked, status)
        if status == EXIT_ERROR:
            return status
        return EXIT_FINDINGS if fixed and not args.exit_zero else EXIT_CLEAN
    if not args.quiet:
        print(f"Fixed {formats.plural(fixed, 'finding')} in {formats.plural(fixed_files, 'file')}.", file=sys.stderr)
    return _finish(args, config, findings, checked, {}, status)


# -- lintorch rule ------------------------------------------------------------


def rule_main(argv: Sequence[str]) -> int:
    from lintorch import output

    parser = argparse.ArgumentParser(prog="lintorch rule", description="Show the documentation of rules.")
    parser.add_argument("selector", nargs="?", help="a code (LT102) or name (activation-before-cross-entropy)")
    parser.add_argument("--all", action="store_true", help="every rule")
    parser.add_argument(
        "--format",
        choices=("text", "markdown", "json", "table"),
        default="text",
        help="table: the README's rule table (markdown)",
    )
    args = parser.parse_args(argv)
    if args.all == bool(args.selector):
        parser.error("give a rule code or name, or --all")
    if args.all:
        # the table lists LT000/LT001 itself; the other formats document them first
        classes = [*([] if args.format == "table" else output.ENGINE_CODES), *registry.all_rules()]
    else:
        try:
            classes = [output.documented_code(args.selector)]
        except registry.UnknownSelector:
            print(f"lintorch: error: unknown rule {args.selector!r} (see `lintorch rule --all`)", file=sys.stderr)
            return EXIT_ERROR
    with _writing():
        if args.format == "json":
            import json

            json.dump(output.rules_json(classes), sys.stdout, indent=2)
            sys.stdout.write("\n")
        elif args.format == "table":
            sys.stdout.write(output.rule_table_markdown(classes))
        elif args.format == "markdown":
            sys.stdout.write("\n".join(output.rule_markdown(cls) for cls in classes))
        else:
            sys.stdout.write("\n\n".join(output.rule_text(cls) for cls in classes))
        sys.stdout.flush()
    return EXIT_CLEAN


# -- lintorch probe -----------------------------------------------------------


def probe_main(argv: Sequence[str]) -> int:
    try:
        from lintorch.probe.cli import main as probe
    except ImportError:  # the probe package not shipped in this build
        print("lintorch: error: the probe is not available in this installation", file=sys.stderr)
        return EXIT_ERROR
    return probe(list(argv))


def diagnose_main(argv: Sequence[str]) -> int:
    from lintorch.diagnose.cli import main as diagnose

    return diagnose(list(argv))


COMMANDS = {"rule": rule_main, "probe": probe_main, "diagnose": diagnose_main, "check": check_main}


def _tolerant_output() -> None:
    """Paths that are not valid UTF-8 and non-ASCII text on an ASCII console
    are written escaped instead of raising UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # pragma: no cover - a closed or replaced stream
                pass


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _tolerant_output()
    command = check_main
    # A subcommand name wins over a same-named path only when no such file
    # exists (`lintorch ./rule` always lints the file).
    if argv and argv[0] in COMMANDS and not os.path.exists(argv[0]):
        command = COMMANDS[argv.pop(0)]
    try:
        return command(argv)
    except KeyboardInterrupt:
        print("lintorch: interrupted", file=sys.stderr)
        return 130
    except OutputError as exc:
        print(f"lintorch: error: {exc}", file=sys.stderr)
        if exc.to_stdout:
            _discard_stdout()
        return EXIT_ERROR
    except BrokenPipeError:
        # `lintorch . | head`: stop quietly, as other Unix tools do.
        _discard_stdout()
        return EXIT_FINDINGS


def _discard_stdout() -> None:
    """Point stdout's descriptor at /dev/null, so that Python's flush at exit
    does not fail a second time on what is still buffered."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real descriptor (tests capture stdout)
        pass
