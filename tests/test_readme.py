"""README: its shell commands work as written, and every ``mmm`` command it shows still exists.

Shell blocks (```bash```) are split into commands. Each command is either run here (in a temporary
folder, with ``.venv/bin`` on PATH as after ``source .venv/bin/activate`` and ``MMM_OUTPUTS`` in a
temporary folder) or named in ``SKIPPED`` with the reason; a command in neither fails, so a new
README command is never skipped silently. Usage blocks (plain ```) list ``mmm`` synopses: each
(sub)command must answer ``--help`` and name every option the README shows.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
VENV_BIN = REPO / ".venv" / "bin"

# Not run here, by exact command text, with the reason (shown by `pytest -rs`).
SKIPPED = {
    "make run": "builds .venv if missing and fits the example for minutes; tests/test_notebooks.py runs the stages",
    "make test": "is this test suite",
    "conda env create -f environment.yml && conda activate mmm": "needs conda and creates an environment",
    "mmm run params/example.yaml": "fits the example for minutes; tests/test_notebooks.py runs the stages",
    "pytest -q": "is this test suite",
}
SHELL_LANGS = {"bash", "sh", "shell", "console"}
TIMEOUT_S = 120


def fenced_blocks(text: str) -> list[tuple[str, str, int]]:
    """``(language, body, line of the opening fence)`` for every fenced code block."""
    blocks, lang, body, start = [], None, [], 0
    for i, line in enumerate(text.splitlines(), 1):
        fence = re.match(r"^\s*```\s*([\w+-]*)\s*$", line)
        if fence and lang is None:
            lang, body, start = fence.group(1).lower(), [], i
        elif fence:
            blocks.append((lang, "\n".join(body), start))
            lang = None
        elif lang is not None:
            body.append(line)
    assert lang is None, f"README.md: code block opened at line {start} is never closed"
    return blocks


def _strip_comment(line: str) -> str:
    # README commands quote no '#'; a comment starts at an unquoted ' #' or at the line's start.
    return re.sub(r"(^|\s)#.*$", "", line).strip()


def shell_commands(text: str) -> list[tuple[str, int, int]]:
    """``(command, README line, line of its block)`` for each command in the README's shell blocks."""
    out = []
    for lang, body, start in fenced_blocks(text):
        if lang not in SHELL_LANGS:
            continue
        for k, line in enumerate(body.splitlines(), start + 1):
            cmd = _strip_comment(line.removeprefix("$ "))
            if cmd:
                out.append((cmd, k, start))
    return out


def _split_top(s: str) -> list[str]:
    """Split at `` | `` outside brackets: ``add X [--a | --b] | list`` -> ``["add X [--a | --b]", "list"]``."""
    parts, depth, cur = [], 0, ""
    i = 0
    while i < len(s):
        c = s[i]
        depth += c == "["
        depth -= c == "]"
        if depth == 0 and s.startswith(" | ", i):
            parts.append(cur.strip())
            cur, i = "", i + 3
            continue
        cur += c
        i += 1
    return [*parts, cur.strip()]


def synopses(text: str) -> list[tuple[list[str], list[str], int]]:
    """``(command path, options shown, README line)`` for each ``mmm`` synopsis in plain code blocks.

    ``mmm runs list | status ID`` gives ``(["runs", "list"], [], n)`` and ``(["runs", "status"], [], n)``;
    words in lower case right after the command are subcommands, UPPER-case words are placeholders.
    A ``KIND: a b c`` line under a synopsis lists values its help must name.
    """
    out: list[tuple[list[str], list[str], int]] = []
    for lang, body, start in fenced_blocks(text):
        if lang:
            continue
        for k, line in enumerate(body.splitlines(), start + 1):
            words = line.split()
            if words[:1] == ["mmm"] and len(words) > 1:
                cmd, rest = words[1], line.split(None, 2)[2] if len(words) > 2 else ""
                for alt in _split_top(rest) if rest else [""]:
                    first = alt.split()[0] if alt.split() else ""
                    path = [cmd, first] if re.fullmatch(r"[a-z]+", first) else [cmd]
                    out.append((path, re.findall(r"--[a-z][a-z-]*", alt), k))
            elif re.match(r"^\s+[A-Z_]+:\s", line) and out:
                path, opts, _ = out[-1]
                out.append((path, [*opts, *line.split(":", 1)[1].split()], k))
    return out


TEXT = README.read_text(encoding="utf-8")
COMMANDS = shell_commands(TEXT)
SYNOPSES = synopses(TEXT)


def _env(tmp_path: Path, *, activated: bool = True) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONHOME"}}
    # The test may itself run from .venv/bin: a clean PATH shows what a fresh shell has.
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != VENV_BIN.resolve()]
    env["PATH"] = os.pathsep.join([str(VENV_BIN), *path] if activated else path)
    env["MMM_OUTPUTS"] = str(tmp_path / "outputs")
    env["HOME"] = env.get("HOME", str(tmp_path))
    return env


def _workdir(tmp_path: Path) -> Path:
    """A folder that looks like the repo (``.venv``, ``params``, ``data``) but where writes land in tmp."""
    work = tmp_path / "work"
    work.mkdir()
    for name in (".venv", "params", "data"):
        (work / name).symlink_to(REPO / name)
    return work


def _run(cmd: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f"set -euo pipefail\n{cmd}"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT_S)


def _dry_check(cmd: str, line: int, tmp_path: Path) -> None:
    """A skipped command must still exist: its make target (``make -n``), ``mmm`` subcommand and files."""
    words = cmd.split()
    if words[0] == "make":
        r = subprocess.run(["make", "-n", *words[1:]], cwd=REPO, env=_env(tmp_path), capture_output=True, text=True,
                           timeout=TIMEOUT_S)
        assert r.returncode == 0, f"README.md:{line} `{cmd}`: make has no such target:\n{r.stderr[-1500:]}"
    elif words[0] == "mmm":
        _check_synopsis(words[1:2], [w for w in words if w.startswith("--")], line, tmp_path)
        for w in words[2:]:
            if "/" in w and not w.startswith("-"):
                assert (REPO / w).exists(), f"README.md:{line} `{cmd}`: {w} does not exist"


pytestmark = pytest.mark.skipif(not (VENV_BIN / "mmm").exists(), reason=".venv/bin/mmm missing: run `make env` first")


def test_readme_has_commands():
    assert len(COMMANDS) >= 5 and len(SYNOPSES) >= 5
    assert any(c == "source .venv/bin/activate" for c, _, _ in COMMANDS), "README must say how to put mmm on PATH"


def test_skip_list_names_readme_commands():
    """A skip entry for a command the README no longer shows is stale: remove it."""
    stale = set(SKIPPED) - {c for c, _, _ in COMMANDS}
    assert not stale, f"SKIPPED names commands that are not in README.md: {sorted(stale)}"


_BLOCK_DIRS: dict[int, Path] = {}


@pytest.fixture
def block_dir(request, tmp_path_factory) -> Path:
    """One working folder per README block: its commands run in order and see each other's files."""
    block = request.node.callspec.params["block"]
    if block not in _BLOCK_DIRS:
        _BLOCK_DIRS[block] = _workdir(tmp_path_factory.mktemp(f"readme_block_{block}"))
    return _BLOCK_DIRS[block]


@pytest.mark.parametrize("cmd,line,block", COMMANDS, ids=[f"L{n}:{c[:40]}" for c, n, _ in COMMANDS])
def test_shell_command(cmd, line, block, block_dir, tmp_path):
    if cmd in SKIPPED:
        _dry_check(cmd, line, tmp_path)
        pytest.skip(f"README.md:{line} `{cmd}` not run: {SKIPPED[cmd]}")
    work = block_dir
    tmp_path = work.parent  # MMM_OUTPUTS is shared by the block too
    if cmd == "source .venv/bin/activate":
        # From a shell without the venv on PATH, activation must put the project's mmm there.
        r = _run(f"{cmd}\ncommand -v mmm", work, _env(tmp_path, activated=False))
        assert r.returncode == 0, r.stderr
        assert Path(r.stdout.strip()).resolve() == (VENV_BIN / "mmm").resolve(), r.stdout
        return
    r = _run(cmd, work, _env(tmp_path))
    assert r.returncode == 0, (
        f"README.md:{line} `{cmd}` exited {r.returncode}\nstdout:\n{r.stdout[-2000:]}\nstderr:\n{r.stderr[-2000:]}"
    )


def _check_synopsis(path: list[str], options: list[str], line: int, tmp_path: Path) -> None:
    r = subprocess.run([str(VENV_BIN / "mmm"), *path, "--help"], capture_output=True, text=True, timeout=TIMEOUT_S,
                       env=_env(tmp_path))
    shown = "mmm " + " ".join(path)
    assert r.returncode == 0, f"README.md:{line} shows `{shown}`, which the CLI rejects:\n{r.stderr[-1500:]}"
    missing = [o for o in options if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", r.stdout)]
    assert not missing, f"README.md:{line}: `{shown} --help` does not mention {missing}"


@pytest.mark.parametrize("path,options,line", SYNOPSES, ids=[f"L{n}:{' '.join(p)}" for p, _, n in SYNOPSES])
def test_mmm_synopsis_exists(path, options, line, tmp_path):
    _check_synopsis(path, options, line, tmp_path)


def test_a_command_that_no_longer_exists_fails(tmp_path):
    """Negative control: the checks above would catch a removed command, subcommand or option."""
    with pytest.raises(AssertionError, match="rejects"):
        _check_synopsis(["runs", "purge"], [], 0, tmp_path)
    with pytest.raises(AssertionError, match="does not mention"):
        _check_synopsis(["sample"], ["--seeds"], 0, tmp_path)
    assert _run("mmm frobnicate", _workdir(tmp_path), _env(tmp_path)).returncode != 0
    with pytest.raises(AssertionError, match="no such target"):
        _dry_check("make frobnicate", 0, tmp_path)


def test_parser_helpers():
    text = ("x\n```bash\nmake run   # a comment\n\n$ mmm runs list\n```\n"
            "```\nmmm a b | c [--x | --y] | D\n  KIND: p q\n```\n")
    assert shell_commands(text) == [("make run", 3, 2), ("mmm runs list", 5, 2)]
    assert synopses(text) == [(["a", "b"], [], 8), (["a", "c"], ["--x", "--y"], 8), (["a"], [], 8),
                              (["a"], ["p", "q"], 9)]
    assert shutil.which("bash")
