"""The slow tier's guard: a test that starts Snakemake or the ``segpipe`` command must be marked
``slow`` (or ``check``, the one tiny end-to-end run of ``make check``).

Loaded by conftest.py as a pytest plugin. While an unmarked test sets up its fixtures (of any
scope) or runs, every process started through :mod:`subprocess` (``run``, ``check_output``,
``call``: all go through ``Popen``) and ``os.system`` is checked, and so is every use of
snakemake's Python API (``snakemake.api.SnakemakeApi``, which ``snakemake.cli.main`` builds). A
command that starts Snakemake or segpipe fails the test, naming it and the command, before the
process starts.
"""

from __future__ import annotations

import importlib.abc
import os
import re
import shlex
import subprocess
import sys
from pathlib import PurePath

import pytest

SLOW_MARKS = ("slow", "check")
PROGRAMS = ("snakemake", "segpipe")  # commands, and the Python packages behind them (-m, -c)
WRAPPERS = ("env", "exec", "command", "nohup", "nice", "time", "timeout", "stdbuf", "xargs")
SHELLS = ("sh", "bash", "dash", "zsh")
PYTHON = re.compile(r"python(\d+(\.\d+)*)?$")
ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")
WRAPPER_ARGUMENT = re.compile(r"^(-.*|\d+(\.\d+)?[smhd]?)$")  # options, durations, niceness
SHELL_OPERATOR = re.compile(r"^[;&|()<>]+$")
PYTHON_OPTIONS_WITH_VALUE = ("-W", "-X", "-Q")
# Python code (``python -c``) that starts snakemake's CLI or API, or segpipe's command.
CODE = re.compile(
    r"\bsnakemake\.(cli|api)\b|\bfrom\s+snakemake\s+import\s+(cli|api)\b"
    r"|\bsegpipe\.cli\b|\bfrom\s+segpipe\s+import\s+cli\b"
)


def _split(text: str) -> list[list[str]]:
    """A shell command line as its simple commands' argument lists (split at ; && || | ( ))."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: the words are still worth a look
        tokens = text.split()
    commands: list[list[str]] = [[]]
    for token in tokens:
        if SHELL_OPERATOR.match(token):
            commands.append([])
        else:
            commands[-1].append(token.lstrip("$`"))
    return [c for c in commands if c]


def _program(argv: list[str]) -> int | None:
    """Where the program starts in ``argv``: after variable assignments and wrappers (env,
    timeout 60, nice -n 5, ...)."""
    i = 0
    while i < len(argv):
        if ASSIGNMENT.match(argv[i]):
            i += 1
        elif PurePath(argv[i]).name in WRAPPERS:
            i += 1
            while i < len(argv) and (WRAPPER_ARGUMENT.match(argv[i]) or ASSIGNMENT.match(argv[i])):
                i += 1
        else:
            return i
    return None


def _python_target(options: list[str]) -> str | None:
    """What ``python <options>`` runs: ``-m`` a module, ``-c`` code (matched against CODE)."""
    i = 0
    while i < len(options):
        word = options[i]
        if word in ("-m", "-c") or word.startswith(("-m", "-c")) and len(word) > 2:
            value = word[2:] or (options[i + 1] if i + 1 < len(options) else "")
            if word.startswith("-c"):
                return "snakemake" if CODE.search(value) else None
            return value
        if not word.startswith("-") or word == "-":
            return None  # a script or stdin
        i += 2 if word in PYTHON_OPTIONS_WITH_VALUE else 1
    return None


def _argv_starts(argv: list[str]) -> bool:
    start = _program(argv)
    if start is None:
        return False
    program, rest = argv[start], argv[start + 1 :]
    name = PurePath(program).name
    if name in PROGRAMS:
        return True
    if name in SHELLS:
        for i, word in enumerate(rest[:-1]):
            if re.match(r"^-\w*c\w*$", word):
                return any(_argv_starts(c) for c in _split(rest[i + 1]))
        return False
    if PYTHON.match(name) or program == sys.executable:
        target = _python_target(rest)
        return target is not None and target.split(".")[0] in PROGRAMS
    return False


def starts_workflow(args, shell: bool = False, executable=None) -> bool:
    """Whether ``subprocess.Popen(args, shell=shell, executable=executable)`` starts Snakemake
    or the segpipe command: argv as a list or a string, through a shell, by absolute path,
    ``python -m`` (any interpreter), ``python -c`` code that imports their CLI or API."""
    if isinstance(args, (str, bytes, os.PathLike)):
        commands = _split(os.fsdecode(args))
    else:
        argv = [os.fsdecode(a) for a in args]
        commands = _split(argv[0]) if shell and argv else [argv]
    if executable is not None and not shell and commands:
        commands[0] = [os.fsdecode(executable), *commands[0][1:]]
    return any(_argv_starts(argv) for argv in commands)


def describe(args) -> str:
    if isinstance(args, (str, bytes, os.PathLike)):
        return os.fsdecode(args)
    return shlex.join(os.fsdecode(a) for a in args)


class _State:
    """The unmarked test now setting up or running, if any."""

    nodeid: str | None = None


def refuse(what: str) -> None:
    """Fail the current unmarked test, if one is running, for starting ``what``."""
    if _State.nodeid is not None:
        pytest.fail(
            f"{_State.nodeid} starts {what} but is not marked slow: Snakemake and the segpipe "
            "command belong to the slow tier; mark the test @pytest.mark.slow",
            pytrace=False,
        )


_ORIGINAL_POPEN = subprocess.Popen
_ORIGINAL_SYSTEM = os.system


class GuardedPopen(subprocess.Popen):
    def __init__(self, args, *rest, **kwargs):
        shell = kwargs.get("shell", rest[7] if len(rest) > 7 else False)
        executable = kwargs.get("executable", rest[1] if len(rest) > 1 else None)
        if _State.nodeid is not None and starts_workflow(args, shell, executable):
            refuse(repr(describe(args)))
        super().__init__(args, *rest, **kwargs)


def guarded_system(command):
    if _State.nodeid is not None and starts_workflow(command, shell=True):
        refuse(repr(os.fsdecode(command)))
    return _ORIGINAL_SYSTEM(command)


def _guard_api(module) -> None:
    """Make ``module.SnakemakeApi`` (snakemake.api) refuse to start in an unmarked test."""
    api = module.SnakemakeApi
    if getattr(api.__init__, "slow_guard", False):
        return
    original = api.__init__

    def __init__(self, *args, **kwargs):
        refuse("snakemake's Python API (snakemake.api.SnakemakeApi)")
        original(self, *args, **kwargs)

    __init__.slow_guard = True
    api.__init__ = __init__


class _ApiFinder(importlib.abc.MetaPathFinder):
    """Guards snakemake.api once something imports it (importing it costs seconds, so the guard
    does not import it itself)."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "snakemake.api":
            return None
        for finder in sys.meta_path:
            spec = None if finder is self else finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                exec_module = spec.loader.exec_module

                def exec_and_guard(module, exec_module=exec_module):
                    exec_module(module)
                    _guard_api(module)

                spec.loader.exec_module = exec_and_guard
                return spec
        return None


def _unmarked(item) -> bool:
    return not any(item.get_closest_marker(mark) for mark in SLOW_MARKS)


def pytest_configure(config):
    subprocess.Popen = GuardedPopen
    os.system = guarded_system
    if "snakemake.api" in sys.modules:
        _guard_api(sys.modules["snakemake.api"])
    else:
        sys.meta_path.insert(0, _ApiFinder())


def pytest_unconfigure(config):
    subprocess.Popen = _ORIGINAL_POPEN
    os.system = _ORIGINAL_SYSTEM
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _ApiFinder)]


def _watch(item):
    _State.nodeid = item.nodeid if _unmarked(item) else None
    try:
        yield
    finally:
        _State.nodeid = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    yield from _watch(item)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    yield from _watch(item)
