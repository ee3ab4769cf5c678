"""Lint is part of the test command: snakefmt, snakemake --lint, ruff check, ruff format, mypy
on the package (its settings and the files it checks: pyproject.toml's [tool.mypy]), and
shellcheck and shfmt on the shell scripts."""

from __future__ import annotations

import subprocess

import pytest

from helpers.repo import BIN, REPO

SHELL_SCRIPTS = [".ci/run", *sorted(str(p.relative_to(REPO)) for p in REPO.glob("tools/**/*.sh"))]
CHECKS = {
    "snakefmt": [str(BIN / "snakefmt"), "--check", "Snakefile", "rules/"],
    "snakemake-lint": [str(BIN / "snakemake"), "--lint"],
    "ruff-check": [str(BIN / "ruff"), "check", "."],
    "ruff-format": [str(BIN / "ruff"), "format", "--check", "."],
    # Incremental: its cache (.mypy_cache) makes a rerun take about a second.
    "mypy": [str(BIN / "python"), "-m", "mypy"],
    "shellcheck": [str(BIN / "shellcheck"), *SHELL_SCRIPTS],
    "shfmt": [str(BIN / "shfmt"), "--diff", *SHELL_SCRIPTS],
}


# snakemake --lint starts Snakemake: the slow tier (tests/helpers/slow_guard.py).
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow if n == "snakemake-lint" else ())
        for n in sorted(CHECKS)
    ],
)
def test_lint(name: str) -> None:
    proc = subprocess.run(CHECKS[name], cwd=REPO, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{name} failed:\n{output}"
    if name == "snakemake-lint":
        # snakemake --lint exits 0 even when it has advice; the all-clear line is the verdict.
        assert "Congratulations, your workflow is in a good condition!" in output, output
