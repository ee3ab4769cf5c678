"""The model names a config may give (train.arch, train.encoder, train.encoder_weights), checked
without importing torch.

Every Snakemake process that builds the DAG checks these names before any job runs, and importing
segmentation-models-pytorch costs seconds (it imports torch, torchvision and timm). The names
still come from smp itself: its architectures, its encoders with their pretrained weights and
timm's model names (for ``tu-`` encoders) make a catalogue that is read from smp once, in a child
process, and kept as JSON in the user's cache directory. The file's name holds the installed
versions of smp and timm, so an upgrade builds a new catalogue. A process that has imported smp
already (training) reads the names from it directly.

``python -m segpipe.models.names`` prints the catalogue as one line of JSON.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import logging
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from segpipe.io import write_json

logger = logging.getLogger(__name__)

CACHE_ENV = "SEGPIPE_CACHE_DIR"
"""Environment variable naming the cache directory, instead of ``$XDG_CACHE_HOME/segpipe``."""
FORMAT = 2
"""Version of the catalogue's layout, part of the cache file's name."""
_DISTRIBUTIONS = {"smp": "segmentation-models-pytorch", "timm": "timm"}


# The shape options of train an architecture may take (model.build passes them to smp).
SHAPE_OPTIONS = ("encoder_depth", "decoder_channels")


def check_model_names(
    arch: str,
    encoder: str,
    encoder_weights: str | None,
    encoder_depth: int = 5,
    decoder_channels: list[int] | None = None,
) -> None:
    """Raise ValueError naming the option and listing valid choices for an unknown name, or an
    encoder_depth (other than 5) or decoder_channels the architecture does not take."""
    names = catalogue()
    if arch not in names["architectures"]:
        raise ValueError(
            f"config option 'train.arch': unknown '{arch}'; valid: {sorted(names['architectures'])}"
        )
    takes = names["shape_options"].get(arch, [])
    if encoder_depth != 5 and "encoder_depth" not in takes:
        raise ValueError(f"config option 'train.encoder_depth': {arch} has a fixed depth (5)")
    if decoder_channels is not None and "decoder_channels" not in takes:
        raise ValueError(
            f"config option 'train.decoder_channels': {arch} does not take it; set it to null"
        )
    if encoder.startswith("tu-"):
        # As timm.list_models(pattern) does: a wildcard pattern, matched against the names.
        if not fnmatch.filter(names["timm_models"], encoder[3:]):
            raise ValueError(
                f"config option 'train.encoder': timm has no model '{encoder[3:]}' "
                "(see timm.list_models())"
            )
        return
    encoders = names["encoders"]
    if encoder not in encoders:
        raise ValueError(
            f"config option 'train.encoder': unknown '{encoder}'; valid: {sorted(encoders)} "
            "(or 'tu-<timm model>')"
        )
    if encoder_weights is not None:
        available = sorted(encoders[encoder])
        if encoder_weights not in available:
            raise ValueError(
                f"config option 'train.encoder_weights': '{encoder_weights}' is not available for "
                f"encoder '{encoder}'; valid: {available} or null"
            )


def catalogue() -> dict[str, Any]:
    """smp's model names: from smp when this process has imported it, else from the cache."""
    if "segmentation_models_pytorch" in sys.modules:
        return names_from_smp()
    return load_catalogue(cache_file())


def names_from_smp() -> dict[str, Any]:
    """The catalogue, read from smp and timm (imports both): architecture names, the shape
    options each takes (:data:`SHAPE_OPTIONS`), encoder name -> its pretrained weight names, and
    timm's model names."""
    import inspect

    import segmentation_models_pytorch as smp
    import timm

    classes = smp.MODEL_ARCHITECTURES_MAPPING.values()
    return {
        "architectures": sorted(cls.__name__ for cls in classes),
        "shape_options": {
            cls.__name__: [o for o in SHAPE_OPTIONS if o in inspect.signature(cls).parameters]
            for cls in classes
        },
        "encoders": {
            name: sorted(smp.encoders.encoders[name]["pretrained_settings"])
            for name in smp.encoders.get_encoder_names()
        },
        "timm_models": timm.list_models(),
    }


def cache_dir() -> Path:
    """``$SEGPIPE_CACHE_DIR``, else ``$XDG_CACHE_HOME/segpipe``, else ``~/.cache/segpipe``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(base).expanduser() / "segpipe"


@functools.cache
def installed_versions() -> dict[str, str]:
    """Versions of the installed smp and timm ("none" for one that is missing), read from their
    metadata without importing them; once per process (a search checks every draw's names)."""
    versions = {}
    for key, distribution in _DISTRIBUTIONS.items():
        try:
            versions[key] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            versions[key] = "none"
    return versions


def cache_file() -> Path:
    """The cache file of the catalogue of the installed smp and timm."""
    versions = installed_versions()
    return cache_dir() / (
        f"model-names-v{FORMAT}-smp-{versions['smp']}-timm-{versions['timm']}.json"
    )


@functools.cache
def load_catalogue(path: Path) -> dict[str, Any]:
    """The catalogue kept in ``path``; when it is missing, unreadable or malformed, a new one from
    :func:`build_catalogue`, written there if the directory allows. Memoized per path, so
    checking many runs' configs reads the file once."""
    names = _read(path)
    if names is None:
        names = build_catalogue()
        _write(path, names)
    return names


def build_catalogue() -> dict[str, Any]:
    """:func:`names_from_smp` run in a child process, so that this one never imports torch."""
    package_parent = str(Path(__file__).resolve().parents[2])  # src/, above segpipe/
    pythonpath = os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "segpipe.models.names"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": pythonpath},
    )
    lines = proc.stdout.splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            "cannot read the model names of segmentation-models-pytorch (python -m "
            f"segpipe.models.names exited with {proc.returncode}):\n{proc.stderr[-2000:]}"
        )
    return json.loads(lines[-1])


def _read(path: Path) -> dict[str, Any] | None:
    """The catalogue in ``path``, or None when there is none or it is not a valid one."""
    try:
        with open(path, encoding="utf-8") as fh:
            names = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("model-name cache %s is unreadable (%s): building it again", path, exc)
        return None
    if not _well_formed(names):
        logger.warning("model-name cache %s is not a catalogue: building it again", path)
        return None
    return names


def _well_formed(names: Any) -> bool:
    """Whether ``names`` has the shape :func:`names_from_smp` gives."""

    def strings(value: Any) -> bool:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)

    return (
        isinstance(names, dict)
        and strings(names.get("architectures"))
        and strings(names.get("timm_models"))
        and isinstance(names.get("encoders"), dict)
        and all(strings(weights) for weights in names["encoders"].values())
        and isinstance(names.get("shape_options"), dict)
        and all(strings(options) for options in names["shape_options"].values())
    )


def _write(path: Path, names: dict[str, Any]) -> None:
    """Write the catalogue to ``path`` atomically; a directory that cannot be written only costs
    rebuilding it next time, so that is logged, not raised."""
    try:
        write_json(path, names)
    except OSError as exc:
        logger.warning(
            "cannot cache the model names in %s (%s): each run reads them from smp again, which "
            "takes seconds; set %s to a writable directory",
            path,
            exc,
            CACHE_ENV,
        )


if __name__ == "__main__":
    print(json.dumps(names_from_smp()))
