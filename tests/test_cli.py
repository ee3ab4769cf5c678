"""The ``segpipe`` command's help: every example it shows is a command the parser takes, naming
configs the repository has and output paths the pipeline writes."""

from __future__ import annotations

import argparse
import re
import shlex

import pytest

from segpipe import cli

from helpers.repo import REPO


def torch_sees_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _helps() -> dict[str, str]:
    """``segpipe --help`` and each command's --help, by command ("" for the top level)."""
    parser = cli._parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {"": parser.format_help(), **{n: p.format_help() for n, p in sub.choices.items()}}


def examples(help_text: str) -> list[list[str]]:
    """The command lines of a help's ``Examples:`` block, split as a shell splits them."""
    block = help_text.split("Examples:\n", 1)[1].split("\n\n", 1)[0]
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


HELPS = _helps()


@pytest.mark.parametrize("command", sorted(HELPS))
def test_every_help_shows_examples_of_its_command(command: str) -> None:
    lines = examples(HELPS[command])
    assert lines, f"segpipe {command} --help shows no examples"
    assert all(line[0] == "segpipe" for line in lines)
    if command:
        assert {line[1] for line in lines} == {command}


def _written_patterns() -> list[re.Pattern]:
    """The results/ paths the rules write, from segpipe.workflow.paths (their one home): each
    pattern function called with its wildcards, a required argument as a wildcard too; each
    wildcard matches one path segment."""
    import inspect

    from segpipe.workflow import paths

    spelled = set()
    for name, function in inspect.getmembers(paths, inspect.isfunction):
        if name.startswith("_") or function.__module__ != paths.__name__:
            continue
        required = [
            p.name
            for p in inspect.signature(function).parameters.values()
            if p.default is inspect.Parameter.empty
        ]
        try:
            found = function(**{p: "{" + p + "}" for p in required})
        except (TypeError, ValueError, KeyError):
            continue
        if isinstance(found, str) and found.startswith("results/"):
            spelled.add(found)
    return [re.compile(re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(lit)) + "$") for lit in spelled]


@pytest.mark.parametrize(
    "line", [line for text in HELPS.values() for line in examples(text)], ids=" ".join
)
def test_every_example_is_a_command_the_parser_takes(line: list[str]) -> None:
    args = cli._parser().parse_args(line[1:])
    assert args.command == line[1]
    configs = getattr(args, "configfile", None) or []
    for config in configs if isinstance(configs, list) else [configs]:
        if str(config) != "my.yaml":  # a user's own config
            assert (REPO / config).is_file(), f"{config}: cited by the help, not in the repo"
    results = [arg for arg in line if arg.startswith("results/")]
    patterns = _written_patterns()
    for path in results:
        assert any(p.match(path) for p in patterns), f"{path}: no rule writes such a path"


def test_a_wrong_example_is_caught() -> None:
    """The checks above fail on an example of a path no rule writes or an unknown option."""
    patterns = _written_patterns()
    assert not any(p.match("results/runs/segpipe/training/train/best.pt") for p in patterns)
    assert any(p.match("results/runs/x/train/best.pt") for p in patterns)
    with pytest.raises(SystemExit):
        cli._parser().parse_args(["predict", "best.pt", "in/", "--no-such-option"])


@pytest.mark.slow
def test_help_and_verify_import_no_model_packages(tmp_path) -> None:
    """``segpipe --help``, each command's help and ``segpipe verify`` need no model: the parser's
    choices come from segpipe.inference.choices, so none of them pays seconds for torch."""
    import json
    import subprocess
    import sys

    from segpipe.data.synthetic import make_oxford_like

    make_oxford_like(tmp_path / "pets", n_images=4, seed=0, min_size=40, max_size=48)
    code = (
        "import json, sys\n"
        "from segpipe import cli\n"
        "cli._parser().format_help()\n"
        f"code = cli.main(['verify', {str(tmp_path / 'pets')!r}, '--layout', 'oxford'])\n"
        "heavy = ('torch', 'segmentation_models_pytorch', 'timm', 'onnx')\n"
        "print(json.dumps([code, [m for m in heavy if m in sys.modules]]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == [0, []]


@pytest.mark.skipif(torch_sees_cuda(), reason="the machine has a CUDA device")
def test_predict_on_cuda_without_a_gpu_names_the_option_in_one_line(tmp_path, capsys) -> None:
    """The device is resolved before the checkpoint is read: one line naming --device (not
    the config option of the pipeline's jobs), exit 2, nothing written."""
    checkpoint, image = tmp_path / "best.pt", tmp_path / "a.png"
    checkpoint.write_bytes(b"x")
    image.write_bytes(b"x")
    out = tmp_path / "out"
    assert (
        cli.main(["predict", "--device", "cuda", str(checkpoint), str(image), "-o", str(out)]) == 2
    )
    err = capsys.readouterr().err
    assert err == "segpipe predict: error: --device cuda: no CUDA device is visible\n"
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["verify", "d", "--threads", "0"], "argument --threads: 0 is below 1"),
        (["verify", "d", "--max-lines", "-1"], "argument --max-lines: -1 is below 0"),
        (["plan", "d", "--sample", "-3"], "argument --sample: -3 is below 0"),
        (["plan", "d", "--threads", "x"], "argument --threads: 'x' is not an integer"),
        (
            ["predict", "ck.pt", "d", "-o", "o", "--batch-size", "0"],
            "argument --batch-size: 0 is below 1",
        ),
    ],
)
def test_a_count_out_of_range_is_a_usage_error_naming_it(tmp_path, capsys, args, message) -> None:
    """Counts are checked where they are parsed (a negative --sample reached pandas, whose
    error named no option; --threads 0 and --max-lines -1 were taken)."""
    with pytest.raises(SystemExit) as exc:
        cli.main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.endswith(f"error: {message}\n") and err.count("error:") == 1, err


def test_a_raw_value_given_two_classes_is_refused(tmp_path, capsys) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(SystemExit) as exc:
        cli.main(["verify", str(tmp_path), "--table", "0=0,255=1", "--table", "255=0"])
    assert exc.value.code == 2
    assert "--table: raw value 255 maps to class 1 and 0" in capsys.readouterr().err
