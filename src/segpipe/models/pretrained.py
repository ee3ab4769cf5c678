"""Pretrained encoder weights in a cache folder, fetched where there is network and read offline.

Compute nodes often have no internet. :func:`fetch_weights` (the local rule ``pretrained``, or
``segpipe fetch-weights``) runs on a machine with network: smp's own ``get_encoder`` downloads
the weights with the Hugging Face hub cache pointed into ``cache`` (``<cache>/hub``; timm's
non-hub downloads go to ``<cache>/torch``), then a record of what was fetched is written,
``<cache>/records/<encoder>/<weights>.json``. Training builds the model from that cache only
(:func:`offline_cache`, with the hub's offline mode on): it never tries the network.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from segpipe.io import WriteError, file_sha256, write_failure, write_json
from segpipe.logs import UserError
from segpipe.models.names import check_model_names
from segpipe.network import unreachable_reason

HUB_DIR, TORCH_DIR, RECORDS_DIR = "hub", "torch", "records"


class WeightsUnavailableError(UserError, RuntimeError):
    """Pretrained encoder weights could not be fetched or found in the local cache."""


def record_path(cache: str | os.PathLike, encoder: str, weights: str) -> Path:
    """Where the record of ``encoder``'s ``weights`` in ``cache`` lives."""
    return Path(cache, RECORDS_DIR, encoder, f"{weights}.json")


def fetch_command(encoder: str, weights: str, cache: str | os.PathLike) -> str:
    """The command that fills ``cache`` with the weights, on a machine with network."""
    return shlex.join(
        [
            "segpipe",
            "fetch-weights",
            "--encoder",
            encoder,
            "--weights",
            weights,
            "--cache",
            str(cache),
        ]
    )


def _what_to_run(encoder: str, weights: str, cache: str | os.PathLike) -> str:
    return (
        f"on a machine with network run `{fetch_command(encoder, weights, cache)}` (or let the "
        f"local rule 'pretrained' run there), then copy the folder {cache} to the same path "
        "here; or set train.encoder_weights: null"
    )


@contextlib.contextmanager
def hub_cache(cache: str | os.PathLike, *, offline: bool) -> Iterator[None]:
    """Point the Hugging Face hub cache (and torch.hub's, which timm uses for weights outside
    the hub) into ``cache`` for the block; with ``offline``, the hub client makes no request."""
    from huggingface_hub import constants

    saved = constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE, os.environ.get("TORCH_HOME")
    constants.HF_HUB_CACHE = str(Path(cache, HUB_DIR).resolve())
    constants.HF_HUB_OFFLINE = offline
    os.environ["TORCH_HOME"] = str(Path(cache, TORCH_DIR).resolve())
    try:
        yield
    finally:
        constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE, torch_home = saved
        if torch_home is None:
            os.environ.pop("TORCH_HOME", None)
        else:
            os.environ["TORCH_HOME"] = torch_home


def source(encoder: str, weights: str) -> dict[str, Any]:
    """Where the weights come from: smp's hub repository and revision, or timm's model (for a
    ``tu-`` encoder, whose name holds the variant)."""
    import segmentation_models_pytorch as smp

    if encoder.startswith("tu-"):
        import timm

        cfg = timm.models.get_pretrained_cfg(encoder[3:])
        hub_id = getattr(cfg, "hf_hub_id", None) if cfg else None
        return {"timm_model": encoder[3:], "repo_id": hub_id, "url": getattr(cfg, "url", None)}
    settings = smp.encoders.encoders[encoder]["pretrained_settings"][weights]
    return {"repo_id": settings["repo_id"], "revision": settings["revision"]}


def _cached_files(cache: Path, origin: dict[str, Any]) -> list[Path]:
    """The files of the weights' hub repository (its revision's snapshot, if pinned) in the
    cache, or torch.hub's checkpoints for timm weights outside the hub."""
    repo = origin.get("repo_id")
    if repo:
        snapshots = cache / HUB_DIR / f"models--{repo.replace('/', '--')}" / "snapshots"
        if origin.get("revision") and (snapshots / origin["revision"]).is_dir():
            snapshots = snapshots / origin["revision"]
    else:
        snapshots = cache / TORCH_DIR / "hub" / "checkpoints"
    return sorted(p for p in snapshots.rglob("*") if p.is_file())


def _file_entries(cache: Path, files: list[Path]) -> list[dict[str, Any]]:
    return [
        {"path": str(p.relative_to(cache)), "size": p.stat().st_size, "sha256": file_sha256(p)}
        for p in files
    ]


def fetch_weights(encoder: str, weights: str, cache: str | os.PathLike) -> Path:
    """Download ``encoder``'s ``weights`` into ``cache`` with smp's own code and write their
    record (encoder, weights, source, files with sizes and SHA-256, time); returns the record's
    path. A record already there whose files check is kept as it is. Raises
    :class:`WeightsUnavailableError` (one line: what failed and what to run) when the hub
    cannot be reached or the download fails; no record is written then."""
    import segmentation_models_pytorch as smp
    from huggingface_hub import constants

    check_model_names("Unet", encoder, weights)
    cache = Path(cache)
    record = record_path(cache, encoder, weights)
    if record.exists() and check_record(cache, encoder, weights) is None:
        return record
    reason = unreachable_reason(constants.ENDPOINT)
    if reason:
        raise WeightsUnavailableError(
            f"cannot fetch the '{weights}' weights of encoder '{encoder}': the Hugging Face hub "
            f"{constants.ENDPOINT} is unreachable ({reason}) and {record} does not exist; "
            + _what_to_run(encoder, weights, cache)
        )
    origin = source(encoder, weights)
    with hub_cache(cache, offline=False):
        try:
            smp.encoders.get_encoder(
                encoder, weights=True if encoder.startswith("tu-") else weights
            )
        except Exception as exc:  # hub/network errors come in many types
            if (refused := _refused_write(exc, cache)) is not None:
                raise refused from None
            raise WeightsUnavailableError(
                f"cannot fetch the '{weights}' weights of encoder '{encoder}' "
                f"({type(exc).__name__}: {_one_line(exc)})"
            ) from exc
    files = _cached_files(cache, origin)
    write_json(
        record,
        {
            "encoder": encoder,
            "weights": weights,
            "source": origin,
            "files": _file_entries(cache, files),
            "fetched_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        },
    )
    return record


def _refused_write(exc: BaseException | None, cache: Path) -> WriteError | None:
    """The WriteError behind a failed download (a full or read-only cache), if any: the hub
    client wraps the OSError of its write in errors of its own."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if (refused := write_failure(exc, cache)) is not None:
            return refused
        exc = exc.__cause__ or exc.__context__
    return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def check_record(cache: str | os.PathLike, encoder: str, weights: str) -> str | None:
    """Why the cache does not hold the recorded weights (no record, a record that does not
    read, a file missing, of another size or SHA-256), or None."""
    cache = Path(cache)
    record = record_path(cache, encoder, weights)
    try:
        entries = json.loads(record.read_text(encoding="utf-8"))["files"]
        listed = [(str(e["path"]), int(e["size"]), str(e["sha256"])) for e in entries]
    except FileNotFoundError:
        return f"{record} does not exist"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{record} cannot be read ({type(exc).__name__}: {_one_line(exc)})"
    if not listed:
        return f"{record} lists no files"
    for name, size, sha in listed:
        path = cache / name
        if not path.is_file():
            return f"{path}, listed in {record}, is missing"
        if path.stat().st_size != size or file_sha256(path) != sha:
            return f"{path} is not the file {record} lists (size or SHA-256 differ)"
    return None


@contextlib.contextmanager
def offline_cache(cache: str | os.PathLike, encoder: str, weights: str) -> Iterator[None]:
    """For the block, the hub reads ``cache`` only, offline; :class:`WeightsUnavailableError`
    (one line) when the cache does not hold the recorded weights or they fail to load."""
    problem = check_record(cache, encoder, weights)
    if problem:
        raise WeightsUnavailableError(
            f"the '{weights}' weights of encoder '{encoder}' are not in the cache {cache}: "
            f"{problem}; " + _what_to_run(encoder, weights, cache)
        )
    with hub_cache(cache, offline=True):
        try:
            yield
        except WeightsUnavailableError:
            raise
        except Exception as exc:  # hub/loading errors come in many types
            raise WeightsUnavailableError(
                f"cannot load the '{weights}' weights of encoder '{encoder}' from the cache "
                f"{cache} ({type(exc).__name__}: {_one_line(exc)}); "
                + _what_to_run(encoder, weights, cache)
            ) from exc
