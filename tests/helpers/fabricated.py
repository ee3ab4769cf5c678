"""Fingerprints made up for the planning rules' tests, shaped as
segpipe.planning.fingerprint.fingerprint_dataset writes them, and a model of the probe."""

from __future__ import annotations

from typing import Any


def value(
    key: Any,
    share: float,
    *,
    image_share: float = 1.0,
    width: float | None = 20,
    pixels_total: int = 10**7,
) -> dict[str, Any]:
    """One ``values`` row: a raw value (or [r, g, b]) with its share and structure width."""
    structures = None
    if width is not None:
        structures = {
            "components": 10,
            "specks": 0,
            "area": {"p5": 100.0, "median": 400.0},
            "short_side": {"p5": 10.0, "median": 20.0},
            "measured": 10,
            "width": {"p5": width, "median": width * 3},
        }
    return {
        "value": key,
        "pixels": int(share * pixels_total),
        "share": share,
        "images": 1,
        "image_share": image_share,
        "structures": structures,
    }


def spread(median: float, ratio: float = 1.0) -> dict[str, float]:
    """Quantiles around ``median`` whose p90 / p10 is ``ratio``."""
    low, high = median / ratio**0.5, median * ratio**0.5
    return {"min": low, "p10": low, "median": median, "p90": high, "max": high}


def fingerprint(
    values: list[dict] | None = None,
    *,
    pairs: int = 100,
    found: int | None = None,
    unusable: int = 0,
    width: float = 512,
    height: float = 512,
    spread_ratio: float = 1.0,
    aspect_ratio: float = 1.0,
    encoding: str = "values",
    distinct_per_mask: float | None = None,
    lists: dict[str, int] | None = None,
    duplicates: list[list[str]] | None = None,
    root: str = "data/cells",
    palette: dict | None = None,
) -> dict[str, Any]:
    """A fingerprint of ``pairs`` usable pairs (of ``found``; fewer read makes a sample)."""
    values = values if values is not None else [value(0, 0.7), value(255, 0.3)]
    read = pairs + unusable
    found = found if found is not None else read
    return {
        "fingerprint_version": 1,
        "dataset": {"root": root, "layout": "folder"},
        "pairs": {
            "found": found,
            "read": read,
            "usable": pairs,
            "unusable": unusable,
            "unpaired_files": 0,
            "stray_files": 0,
        },
        "sample": {"pairs": read, "of": found, "seed": 0} if read < found else None,
        "quarantine": [],
        "warnings": [],
        "warning_count": 0,
        "images": {
            "height": spread(height, spread_ratio),
            "width": spread(width, spread_ratio),
            "aspect": spread(width / height, aspect_ratio),
            "modes": {"RGB": pairs},
            "channels": {"3": pairs},
            "formats": {"PNG RGB": pairs},
        },
        "masks": {
            "encoding": encoding,
            "modes": {"RGB" if encoding == "colours" else "L": pairs},
            "distinct_per_mask": {
                "median": distinct_per_mask or float(len(values)),
                "max": int(distinct_per_mask or len(values)),
            },
            "distinct": int(distinct_per_mask or len(values)),
            "measured": True,
            "palette": palette,
        },
        "values": values,
        "duplicates": duplicates or [],
        "split_lists": lists or {},
    }


def probe_model(baseline_mb: float = 800.0, per_megapixel_mb: float = 600.0, step_s: float = 0.5):
    """A stand-in for segpipe.planning.probe.run_probe: memory grows linearly with the pixels of
    a batch, and the trials stop past the budget, as the probe's do."""

    def probe(spec) -> dict:
        trials = []
        for batch in spec.batches:
            megapixels = batch * spec.image_size**2 / 1e6
            peak = baseline_mb + per_megapixel_mb * megapixels
            trials.append(
                {
                    "batch": batch,
                    "measured": True,
                    "peak_mb": peak,
                    "growth_mb": peak - baseline_mb,
                    "step_s": step_s * (1 + megapixels),
                }
            )
            if peak > spec.budget_mb:
                break
        return {
            "device": spec.device,
            "image_size": spec.image_size,
            "baseline_mb": baseline_mb,
            "trials": trials,
        }

    return probe
