"""Training on a tiny dataset: checkpoints, history, determinism, resume; then predict and evaluate.

The tiny dataset (PNG images of different sizes, class-id masks, manifests) is preprocessed into
split arrays as the pipeline does. One uninterrupted reference run (module fixture) is shared by
the checkpoint, determinism, resume, prediction and evaluation tests; each test that trains again
does so into its own directory with the same seed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import segpipe.training.preflight
import segpipe.training.train
from segpipe.data.arrays import EpochSampler
from segpipe.evaluation.evaluate import evaluate_split
from segpipe.inference.predict_splits import PredictOptions, predict_split
from segpipe.io import WriteError
from segpipe.models.build import build_model
from segpipe.models.checkpoints import load_checkpoint, model_from_checkpoint, save_checkpoint
from segpipe.training.stop_signals import StopRequest, TrainingInterrupted
from segpipe.training.train import HISTORY_COLUMNS
from segpipe.training.train_job import UNRECORDED_OPTIONS

from helpers.repo import TINY_MODEL
from helpers.train import CLASSES, IGNORE, IMAGE_SIZE, OPTIONS, TINY, train, write_split

CAPTURE = dict(capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, dict[str, Path]]:
    root = tmp_path_factory.mktemp("data")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    return {
        "train": write_split(root, "train", 4, seed=1),
        "val": write_split(root, "val", 4, seed=2),
        "test": write_split(root, "test", 4, seed=3, ignore_rows=3),
    }


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """One uninterrupted two-epoch run."""
    out = tmp_path_factory.mktemp("reference")
    n = torch.get_num_threads()
    ckpt, paths = train(data, out)
    torch.set_num_threads(n)
    return ckpt, paths


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


# Checkpoints and history -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["best_path", "last_path"])
def test_checkpoint_contents(reference, name):
    _, paths = reference
    ckpt = load_checkpoint(paths[name])
    for key in ("model", "optimizer", "scheduler", "epoch", "best_score", "config", "history"):
        assert key in ckpt, key
    assert ckpt["config"]["classes"] == CLASSES
    assert ckpt["config"]["ignore_index"] == IGNORE
    train_cfg = ckpt["config"]["train"]
    for key, value in OPTIONS.items():
        # Speed and monitor options are left out, so that changing them keeps the resume state.
        assert train_cfg.get(key) == (None if key in UNRECORDED_OPTIONS else value), key
    assert ckpt["optimizer"]["state"], "optimizer state (AdamW moments) must be saved"
    assert ckpt["scheduler"]["last_epoch"] == 2 * ckpt["epoch"]  # 4 images, 2 batches per epoch
    assert all(t.device.type == "cpu" for t in ckpt["model"].values())


def test_last_and_best_epochs(reference):
    returned, paths = reference
    last, best = load_checkpoint(paths["last_path"]), load_checkpoint(paths["best_path"])
    assert last["epoch"] == 2
    assert [row["epoch"] for row in last["history"]] == [1, 2]
    scores = [row["val_miou"] for row in last["history"]]
    assert best["epoch"] == last["best_epoch"] == 1 + int(np.argmax(scores))
    assert best["best_score"] == pytest.approx(max(scores))
    # train_model returns the last checkpoint.
    assert returned["epoch"] == 2
    assert_same_weights(returned["model"], last["model"])


def test_history_csv(reference):
    _, paths = reference
    history = pd.read_csv(paths["history_path"])
    assert list(history.columns) == HISTORY_COLUMNS
    assert history["epoch"].tolist() == [1, 2]
    assert history[HISTORY_COLUMNS].notna().all().all()
    assert (history["train_loss"] > 0).all() and (history["val_loss"] > 0).all()
    assert history["val_miou"].between(0, 1).all() and history["val_dice"].between(0, 1).all()
    assert (history["images_per_s"] > 0).all() and (history["seconds"] > 0).all()
    # Cosine schedule stepped per batch: the rate falls over the run.
    assert history["lr"].iloc[1] < history["lr"].iloc[0] < OPTIONS["lr"]
    saved = pd.DataFrame(load_checkpoint(paths["last_path"])["history"])
    pd.testing.assert_frame_equal(history, saved[HISTORY_COLUMNS], check_dtype=False)


def test_model_from_checkpoint_round_trip(reference, tmp_path):
    _, paths = reference
    ckpt = load_checkpoint(paths["best_path"])
    model = model_from_checkpoint(ckpt).eval()
    assert_same_weights(model.state_dict(), ckpt["model"])

    # Save and reload once more: the same outputs, bit for bit.
    save_checkpoint(tmp_path / "copy.pt", {**ckpt, "model": model.state_dict()})
    again = model_from_checkpoint(load_checkpoint(tmp_path / "copy.pt")).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(x)
        assert torch.equal(out, again(x))
        # ...and not the outputs of an untrained model.
        torch.manual_seed(123)
        fresh = build_model(
            "Unet",
            TINY_MODEL["encoder"],
            3,
            decoder_dropout=0.2,
            encoder_depth=TINY_MODEL["encoder_depth"],
            decoder_channels=TINY_MODEL["decoder_channels"],
        ).eval()
        assert not torch.allclose(out, fresh(x))


def test_unreadable_checkpoint_names_the_file(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="broken.pt"):
        load_checkpoint(bad)


# Fast settings: mixed precision, channels_last, torch.compile --------------------------------


@pytest.mark.parametrize(
    ("device", "amp", "compile_"),
    [
        ("cpu", "bf16", False),  # CPU autocast: the same code path, runnable everywhere
        pytest.param("cuda", "auto", False, marks=pytest.mark.cuda),
        pytest.param("cuda", "fp16", False, marks=pytest.mark.cuda),  # with the gradient scaler
        pytest.param("cuda", "auto", True, marks=pytest.mark.cuda),
    ],
)
def test_fast_settings_train_and_keep_fp32_weights(data, tmp_path, device, amp, compile_):
    """Autocast, channels_last and torch.compile change how training runs, not what it stores:
    finite, falling losses, fp32 weights on the CPU in the checkpoint (the optimizer's master
    copy, not the autocast dtype) and a model that predict loads."""
    ckpt, paths = train(
        data, tmp_path, device=device, amp=amp, channels_last=True, compile=compile_, epochs=4
    )
    losses = [row["train_loss"] for row in ckpt["history"]]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    assert ckpt["config"]["train"]["amp"] == amp
    assert all(t.device.type == "cpu" for t in ckpt["model"].values())
    assert all(t.dtype == torch.float32 for t in ckpt["model"].values() if t.is_floating_point())
    scaler = ckpt["scaler"]
    assert bool(scaler) == (amp == "fp16"), scaler  # the scaler's state exists only for fp16
    # The checkpoint loads without torch.compile's prefixes and predicts on the CPU.
    model = model_from_checkpoint(load_checkpoint(paths["best_path"])).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE))
    assert out.shape == (1, len(CLASSES), IMAGE_SIZE, IMAGE_SIZE) and torch.isfinite(out).all()


# Determinism and resume --------------------------------------------------------------------


def test_same_seed_gives_identical_weights(data, reference, tmp_path):
    ckpt, _ = train(data, tmp_path)
    assert_same_weights(ckpt["model"], reference[0]["model"])
    assert [r["train_loss"] for r in ckpt["history"]] == [
        r["train_loss"] for r in reference[0]["history"]
    ]


def test_resume_after_interruption_matches_uninterrupted_run(
    data, reference, tmp_path, monkeypatch, caplog
):
    real_validate = segpipe.training.train.validate
    calls = []

    def validate_then_die(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed during epoch 2
        return real_validate(*args, **kwargs)

    def counting_validate(*args, **kwargs):
        calls.append(1)
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(segpipe.training.train, "validate", validate_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(data, tmp_path)
    resume = tmp_path / "resume"
    assert load_checkpoint(resume / "last.pt")["epoch"] == 1
    assert load_checkpoint(resume / "best.pt")["epoch"] == 1
    for name in ("best.pt", "last.pt", "history.csv"):
        assert not (tmp_path / name).exists(), f"{name} must not appear for an interrupted run"
    assert not list(resume.glob(".*.tmp")), "no temporary files left behind"

    calls.clear()
    monkeypatch.setattr(segpipe.training.train, "validate", counting_validate)
    caplog.set_level(logging.INFO, logger="segpipe.training")
    ckpt, paths = train(data, tmp_path)
    assert "resuming from" in caplog.text and "the end of epoch 1" in caplog.text
    # Only epoch 2 ran (a restart from scratch would also end with the reference weights).
    assert len(calls) == 1
    assert ckpt["epoch"] == 2
    assert_same_weights(ckpt["model"], reference[0]["model"])
    expected = pd.read_csv(reference[1]["history_path"])
    history = pd.read_csv(paths["history_path"])
    cols = ["epoch", "train_loss", "val_loss", "val_miou", "val_dice", "lr"]
    pd.testing.assert_frame_equal(history[cols], expected[cols])


def test_stop_signal_mid_epoch_checkpoints_and_resumes_exactly(
    data, reference, tmp_path, monkeypatch, caplog
):
    # Slurm's SIGUSR1/SIGTERM: checkpoint at the next step, stop, and replay exactly on rerun.
    real_agreed = StopRequest.agreed
    steps = []

    def signal_at_epoch_2_step_1(self, device, step):
        steps.append(step)
        if len(steps) == 3:  # 2 steps per epoch: the first step of epoch 2
            os.kill(os.getpid(), signal.SIGUSR1)
        return real_agreed(self, device, step)

    monkeypatch.setattr(StopRequest, "agreed", signal_at_epoch_2_step_1)
    handler_before = signal.getsignal(signal.SIGUSR1)
    with pytest.raises(TrainingInterrupted) as info:
        train(data, tmp_path)
    assert info.value.code == 128 + signal.SIGTERM  # as if ended by SIGTERM
    assert signal.getsignal(signal.SIGUSR1) == handler_before  # the handler is put back
    state = load_checkpoint(tmp_path / "resume" / "last.pt")
    assert state["epoch"] == 1
    assert (state["partial"]["epoch"], state["partial"]["steps"]) == (2, 1)
    assert not (tmp_path / "last.pt").exists()

    monkeypatch.setattr(StopRequest, "agreed", real_agreed)
    caplog.set_level(logging.INFO, logger="segpipe.training")
    ckpt, paths = train(data, tmp_path)
    assert "epoch 2 step 1" in caplog.text
    assert ckpt["epoch"] == 2
    assert_same_weights(ckpt["model"], reference[0]["model"])
    expected = pd.read_csv(reference[1]["history_path"])
    history = pd.read_csv(paths["history_path"])
    cols = ["epoch", "train_loss", "val_loss", "val_miou", "val_dice", "lr"]
    pd.testing.assert_frame_equal(history[cols], expected[cols])


def test_finished_run_is_not_trained_again(data, reference, tmp_path, caplog):
    # A rerun of a finished training (same config and data) resumes after the last epoch.
    shutil.copytree(reference[1]["resume_dir"], tmp_path / "resume")
    caplog.set_level(logging.INFO, logger="segpipe.training")
    ckpt, paths = train(data, tmp_path)
    assert "the end of epoch 2" in caplog.text
    assert "train_loss" not in caplog.text  # no epoch was trained
    assert_same_weights(ckpt["model"], reference[0]["model"])
    assert len(pd.read_csv(paths["history_path"])) == 2


def test_changed_config_ignores_stale_resume_dir(data, reference, tmp_path, caplog):
    shutil.copytree(reference[1]["resume_dir"], tmp_path / "resume")
    caplog.set_level(logging.INFO, logger="segpipe.training")
    ckpt, paths = train(data, tmp_path, lr=0.001)
    assert "ignoring" in caplog.text
    assert "resuming" not in caplog.text
    assert ckpt["config"]["train"]["lr"] == 0.001
    history = pd.read_csv(paths["history_path"])
    assert history["epoch"].tolist() == [1, 2]  # trained from scratch
    assert history["lr"].iloc[0] < 0.001


KILLED_WRITER = """
import sys, time
from segpipe.io import atomic_path

with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half a checkpoint")
    print(tmp, flush=True)
    time.sleep(60)
"""


def test_a_rerun_removes_what_a_killed_checkpoint_write_left_in_the_resume_dir(
    data, reference, tmp_path, caplog
):
    """A checkpoint write killed with kill -9 leaves its temporary in the resume folder; the next
    run removes it at its start, even when it writes no checkpoint (training was finished)."""
    resume = shutil.copytree(reference[1]["resume_dir"], tmp_path / "resume")
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(resume / "last.pt")],
        stdout=subprocess.PIPE,
        text=True,
    )
    with writer:
        stale = Path(writer.stdout.readline().strip())
        os.kill(writer.pid, signal.SIGKILL)
    assert stale.parent == resume and stale.exists()
    caplog.set_level(logging.INFO, logger="segpipe")
    train(data, tmp_path)
    assert "train_loss" not in caplog.text  # no epoch was trained, no checkpoint written
    # The checkpoints with their digests, the live history (rewritten at the start of every
    # run) and the lock.
    names = sorted(p.name for p in resume.iterdir())
    assert names == ["best.pt", "checkpoints.json", "history.csv", "last.pt", "train.lock"]
    assert f"removed {stale}" in caplog.text


@pytest.mark.parametrize("name", ["best.pt", "last.pt"])
def test_a_file_copied_over_a_published_checkpoint_is_not_resumed_from(
    data, reference, tmp_path, caplog, name
):
    """train/best.pt and resume/best.pt are one file (a hard link): a checkpoint copied over
    the published one in place (cp) changes the resume state too. The next training tells it
    by the digests it recorded and starts afresh instead of resuming into the foreign model."""
    _, paths = train(data, tmp_path, epochs=1)
    published = tmp_path / name
    assert os.path.samefile(published, tmp_path / "resume" / name)
    foreign = reference[1]["best_path"] if name == "best.pt" else reference[1]["last_path"]
    shutil.copyfile(foreign, published)  # writes in place, through the hard link
    caplog.set_level(logging.INFO, logger="segpipe.training")
    ckpt, paths = train(data, tmp_path)
    assert "not resuming" in caplog.text and f"resume/{name} changed" in caplog.text
    assert "resuming from" not in caplog.text
    # Trained from scratch: the uninterrupted two-epoch run, bit for bit.
    assert pd.read_csv(paths["history_path"])["epoch"].tolist() == [1, 2]
    assert_same_weights(ckpt["model"], reference[0]["model"])
    best, expected = load_checkpoint(paths["best_path"]), load_checkpoint(reference[1]["best_path"])
    assert best["epoch"] == expected["epoch"]
    assert_same_weights(best["model"], expected["model"])


def test_a_full_disk_mid_training_is_one_line_and_keeps_the_last_good_checkpoint(data, tmp_path):
    """torch.save on a full disk died with "[enforce fail at inline_container.cc:672] .
    unexpected pos"; now it is one WriteError naming the file, the resume state of the last
    epoch stays, and with space again the run resumes from it."""
    from helpers.filesystems import fill, tmpfs

    with tmpfs(tmp_path / "disk", "48m") as disk:
        train(data, disk, epochs=1, **TINY)
        fill(disk)
        with pytest.raises(
            WriteError, match=f"cannot write {disk}/.*: no space left on the device"
        ):
            train(data, disk, epochs=2, **TINY)
        assert load_checkpoint(disk / "resume" / "last.pt")["epoch"] == 1
        assert not [p for p in (disk / "resume").iterdir() if p.name.startswith(".")]
        (disk / "filler").unlink()
        ckpt, _ = train(data, disk, epochs=2, **TINY)
        assert ckpt["epoch"] == 2 and [r["epoch"] for r in ckpt["history"]] == [1, 2]


# Batches of one: BatchNorm cannot train on a single sample ---------------------------------


def with_train_split(data, root: Path, n_train: int, n_val: int = 4) -> dict:
    """The tiny data with ``n_train`` train and ``n_val`` val samples (samples repeated)."""
    pool = np.concatenate([np.load(data["train"]["array"]), np.load(data["val"]["array"])])
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, n in [("train", n_train), ("val", n_val)]:
        np.save(root / f"{name}.npy", pool[np.arange(n) % len(pool)])
        out[name] = {**data[name], "array": root / f"{name}.npy"}
    return {**data, **out}


@pytest.mark.parametrize(
    ("samples", "batch_size", "expected"),
    [
        (17, 16, (True, 1)),
        (33, 16, (True, 2)),
        (32, 16, (True, 2)),
        (16, 16, (False, 1)),
        (5, 16, (False, 1)),
    ],
)
def test_an_incomplete_last_training_batch_is_dropped(samples, batch_size, expected):
    assert segpipe.training.train.train_batches(samples, batch_size) == expected


def test_a_last_batch_of_one_trains_and_validates(data, tmp_path):
    """5 train samples in batches of 4: the lone fifth is dropped, a different one each epoch (the
    sampler reshuffles), instead of a BatchNorm error; validation runs in eval mode and keeps
    its last batch of one."""
    small = with_train_split(data, tmp_path / "data", 5, 5)
    ckpt, _ = train(small, tmp_path / "out", batch_size=4, epochs=2)
    assert [row["epoch"] for row in ckpt["history"]] == [1, 2]
    assert all(np.isfinite([row["train_loss"] for row in ckpt["history"]]))
    sampler, trained = EpochSampler(5, seed=0), set()
    for epoch in (1, 2, 3):
        sampler.set_epoch(epoch)
        trained |= set(sampler.indices()[:4])  # the full batch; the fifth sample is dropped
    assert trained == set(range(5))


class TiedScores(torch.nn.Module):
    """Logits that tie: every class where the first channel is at most 0, classes 1 and 2
    elsewhere (a stand-in model for validation and previews)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        high = (x[:, :1] > 0).float()
        return torch.cat([torch.zeros_like(high), high, high], 1)


def test_validation_and_previews_give_ties_to_the_lowest_class(data):
    from segpipe.data.arrays import ArrayDataset, batch_loader
    from segpipe.data.colors import colorize
    from segpipe.evaluation.metrics import confusion_matrix, summarize
    from segpipe.models.device import prepare_batch
    from segpipe.training.previews import preview_predictions
    from segpipe.training.train import validate

    dataset, cpu = ArrayDataset(data["val"]["array"]), torch.device("cpu")
    loss = torch.nn.CrossEntropyLoss(ignore_index=IGNORE)
    got = validate(TiedScores(), batch_loader(dataset, batch_size=3), loss, 3, IGNORE, cpu)
    everything = dataset.__getitems__(list(range(len(dataset))))
    images, masks = prepare_batch(everything, cpu, channels_last=False)
    first = np.argmax(TiedScores()(images).numpy(), axis=1)  # the first of equal maxima
    assert set(np.unique(first)) == {0, 1}
    expected = summarize(confusion_matrix(first, masks.numpy(), 3, IGNORE))
    assert {key: got[key] for key in expected} == pytest.approx(expected, nan_ok=True)
    panels = preview_predictions(TiedScores(), dataset, 2, 3, IGNORE, cpu)
    width = masks.shape[-1]
    for panel, ids in zip(panels, first, strict=False):
        assert np.array_equal(panel[:, -width:], colorize(ids, 3, IGNORE))


def test_batch_size_one_fails_before_training_naming_the_option(data, tmp_path):
    from segpipe.logs import UserError

    with pytest.raises(ValueError, match="config option 'train.batch_size': 1") as info:
        train(data, tmp_path, batch_size=1, epochs=1)
    message = str(info.value)
    assert "BatchNorm needs at least 2 samples per batch; use 2 or more" in message
    assert "\n" not in message and isinstance(info.value, UserError)
    assert not (tmp_path / "resume").exists()  # nothing trained


@pytest.mark.parametrize(
    ("samples", "gpus", "expected"),
    [
        (1, 1, "the train split has 1 samples, 1 per training process"),
        (3, 2, "the train split has 3 samples, 1 per training process"),  # DDP: checked first
        (1, 2, "the train split has 1 samples, fewer than the 2 training processes"),
    ],
)
def test_a_train_split_of_one_sample_per_process_fails_before_training(
    data, tmp_path, samples, gpus, expected
):
    small = with_train_split(data, tmp_path / "data", samples)
    with pytest.raises(ValueError, match=expected) as info:
        train(small, tmp_path / "out", gpus=gpus, epochs=1)
    assert "config option 'train.gpus'" in str(info.value)
    assert not (tmp_path / "out" / "resume").exists()


def without_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` with each BatchNorm layer replaced by an identity."""
    for name, child in module.named_children():
        if isinstance(child, torch.nn.modules.batchnorm._BatchNorm):
            setattr(module, name, torch.nn.Identity())
        else:
            without_batchnorm(child)
    return module


def test_batch_size_one_trains_a_model_without_batchnorm(data, tmp_path, monkeypatch):
    for module in (segpipe.training.train, segpipe.training.preflight):
        monkeypatch.setattr(
            module, "build_model", lambda *a, **kw: without_batchnorm(build_model(*a, **kw))
        )
    ckpt, _ = train(data, tmp_path, batch_size=1, epochs=1)
    assert len(ckpt["history"]) == 1 and np.isfinite(ckpt["history"][0]["train_loss"])


def test_an_expected_error_ends_the_rule_script_with_one_log_line(tmp_path):
    """A rule script that ends with a UserError (a config or data problem) logs one line, no
    traceback, and exits with status 1; anything else keeps its traceback."""
    log = tmp_path / "train.log"
    script = (
        "from segpipe.logs import UserError, setup_logging\n"
        f"setup_logging({str(log)!r})\n"
        "class BatchTooSmallError(UserError, ValueError): pass\n"
        "raise BatchTooSmallError(\"config option 'train.batch_size': 1 is too small\")\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], **CAPTURE)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = log.read_text().splitlines()
    assert len(lines) == 1 and lines[0].endswith(
        "CRITICAL segpipe: BatchTooSmallError: config option 'train.batch_size': 1 is too small"
    )
    proc = subprocess.run([sys.executable, "-c", script.replace("UserError, ", "")], **CAPTURE)
    assert proc.returncode == 1 and "Traceback" in log.read_text()


# Predict and evaluate ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def predictions(reference, data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("predict") / "test"
    n = torch.get_num_threads()
    predict_split(
        reference[1]["best_path"],
        data["test"]["manifest"],
        data["test"]["array"],
        out,
        PredictOptions(batch_size=3, threads=1, device="cpu"),
    )
    torch.set_num_threads(n)
    return out


def test_predictions_at_original_size(predictions, data):
    manifest = pd.read_csv(data["test"]["manifest"])
    assert sorted(p.stem for p in (predictions / "masks").glob("*.png")) == sorted(manifest["id"])
    sizes = set()
    for row in manifest.itertuples():
        with Image.open(predictions / "masks" / f"{row.id}.png") as mask:
            assert mask.mode == "L"
            assert mask.size == (row.width, row.height), row.id
            assert np.asarray(mask).max() < len(CLASSES)
        with Image.open(predictions / "overlays" / f"{row.id}.jpg") as overlay:
            assert overlay.format == "JPEG"
            assert overlay.mode == "RGB"
            assert overlay.size == (row.width, row.height), row.id
        sizes.add((row.height, row.width))
    assert len(sizes) > 1, "the test images must differ in size for this test to mean anything"
    assert not list(predictions.parent.glob(".*.tmp")), "no temporary directory left behind"


def evaluate(manifest: Path, predictions: Path, out: Path, classes=CLASSES, **kwargs) -> dict:
    return evaluate_split(
        manifest,
        predictions,
        metrics_json=out / "metrics.json",
        per_class_csv=out / "per_class.csv",
        confusion_csv=out / "confusion.csv",
        confusion_normalized_csv=out / "confusion_normalized.csv",
        per_image_csv=out / "per_image.csv",
        classes=classes,
        ignore_index=IGNORE,
        **kwargs,
    )


def strict_json(path: Path):
    def no_nan(constant):
        raise AssertionError(f"{path} is not valid JSON: it contains {constant}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=no_nan)


def test_evaluate_model_predictions(predictions, data, tmp_path):
    returned = evaluate(data["test"]["manifest"], predictions, tmp_path, foreground_classes=[0, 2])
    manifest = pd.read_csv(data["test"]["manifest"])

    metrics = strict_json(tmp_path / "metrics.json")
    assert metrics["n_images"] == 4
    assert metrics["classes"] == CLASSES
    assert set(metrics["per_class"]) == set(CLASSES)
    for key in ("pixel_accuracy", "mean_iou", "mean_dice", "foreground_iou"):
        assert 0 <= metrics[key] <= 1, key
        assert metrics[key] == pytest.approx(returned[key])

    non_ignored = 0
    for path in manifest["mask"]:
        truth = np.asarray(Image.open(path))
        assert (truth == IGNORE).any()  # the test masks do have ignored pixels
        non_ignored += int((truth != IGNORE).sum())
    confusion = pd.read_csv(tmp_path / "confusion.csv")
    assert confusion["true"].tolist() == CLASSES
    assert list(confusion.columns[1:]) == CLASSES
    assert confusion[CLASSES].to_numpy().sum() == non_ignored
    correct = np.trace(confusion[CLASSES].to_numpy())
    assert metrics["pixel_accuracy"] == pytest.approx(correct / non_ignored)

    per_class = pd.read_csv(tmp_path / "per_class.csv")
    assert per_class["class_name"].tolist() == CLASSES
    assert per_class["true_pixels"].sum() == non_ignored
    assert per_class["iou"].tolist() == pytest.approx(
        [metrics["per_class"][c]["iou"] for c in CLASSES]
    )

    normalized = pd.read_csv(tmp_path / "confusion_normalized.csv")
    np.testing.assert_allclose(normalized[CLASSES].to_numpy().sum(1), 1.0)

    per_image = pd.read_csv(tmp_path / "per_image.csv", dtype={"id": str})
    assert per_image["id"].tolist() == manifest["id"].tolist()
    assert {"mean_iou", "mean_dice", "pixel_accuracy", "foreground_iou"} <= set(per_image.columns)
    assert {f"iou_{c}" for c in CLASSES} <= set(per_image.columns)


@pytest.fixture
def perfect_predictions(data, tmp_path) -> Path:
    """Predictions equal to the truth (ignored pixels predicted as class 1)."""
    out = tmp_path / "perfect"
    (out / "masks").mkdir(parents=True)
    for row in pd.read_csv(data["test"]["manifest"]).itertuples():
        truth = np.asarray(Image.open(row.mask)).copy()
        truth[truth == IGNORE] = 1
        Image.fromarray(truth, mode="L").save(out / "masks" / f"{row.id}.png")
    return out


def test_evaluate_perfect_predictions_and_nan_as_null(data, perfect_predictions, tmp_path):
    # A fourth class that occurs in neither truth nor prediction: its IoU is NaN -> null.
    classes = [*CLASSES, "unused"]
    evaluate(data["test"]["manifest"], perfect_predictions, tmp_path, classes=classes)
    metrics = strict_json(tmp_path / "metrics.json")
    assert metrics["per_class"]["unused"] == {"iou": None, "dice": None}
    for name in CLASSES:
        assert metrics["per_class"][name] == {"iou": 1.0, "dice": 1.0}
    assert metrics["mean_iou"] == 1.0  # the NaN is skipped, not counted as 0
    assert metrics["pixel_accuracy"] == 1.0
    assert metrics["foreground_iou"] is None  # not asked for
    per_image = pd.read_csv(tmp_path / "per_image.csv")
    assert (per_image["mean_iou"] == 1.0).all()
    assert per_image["iou_unused"].isna().all()


def test_prediction_of_the_wrong_size_names_the_file(data, perfect_predictions, tmp_path):
    victim = pd.read_csv(data["test"]["manifest"])["id"].iloc[1]
    path = perfect_predictions / "masks" / f"{victim}.png"
    Image.fromarray(np.zeros((10, 12), dtype=np.uint8), mode="L").save(path)
    with pytest.raises(ValueError, match=f"{victim}.png") as info:
        evaluate(data["test"]["manifest"], perfect_predictions, tmp_path / "out")
    assert "(10, 12)" in str(info.value)
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_missing_prediction_names_the_file(data, perfect_predictions, tmp_path):
    victim = pd.read_csv(data["test"]["manifest"])["id"].iloc[2]
    (perfect_predictions / "masks" / f"{victim}.png").unlink()
    with pytest.raises(FileNotFoundError, match=f"{victim}.png"):
        evaluate(data["test"]["manifest"], perfect_predictions, tmp_path / "out")


def test_a_single_process_stops_at_the_step_it_was_signalled():
    """No device round trip per step outside DDP: the flag alone decides, at any step."""
    with StopRequest() as stop:
        assert not any(stop.agreed(torch.device("cpu"), step) for step in range(1, 25))
        os.kill(os.getpid(), signal.SIGUSR1)
        assert stop.agreed(torch.device("cpu"), 7) and stop.signum == signal.SIGUSR1


def test_the_model_card_counts_the_trained_models_parameters(data, tmp_path, monkeypatch):
    """model.json describes the model the loop trained, without reading best.pt back and
    building the model a second time; a rerun with nothing left to train writes it too."""

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the model card rebuilt the model from a checkpoint")

    monkeypatch.setattr(segpipe.training.train, "model_from_checkpoint", no_rebuild, raising=False)
    card = tmp_path / "model.json"
    for _ in range(2):  # trained, then resumed with nothing left to train
        card.unlink(missing_ok=True)
        _, paths = train(data, tmp_path, epochs=1, model_path=card)
        model = model_from_checkpoint(load_checkpoint(paths["best_path"]))
        count = sum(p.numel() for p in model.parameters())
        assert json.loads(card.read_text()) == {
            "arch": OPTIONS["arch"],
            "encoder": OPTIONS["encoder"],
            "parameters": count,
            "trainable_parameters": count,
        }
