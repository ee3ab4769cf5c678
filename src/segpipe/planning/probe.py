"""The batch-size probe: forward and backward passes of the planned model at the planned input
size, the batch growing until the memory budget or the cap.

:func:`run_probe` runs the measurement in a child process (``python -m
segpipe.planning.probe SPEC``), which imports torch and smp; the planner does not. The child
builds the model, the loss and AdamW as training does (:mod:`segpipe.models.build`,
:func:`segpipe.training.train.train_step`, the device's default autocast and memory format),
then for each batch size in turn: one step to warm up (two on CUDA), then timed steps (their
median is the step time), and
prints one JSON line per batch. Memory:

- on the CPU, the child's peak resident memory (``ru_maxrss``) after the batch's steps: what a
  train job's process holds, the interpreter, torch and the model included; the child's own
  figure before the first step is its ``baseline_mb``. A peak only grows, and the batches grow,
  so each batch's figure is its own peak or above it;
- on CUDA, :func:`torch.cuda.max_memory_allocated` since the batch's first step (an
  out-of-memory error ends the probe: that batch does not fit).

A batch whose memory a straight line through the last two measured ones predicts above the
budget is not run (``measured: false``, ``predicted_mb``): the probe never allocates far past
the budget.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from segpipe.logs import UserError

PROBE_TIMEOUT = 1200  # seconds for the whole probe
TIMED_STEPS = {"cpu": 3, "cuda": 5}
WARMUP_STEPS = {"cpu": 1, "cuda": 2}


class ProbeError(UserError, RuntimeError):
    """The probe could not measure (no CUDA device, the child failed); the message says why."""


@dataclass(frozen=True)
class ProbeSpec:
    """What the probe measures: the planned model and loss at ``image_size`` on ``device``
    (cpu or cuda), for each of ``batches`` until ``budget_mb``."""

    arch: str
    encoder: str
    encoder_depth: int
    decoder_channels: list[int] | None
    classes: int
    loss: str
    image_size: int
    device: str
    batches: list[int]
    budget_mb: float
    threads: int = 1
    class_weights: list[float] | None = field(default=None)


def run_probe(spec: ProbeSpec, timeout: float = PROBE_TIMEOUT) -> dict[str, Any]:
    """Measure in a child process: {"device", "image_size", "baseline_mb", "trials": [{"batch",
    "measured", "peak_mb", "growth_mb", "step_s"} or {"batch", "measured": false,
    "predicted_mb"}]}. A child killed by the system (out of memory) ends the trials with that
    batch as not fitting."""
    env = {**os.environ, "OMP_NUM_THREADS": str(spec.threads)}
    command = [sys.executable, "-m", "segpipe.planning.probe", json.dumps(asdict(spec))]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise ProbeError(f"the batch-size probe took more than {timeout:.0f} s") from None
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    head = next((line for line in lines if "baseline_mb" in line), None)
    trials = [line for line in lines if "batch" in line]
    if proc.returncode != 0 and (head is None or proc.returncode > 0):
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ProbeError(f"the batch-size probe failed on {spec.device}: {last}")
    if proc.returncode != 0:  # killed by a signal mid-trial: the batch it ran does not fit
        done = {t["batch"] for t in trials}
        running = next((b for b in spec.batches if b not in done), None)
        if running is not None:
            trials.append({"batch": running, "measured": True, "oom": True, "peak_mb": None})
    assert head is not None
    return {**head, "trials": trials}


def cuda_memory_mb(timeout: float = 300) -> float | None:
    """The first CUDA device's memory in MB, asked of a child process (torch is not imported
    here); None where torch sees no CUDA device."""
    code = (
        "import json, torch; print(json.dumps(torch.cuda.get_device_properties(0).total_memory"
        " / 2**20 if torch.cuda.is_available() else None))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def host_memory_mb() -> float:
    """This machine's physical memory in MB."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20


# ----------------------------------------------------------------------------- the child


def _peak_rss_mb() -> float:
    import resource

    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 2**20  # KB on Linux, bytes on macOS
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def predicted_mb(trials: list[dict], batch: int) -> float | None:
    """A straight line through the last two measured batches, at ``batch`` (None before two)."""
    measured = [t for t in trials if t.get("measured") and t.get("peak_mb") is not None]
    if len(measured) < 2:
        return None
    (b0, m0), (b1, m1) = [(t["batch"], t["peak_mb"]) for t in measured[-2:]]
    return m1 + (m1 - m0) / (b1 - b0) * (batch - b1)


def _setup(spec: ProbeSpec):
    """The model, loss, optimizer, scaler, device, autocast dtype and memory format, as
    training builds them."""
    import torch

    from segpipe.models.build import build_loss, build_model
    from segpipe.models.device import amp_dtype, resolve_device

    if spec.device == "cuda" and not torch.cuda.is_available():
        raise ProbeError("--device cuda: no CUDA device is visible here; plan on a GPU machine")
    device = resolve_device(spec.device)
    torch.set_num_threads(spec.threads)
    torch.manual_seed(0)
    model = build_model(
        spec.arch,
        spec.encoder,
        spec.classes,
        encoder_depth=spec.encoder_depth,
        decoder_channels=spec.decoder_channels,
    ).to(device)
    channels_last = device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    loss = build_loss(spec.loss, class_weights=spec.class_weights).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    amp = amp_dtype("auto", device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    return model, loss, optimizer, scaler, device, amp, channels_last


def _trial(spec: ProbeSpec, state, batch: int) -> dict[str, Any]:
    """One batch size: warm-up steps, then timed steps; its peak memory."""
    import torch

    from segpipe.training.train import train_step

    model, loss, optimizer, scaler, device, amp, channels_last = state
    size = spec.image_size
    images = torch.randn(batch, 3, size, size, device=device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    masks = torch.randint(0, spec.classes, (batch, size, size), device=device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(WARMUP_STEPS[device.type]):
        train_step(model, loss, optimizer, scaler, images, masks, device, amp)
    times = []
    for _ in range(TIMED_STEPS[device.type]):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        train_step(model, loss, optimizer, scaler, images, masks, device, amp)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    step_s = statistics.median(times)  # a busy machine slows some steps
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else _peak_rss_mb()
    return {"batch": batch, "measured": True, "peak_mb": round(peak, 1), "step_s": round(step_s, 4)}


def _emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


def main(argv: list[str] | None = None) -> int:
    """The child: one JSON line for the set-up, then one per batch size."""
    spec = ProbeSpec(**json.loads((argv if argv is not None else sys.argv[1:])[0]))
    try:
        state = _setup(spec)
    except UserError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    cuda = state[4].type == "cuda"
    baseline = 0.0 if cuda else _peak_rss_mb()
    _emit(
        {"device": state[4].type, "image_size": spec.image_size, "baseline_mb": round(baseline, 1)}
    )
    trials: list[dict] = []
    for batch in spec.batches:
        guess = predicted_mb(trials, batch)
        if guess is not None and guess > spec.budget_mb:
            _emit({"batch": batch, "measured": False, "predicted_mb": round(guess, 1)})
            break
        try:
            trial = _trial(spec, state, batch)
        except Exception as exc:  # CUDA out of memory; torch names it in several ways
            if "out of memory" not in str(exc).lower():
                raise
            _emit({"batch": batch, "measured": True, "oom": True, "peak_mb": None})
            break
        trial["growth_mb"] = round(trial["peak_mb"] - baseline, 1)
        trials.append(trial)
        _emit(trial)
        if trial["peak_mb"] > spec.budget_mb:
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
