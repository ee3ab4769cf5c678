"""The slow tier's guard (tests/helpers/slow_guard.py): which commands start Snakemake or segpipe, and
an unmarked test that starts one fails while a slow- or check-marked one runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.slow_guard import starts_workflow

BIN = Path(sys.executable).parent
TESTS = Path(__file__).resolve().parent

STARTS = [
    ["snakemake", "--version"],
    [str(BIN / "snakemake"), "-n"],
    [BIN / "snakemake", "-n"],
    [os.fsencode(BIN / "segpipe"), b"predict"],
    ".venv/bin/snakemake --cores 1",
    "segpipe verify data/",
    [sys.executable, "-m", "snakemake", "-n"],
    [sys.executable, "-msnakemake", "-n"],
    [sys.executable, "-u", "-X", "importtime", "-m", "snakemake.cli"],
    ["python3", "-m", "segpipe", "predict"],
    ["python3.11", "-m", "segpipe.cli", "predict"],
    [sys.executable, "-c", "from segpipe.cli import main; main(['verify'])"],
    [sys.executable, "-c", "import snakemake.cli; snakemake.cli.main()"],
    [sys.executable, "-c", "from snakemake.api import SnakemakeApi"],
    ["env", "HF_HUB_OFFLINE=1", "snakemake", "-n"],
    ["timeout", "60", "nice", "-n", "5", "segpipe", "predict"],
    ["bash", "-c", "cd /tmp && HF_HUB_OFFLINE=1 snakemake -n"],
    ["sh", "-ec", "echo start; segpipe verify x"],
]
STARTS_IN_SHELL = [
    "cd /tmp && snakemake -n",
    "true; .venv/bin/segpipe predict a b",
    "echo $(snakemake --version)",
    "(cd x; python -m snakemake -n) | tee log",
    f"{sys.executable} -m snakemake --cores 1 > out.txt 2>&1",
    ["snakemake --version"],  # shell=True with a list: the first item is the command line
]
DOES_NOT_START = [
    ["git", "status"],
    [sys.executable, "-m", "pytest", "-q"],
    [sys.executable, "-mpytest"],
    [sys.executable, "-c", "import segpipe.workflow.config"],
    [sys.executable, "scripts/train.py", "snakemake"],
    [sys.executable, "-m", "snakemake_executor_plugin_slurm"],
    ["echo", "snakemake"],
    ["grep", "-r", "segpipe", "docs"],
    [str(BIN / "ruff"), "check", "."],
    ["bash", "-c", "echo snakemake"],
    "ls /work/segpipe/snakemake",
    ["/opt/snakemake/bin/dot", "-Tsvg"],
]


@pytest.mark.parametrize("args", STARTS, ids=str)
def test_commands_that_start_snakemake_or_segpipe(args):
    assert starts_workflow(args)


@pytest.mark.parametrize("args", STARTS_IN_SHELL, ids=str)
def test_shell_lines_that_start_snakemake_or_segpipe(args):
    assert starts_workflow(args, shell=True)


@pytest.mark.parametrize("args", DOES_NOT_START, ids=str)
def test_commands_that_start_neither(args):
    assert not starts_workflow(args)
    assert not starts_workflow(args, shell=True)


def test_executable_names_the_program():
    assert starts_workflow(["anything", "-n"], executable=BIN / "snakemake")
    assert not starts_workflow(["snakemake-like", "-n"], executable="/bin/echo")


INNER = """
import os
import subprocess

import pytest

FAKE = {fake!r}  # a stand-in named snakemake: the guard goes by the name, and it starts fast


@pytest.fixture(scope="module")
def workflow_run():
    return subprocess.run([FAKE, "module-fixture"], capture_output=True).returncode


def test_unmarked_run():
    subprocess.run([FAKE, "--version"], check=True)


def test_unmarked_string_through_a_shell():
    subprocess.check_output(f"cd / && {{FAKE}} --version", shell=True)


def test_unmarked_popen_swallowing_errors():
    try:
        subprocess.Popen(["python", "-m", "snakemake", "--version"])
    except Exception:
        pass


def test_unmarked_os_system():
    os.system(f"{{FAKE}} --version")


def test_unmarked_python_api():
    from snakemake.api import SnakemakeApi

    SnakemakeApi()


def test_unmarked_module_fixture(workflow_run):
    assert workflow_run == 0


def test_unmarked_other_command():
    subprocess.run(["true"], check=True)


@pytest.mark.slow
def test_slow_run():
    assert subprocess.run([FAKE, "--version"], capture_output=True, text=True).stdout == "ok\\n"


@pytest.mark.check
def test_check_run():
    subprocess.run([FAKE, "--version"], check=True)


@pytest.mark.slow
def test_slow_python_api():
    from snakemake.api import SnakemakeApi

    SnakemakeApi()
"""


def test_an_unmarked_test_that_starts_snakemake_fails(tmp_path):
    """In a separate pytest run with the guard: each unmarked way to start Snakemake fails with
    a message naming the test and the command; the slow- and check-marked tests pass."""
    fake = tmp_path / "bin" / "snakemake"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho ok\n")
    fake.chmod(0o755)
    api = tmp_path / "stand_in" / "snakemake"  # snakemake.api without its import time
    api.mkdir(parents=True)
    (api / "__init__.py").write_text("")
    (api / "api.py").write_text("class SnakemakeApi:\n    pass\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow\n    check\n")
    (tmp_path / "test_inner.py").write_text(INNER.format(fake=str(fake)))
    env = {
        **os.environ,
        "COLUMNS": "500",
        "PYTHONPATH": os.pathsep.join([str(api.parent), str(TESTS)]),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "helpers.slow_guard",
            "-p",
            "no:cacheprovider",
            "-rA",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "5 failed, 4 passed, 1 error" in out, out
    for name, command in [
        ("run", f"{fake} --version"),
        ("string_through_a_shell", f"cd / && {fake} --version"),
        ("popen_swallowing_errors", "python -m snakemake --version"),
        ("os_system", f"{fake} --version"),
    ]:
        assert (
            f"FAILED test_inner.py::test_unmarked_{name} - Failed: test_inner.py::"
            f"test_unmarked_{name} starts '{command}' but is not marked slow" in out
        ), out
    assert (
        "FAILED test_inner.py::test_unmarked_python_api - Failed: test_inner.py::"
        "test_unmarked_python_api starts snakemake's Python API" in out
    ), out
    assert (
        "ERROR test_inner.py::test_unmarked_module_fixture - Failed: test_inner.py::"
        f"test_unmarked_module_fixture starts '{fake} module-fixture'" in out
    ), out
    assert out.count("; mark the test @pytest.mark.slow") >= 6, out
    assert "Traceback" not in out, out
    for name in (
        "test_unmarked_other_command",
        "test_slow_run",
        "test_check_run",
        "test_slow_python_api",
    ):
        assert f"PASSED test_inner.py::{name}" in out, out


def test_the_guard_is_on_in_this_suite():
    """conftest.py loads the guard: in this unmarked test, starting snakemake fails."""
    with pytest.raises(pytest.fail.Exception, match="test_the_guard_is_on_in_this_suite starts"):
        subprocess.run([str(BIN / "snakemake"), "--version"])
