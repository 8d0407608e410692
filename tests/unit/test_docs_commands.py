"""The commands, flags, defaults, paths and layout that README.md and docs/*.md state, checked against the code.

- Every `python -m export|runtime|runtime.triton|runtime.triton.server|benchmarks.<name>` command in a
  fenced ```bash block (with or without a `.venv/bin/` prefix, `\\` continuations joined, `#` comments
  dropped) parses with that program's own argparse parser. `[--flag VALUE]` is an optional flag shown
  with its default: the brackets are dropped for parsing and VALUE must equal the parser's default.
  ALL-CAPS words and `<...>` stand for values the reader fills in.
- Every `--flag` in an inline `python -m ...` span of the prose exists in that program's parser.
- Defaults stated in prose (`DEFAULTS`: flags; `LIBRARY_DEFAULTS`: keyword defaults and constants):
  the doc must still say those words, and the code's default must still be what they state.
- No command names a program that does not exist (`python -m export.triton`).
- `make X` targets exist in the Makefile, `pip install ".[extras]"` extras in pyproject.toml; every
  `tests/...`, `runtime/...`, `export/...`, `benchmarks/...` path, relative link and dotted module name a
  doc cites exists; README's Layout lists every module on disk (one line each, with its job) and README
  stays under 10,000 bytes.

Parsers come from `build_parser()` where the program has one; otherwise the parser that `main(argv)`
builds is taken as it is about to parse (nothing after that runs). No subprocess, no export, no model.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import inspect
import io
import re
import shlex
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PLACEHOLDER = re.compile(r"^(?:[A-Z][A-Z0-9_]*|<[^>]+>)$")  # DIR, N, <yy.mm>, <folder>
PYTHON = re.compile(r"^(?:\S*/)?python3?$")  # python, python3, .venv/bin/python
SEPARATORS = {"&&", "||", ";", "|"}
OURS = ("export", "runtime", "benchmarks")  # the packages whose programs are checked


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ---- extracting commands -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    doc: str  # README.md, docs/x.md
    line: int
    text: str  # the joined command line as written, brackets included
    module: str  # export, runtime, runtime.triton, benchmarks.compare, ...
    args: tuple[str, ...]  # after `python -m MODULE`, brackets dropped, comments stripped

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.text}"


def bash_blocks(text: str) -> list[tuple[int, str]]:
    """(first line number, body) of each fenced ```bash block."""
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1))
            for m in re.finditer(r"^```bash[ \t]*\n(.*?)^```", text, re.M | re.S)]


def logical_lines(start: int, body: str) -> list[tuple[int, str]]:
    """Lines with `\\` continuations joined, each with the line number it starts on."""
    out: list[tuple[int, str]] = []
    pending, first = "", start
    for i, line in enumerate(body.splitlines()):
        if not pending:
            first = start + i
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((first, pending + line))
        pending = ""
    if pending:
        out.append((first, pending))
    return out


def split_commands(line: str) -> list[list[str]]:
    """Shell words of each command on a line (`#` comments dropped; split at &&, ||, ; and |)."""
    words = shlex.split(line, comments=True)
    commands: list[list[str]] = [[]]
    for word in words:
        if word in SEPARATORS:
            commands.append([])
        else:
            commands[-1].append(word)
    return [c for c in commands if c]


def unbracket(words: list[str]) -> list[str]:
    """`[--flag VALUE]` → `--flag VALUE` (an optional flag shown with its default)."""
    return [w for w in (w.removeprefix("[").removesuffix("]") for w in words) if w]


def doc_commands() -> list[Command]:
    found = []
    for path in DOCS:
        for start, body in bash_blocks(path.read_text()):
            for number, line in logical_lines(start + 1, body):
                for words in split_commands(line):
                    if len(words) >= 3 and PYTHON.match(words[0]) and words[1] == "-m" \
                            and words[2].split(".")[0] in OURS:
                        found.append(Command(rel(path), number, line.split("#")[0].strip(), words[2],
                                             tuple(unbracket(words[3:]))))
    return found


def shell_words() -> list[tuple[str, int, list[str]]]:
    """Every command of every bash block, as shell words: (doc, line, words)."""
    out = []
    for path in DOCS:
        for start, body in bash_blocks(path.read_text()):
            for number, line in logical_lines(start + 1, body):
                out.extend((rel(path), number, words) for words in split_commands(line))
    return out


COMMANDS = doc_commands()


# ---- the programs' parsers ---------------------------------------------------------------------------


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser


def parser_from_main(main) -> argparse.ArgumentParser:
    """The parser `main(argv)` builds, taken when it is about to parse: nothing after that runs."""

    def capture(self, *args, **kwargs):
        raise _Captured(self)

    with (mock.patch.object(argparse.ArgumentParser, "parse_args", capture),
          mock.patch.object(argparse.ArgumentParser, "parse_known_args", capture)):
        try:
            main([])
        except _Captured as captured:
            return captured.parser
    raise AssertionError(f"{main.__module__}.main returned without parsing its arguments")


@cache
def parser_for(module: str) -> argparse.ArgumentParser | None:
    """The program's parser, or None for a program that takes no arguments (its `main()` has no argv)."""
    if module == "export":
        from export.__main__ import build_parser
        return build_parser()
    if module == "runtime":
        from runtime.__main__ import build_parser
        return build_parser()
    if module == "runtime.triton":
        from runtime.triton.repository import build_parser
        return build_parser()
    if module_file(module) is None:
        raise AssertionError(f"there is no program `python -m {module}`")
    mod = importlib.import_module(module)
    if hasattr(mod, "build_parser"):
        return mod.build_parser()
    if not inspect.signature(mod.main).parameters:
        return None
    return parser_from_main(mod.main)


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def parser_of(module: str, sub: str | None = None) -> argparse.ArgumentParser:
    parser = parser_for(module)
    assert parser is not None, f"{module} takes no arguments"
    return subparsers(parser)[sub] if sub else parser


def action_of(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    for action in parser._actions:
        if flag in action.option_strings:
            return action
    raise AssertionError(f"{parser.prog} has no {flag}; it has {sorted(parser._option_string_actions)}")


def parse(parser: argparse.ArgumentParser, args: list[str]) -> argparse.Namespace:
    """`parser.parse_args(args)`, an AssertionError with argparse's own message when it refuses them."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            return parser.parse_args(args)
    except SystemExit:
        raise AssertionError(err.getvalue().strip().splitlines()[-1]) from None


def fill(args: tuple[str, ...]) -> list[str]:
    """Placeholders (DIR, N, <yy.mm>) become a value every type here accepts."""
    return ["1" if PLACEHOLDER.match(a) else a for a in args]


# ---- commands in bash blocks -------------------------------------------------------------------------


def test_the_docs_have_commands_for_every_program():
    modules = {c.module for c in COMMANDS}
    assert {"export", "runtime", "runtime.triton", "runtime.triton.server"} <= modules, modules
    assert any(m.startswith("benchmarks.") for m in modules)


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_documented_command_parses(command: Command):
    parser = parser_for(command.module)
    if parser is None:
        assert not command.args, f"{command}: `python -m {command.module}` takes no arguments"
        return
    args = fill(command.args)
    if "-h" in args or "--help" in args:  # prints help and exits: the parser having built is the check
        return
    try:
        parse(parser, args)
    except AssertionError as exc:
        raise AssertionError(f"{command}\n  {exc}") from None


def bracketed_defaults() -> list[tuple[Command, str, list[str]]]:
    """`[--flag VALUE ...]` in a bash command: (command, flag, values), where VALUE is no placeholder."""
    out = []
    for command in COMMANDS:
        for m in re.finditer(r"\[(--[\w-]+)((?:\s+[^\s\[\]]+)*)\]", command.text):
            values = m.group(2).split()
            if values and not any(PLACEHOLDER.match(v) for v in values):
                out.append((command, m.group(1), values))
    return out


@pytest.mark.parametrize("case", bracketed_defaults(), ids=lambda c: f"{c[0].doc}:{c[1]}")
def test_bracketed_flag_values_are_the_defaults(case):
    command, flag, values = case
    parser = parser_of(command.module)
    sub = subparsers(parser)
    if sub:  # runtime encode|info|serve
        parser = sub[next(a for a in command.args if a in sub)]
    action = action_of(parser, flag)
    converted = [action.type(v) if callable(action.type) else v for v in values]
    claimed = converted if action.nargs in ("+", "*") else converted[0]
    assert claimed == action.default, f"{command}: shows {flag} {' '.join(values)}, its default is {action.default!r}"


def test_bracketed_defaults_are_found():
    flags = {(c.module, flag) for c, flag, _ in bracketed_defaults()}
    assert {("runtime", "--max-batch-tokens"), ("runtime.triton", "--max-queue-delay-us")} <= flags, flags


# ---- flags named in inline `python -m ...` spans -----------------------------------------------------


def inline_commands() -> list[tuple[str, str, str]]:
    """(doc, module, span) for each inline `python -m MODULE ...` code span outside fenced blocks."""
    out = []
    for path in DOCS:
        text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
        for m in re.finditer(r"`(?:\S*/)?python3? -m ([\w.]+)([^`]*)`", text):
            out.append((rel(path), m.group(1), " ".join(m.group(0).split())))
    return out


@pytest.mark.parametrize("case", inline_commands(), ids=lambda c: f"{c[0]}:{c[2]}")
def test_inline_command_flags_exist(case):
    doc, module, span = case
    if module.split(".")[0] not in OURS:
        pytest.skip(f"not one of ours: {module}")
    parser = parser_for(module)
    words = span.strip("`").split()[3:]
    if parser is None:
        assert not words, f"{doc}: {span}: `python -m {module}` takes no arguments"
        return
    sub = subparsers(parser)
    if sub and words and not words[0].startswith("-"):
        names = words[0].split("|")  # `python -m runtime encode|info|serve`
        assert set(names) <= set(sub), f"{doc}: {span}: no subcommand {words[0]} (has {sorted(sub)})"
        parser = sub[names[0]]
    for word in words:
        flag = word.split("=")[0].rstrip(".,;:)")
        if flag.startswith("--"):
            assert flag in parser._option_string_actions, f"{doc}: {span}: {parser.prog} has no {flag}"


# ---- defaults stated in prose ------------------------------------------------------------------------

# (doc, the doc's own words, program, subcommand, flag, default): the words must be in the doc, and the
# flag's default in the parser must be the default those words state.
DEFAULTS = [
    ("README.md", "`--payload-limit` (2 MB)", "runtime", "serve", "--payload-limit", 2_000_000),
    ("README.md", "over `max_windows` (32) windows", "runtime", "serve", "--max-windows", 32),
    ("docs/limits.md", "Body over `--payload-limit` bytes (default 2,000,000, TEI's name)",
     "runtime", "serve", "--payload-limit", 2_000_000),
    ("docs/limits.md", "More inputs than `--max-client-batch-size` (32)",
     "runtime", "serve", "--max-client-batch-size", 32),
    ("docs/limits.md", "Requests in flight over `--max-concurrent-requests` (512)",
     "runtime", "serve", "--max-concurrent-requests", 512),
    ("docs/limits.md", "(`truncate=False` / `windows: true`; default 32)", "runtime", "serve", "--max-windows", 32),
    ("docs/limits.md", "within `--client-timeout` seconds (default 10)", "runtime", "serve", "--client-timeout", 10.0),
    ("docs/limits.md", "Open connections over `--max-connections` (default 1,024)",
     "runtime", "serve", "--max-connections", 1024),
    ("docs/server.md", "`--client-timeout` seconds (default 10)", "runtime", "serve", "--client-timeout", 10.0),
    ("docs/server.md", "`--max-connections` (default 1024)", "runtime", "serve", "--max-connections", 1024),
    ("docs/server.md", "The default (0) is 2 on ONNX Runtime's CPU provider", "runtime", "serve", "--instances", 0),
    ("docs/cpu-precisions.md", "the server (`--allow-spinning 1`) keep ORT's default",
     "runtime", "serve", "--allow-spinning", 1),
    ("docs/cpu-precisions.md", "| int8, static scales | `python -m export --model M --int8` |",
     "export", None, "--int8-scales", "static"),
    ("docs/gpu.md", "The export defaults (`--vocab-chunk 2048`, ReduceMax)", "export", None, "--vocab-chunk", 2048),
    ("docs/gpu.md", "The export defaults (`--vocab-chunk 2048`, ReduceMax)",
     "export", None, "--max-reduction", "reducemax"),
    ("docs/performance.md", "| 2048 (default) |", "export", None, "--vocab-chunk", 2048),
    ("docs/triton.md", "| `onnxruntime` (default) |", "runtime.triton", None, "--onnx-backend", "onnxruntime"),
    ("docs/export.md", "hub id (default `naver/splade-cocondenser-ensembledistil`",
     "export", None, "--model", "naver/splade-cocondenser-ensembledistil"),
    ("docs/export.md", "calibrated activation scales (default)", "export", None, "--int8-scales", "static"),
    ("docs/export.md", "(default 512: whole vectors", "export", None, "--top-k", 512),
    ("docs/export.md", "ONNX opset (default 17, at least 14)", "export", None, "--opset", 17),
    ("docs/export.md", "(default 2048; 0 = all at once;", "export", None, "--vocab-chunk", 2048),
    ("docs/export.md", "is below X (default 0.9)", "export", None, "--min-overlap", 0.9),
    ("docs/models.md", "`naver/splade-cocondenser-ensembledistil` (the default `--model`)",
     "export", None, "--model", "naver/splade-cocondenser-ensembledistil"),
]


def normalized(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("case", DEFAULTS, ids=lambda c: f"{c[0]}:{c[4]}")
def test_stated_default(case):
    doc, words, module, sub, flag, default = case
    assert normalized(words) in normalized((ROOT / doc).read_text()), f"{doc} no longer says {words!r}"
    actual = action_of(parser_of(module, sub), flag).default
    assert actual == default, f"{doc} says {words!r}: {flag} defaults to {actual!r}, not {default!r}"


# (doc, the doc's own words, "module:Name.parameter" or "module:CONSTANT", default): library defaults.
LIBRARY_DEFAULTS = [
    ("docs/runtime.md", "`DynamicBatcher(enc, max_batch_size=32, max_wait_ms=0)`",
     "runtime.serving.batcher:DynamicBatcher.max_batch_size", 32),
    ("docs/runtime.md", "`DynamicBatcher(enc, max_batch_size=32, max_wait_ms=0)`",
     "runtime.serving.batcher:DynamicBatcher.max_wait_ms", 0),
    ("docs/runtime.md", "(`max_batch_tokens`: the encoder's own, 16384 unless set)",
     "runtime.serving.batcher:DynamicBatcher.max_batch_tokens", None),
    ("docs/runtime.md", "(`max_batch_tokens`: the encoder's own, 16384 unless set)",
     "runtime.core.options:EncoderOptions.max_batch_tokens", 16384),
    ("docs/runtime.md", "up to `max_windows` (default 32) windows", "runtime.core.options:EncoderOptions.max_windows", 32),
    ("docs/runtime.md", "batch_size=32, top_k=None, threshold=0.0)", "runtime.core.options:EncodeOptions.batch_size", 32),
    ("docs/runtime.md", "batch_size=32, top_k=None, threshold=0.0)", "runtime.core.options:EncodeOptions.top_k", None),
    ("docs/runtime.md", "batch_size=32, top_k=None, threshold=0.0)", "runtime.core.options:EncodeOptions.threshold", 0.0),
    ("docs/cpu-precisions.md", "(`SpladeEncoder(..., allow_spinning=True)`)",
     "runtime.backends.options:SessionOptions.allow_spinning", True),
    ("docs/limits.md", "works through a call 1,024 texts at a time", "runtime.core.pipeline:CHUNK_TEXTS", 1024),
    ("docs/limits.md", "`max_length × 32` characters of a text are tokenized", "runtime.core.options:CHARS_PER_TOKEN", 32),
    ("docs/server.md", "Short requests (up to 4,096 characters) are tokenized on the event loop",
     "runtime.serving.app:INLINE_TOKENIZE_CHARS", 4096),
    ("docs/gpu.md", "batches 1–32, at most 4096 tokens", "runtime.core.batching:Buckets.max_tokens", 4096),
]


def library_default(where: str):
    module, _, name = where.partition(":")
    owner, _, param = name.partition(".")
    obj = getattr(importlib.import_module(module), owner)
    return inspect.signature(obj).parameters[param].default if param else obj


@pytest.mark.parametrize("case", LIBRARY_DEFAULTS, ids=lambda c: f"{c[0]}:{c[2]}")
def test_stated_library_default(case):
    doc, words, where, default = case
    assert normalized(words) in normalized((ROOT / doc).read_text()), f"{doc} no longer says {words!r}"
    actual = library_default(where)
    assert actual == default, f"{doc} says {words!r}: {where} is {actual!r}, not {default!r}"


# ---- make targets, extras ----------------------------------------------------------------------------


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return {m.group(1) for m in re.finditer(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, re.M)}


def test_quick_start_make_targets_exist():
    readme = (ROOT / "README.md").read_text()
    quick = readme[readme.index("## Quick start"):]
    quick = quick[:quick.index("\n## ", 1)]
    named = {words[1] for _, _, words in shell_words() if words[0] == "make" and len(words) > 1}
    assert {"demo", "test", "test-unit", "lint"} <= {w[1] for w in map(str.split, re.findall(r"^make \S+", quick, re.M))}
    missing = sorted(named - make_targets())
    assert not missing, f"make targets named in the docs but not in the Makefile: {missing}"


def test_pip_extras_exist():
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for doc, line, words in shell_words():
        if words[:2] != ["pip", "install"]:
            continue
        for word in words[2:]:
            m = re.search(r"\[([\w,-]+)\]$", word)
            if m and word.split("[")[0] in (".", "splade-onnx"):
                unknown = set(m.group(1).split(",")) - extras
                assert not unknown, f"{doc}:{line}: no extra {sorted(unknown)} in pyproject.toml"


# ---- cited paths, links and module names -------------------------------------------------------------

PATH_CITED = re.compile(r"(?<![\w/.-])((?:tests|runtime|export|benchmarks|docs)/[\w./*-]*)")


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_cited_paths_exist(doc: Path):
    missing = []
    for m in PATH_CITED.finditer(doc.read_text()):
        cited = m.group(1).rstrip(".")
        if not (list(ROOT.glob(cited.rstrip("/"))) if "*" in cited else (ROOT / cited).exists()):
            missing.append(cited)
    assert not missing, f"{rel(doc)} cites paths that do not exist: {sorted(set(missing))}"


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_relative_links_resolve(doc: Path):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
        if "://" in target or target.startswith("#"):
            continue
        if not (doc.parent / target.split("#")[0]).exists():
            broken.append(target)
    assert not broken, f"{rel(doc)}: broken links {broken}"


def module_file(dotted: str) -> Path | None:
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_cited_module_names_exist(doc: Path):
    """`runtime.core.options.CHARS_PER_TOKEN`, `runtime.triton.server`: the module exists and defines the name."""
    wrong = []
    for dotted in re.findall(r"`((?:runtime|export|benchmarks)(?:\.\w+)+)`", doc.read_text()):
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):
            path = module_file(".".join(parts[:cut]))
            if path is not None:
                rest = parts[cut:]
                if len(rest) > 1 or (rest and not re.search(rf"\b{rest[0]}\b", path.read_text())):
                    wrong.append(dotted)
                break
        else:
            wrong.append(dotted)
    assert not wrong, f"{rel(doc)} names modules or attributes that do not exist: {wrong}"


# ---- README's Layout ---------------------------------------------------------------------------------


def layout_entries() -> dict[str, str]:
    """Path → job, from README's Layout block (two spaces of indent per folder level)."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Layout"):]
    block = re.search(r"^```\n(.*?)^```", section, re.M | re.S)
    assert block, "README's Layout has no code block"
    entries: dict[str, str] = {}
    stack: list[str] = []
    for line in block.group(1).splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        if indent % 2 or indent // 2 > len(stack):
            continue  # a wrapped description
        name, _, job = line.strip().partition(" ")
        stack = stack[: indent // 2]
        path = "/".join([*stack, name.rstrip("/")])
        entries[path] = job.strip()
        if name.endswith("/"):
            stack.append(name.rstrip("/"))
    return entries


def docstring_only(path: Path) -> bool:
    body = ast.parse(path.read_text()).body
    return all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body)


def modules_on_disk() -> set[str]:
    """Every module and data file of export/, runtime/, benchmarks/ (results/ as one folder), and tests' top level.

    `__init__.py` files that hold only a docstring are left out: they have no job of their own.
    """
    found: set[str] = set()
    for package in ("export", "runtime", "benchmarks"):
        for path in (ROOT / package).rglob("*"):
            parts = path.relative_to(ROOT).parts
            if not path.is_file() or "__pycache__" in parts or path.suffix == ".pyc":
                continue
            if parts[:2] == ("benchmarks", "results"):
                found.add("benchmarks/results")
            elif path.name == "__init__.py" and docstring_only(path):
                continue
            else:
                found.add("/".join(parts))
    for path in (ROOT / "tests").iterdir():
        if path.name in ("__init__.py", "__pycache__"):
            continue
        if path.is_dir() or path.suffix == ".py":
            found.add(f"tests/{path.name}")
    return found


def test_layout_lists_every_module_and_nothing_else():
    entries = layout_entries()
    listed = {p for p in entries if not (ROOT / p).is_dir() or p in ("benchmarks/results",)
              or p.startswith("tests/")}
    on_disk = modules_on_disk()
    assert not on_disk - listed, f"README's Layout misses {sorted(on_disk - listed)}"
    assert not listed - on_disk, f"README's Layout lists what is not there: {sorted(listed - on_disk)}"
    jobless = [p for p in on_disk if not entries.get(p)]
    assert not jobless, f"README's Layout gives no job for {jobless}"


def test_readme_is_short_and_about_the_product():
    readme = (ROOT / "README.md").read_bytes()
    assert len(readme) < 10_000, f"README.md is {len(readme)} bytes; move detail to docs/"
    for doc in DOCS:
        assert not re.search(r"\b(?:issue|ticket|PR) #\d+", doc.read_text(), re.I), f"{rel(doc)} cites an issue number"
