"""The summary of a checked dataset: counts, image sizes, real formats, mask values and class
pixel shares, warnings and problems.

:func:`summarize` builds it from the results of :func:`segpipe.data.remap.check_pairs`;
:func:`format_summary` renders it as text. The remap step logs it (:mod:`segpipe.data.remap`) and
``segpipe verify`` prints it (:mod:`segpipe.data.verify`); both import it from here, and neither
imports the other for it.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from segpipe.data.dataset_layouts import is_lost_pair


def _key(value: Any) -> str:
    return str(list(value)) if isinstance(value, tuple) else str(value)


def _shares(counts: Counter) -> list[dict[str, Any]]:
    total = sum(counts.values()) or 1
    return [
        {"value": key, "pixels": int(n), "share": n / total}
        for key, n in sorted(counts.items(), key=lambda kv: (str(type(kv[0])), kv[0]))
    ]


def duplicate_groups(results: list[dict]) -> list[list[str]]:
    """The images of the usable pairs that hold identical pixels (the same ``content`` digest),
    one sorted list of paths per group of two or more, groups in order of their first path."""
    by_content: dict[str, list[str]] = {}
    for r in results:
        if "problem" not in r and r.get("content"):
            by_content.setdefault(r["content"], []).append(r["image"])
    return sorted(sorted(paths) for paths in by_content.values() if len(paths) > 1)


def duplicate_warnings(results: list[dict]) -> list[str]:
    """One warning per group of identical images (:func:`duplicate_groups`), naming the files."""
    return [
        f"identical images (the same pixels) under {len(paths)} names: {', '.join(paths)}: "
        "kept together in one split (and fold); delete all but one unless that is meant"
        for paths in duplicate_groups(results)
    ]


class _Collect(logging.Handler):
    """Keeps the message of every warning it is handed."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def logged_warnings() -> Iterator[list[str]]:
    """The messages of the warnings segpipe's loggers log meanwhile, in order (logged as
    before too): what indexing a dataset warns of (an id in two lists, pairs in no list, files
    in sub-folders), for :func:`summarize`."""
    handler = _Collect()
    package = logging.getLogger("segpipe")
    package.addHandler(handler)
    try:
        yield handler.messages
    finally:
        package.removeHandler(handler)


def summarize(
    frame: pd.DataFrame,
    index_quarantine: list[tuple[str, str]],
    results: list[dict],
    spec,
    *,
    class_names: Sequence[str] | None = None,
    root: str | Path | None = None,
    layout: str | None = None,
    index_warnings: Sequence[str] = (),
) -> dict[str, Any]:
    """A JSON-ready summary of a checked dataset (see :func:`segpipe.data.remap.check_pairs`).
    ``index_warnings``: the warnings indexing logged (:func:`logged_warnings`), first among the
    summary's warnings, so that their count and the verdict hold every warning."""
    decoded = [r for r in results if "width" in r]
    good = [r for r in results if "problem" not in r]
    values: Counter = Counter()
    classes: Counter = Counter()
    for r in good:
        values.update(r["value_counts"])
        classes.update(r["class_counts"])
    unpaired = sum(is_lost_pair(p) for _, p in index_quarantine)
    problems = [(f, p) for f, p in index_quarantine] + [
        (r["problem_file"], r["problem"]) for r in results if "problem" in r
    ]
    warnings = list(index_warnings)
    warnings += [m for r in results for level, m in r["notes"] if level >= logging.WARNING]
    warnings += duplicate_warnings(results)
    widths = [r["width"] for r in decoded]
    heights = [r["height"] for r in decoded]
    names = list(class_names or [])
    class_rows = _shares(classes)
    for row in class_rows:
        cid = row["value"]
        row["name"] = (
            "ignore" if cid == spec.ignore_index else names[cid] if cid < len(names) else ""
        )
    listed = len(frame) and (frame["official_split"] != "").any()
    splits = Counter(frame["official_split"].replace("", "(in no list)")) if listed else Counter()
    return {
        "root": str(root) if root is not None else None,
        "layout": layout,
        "pairs_found": len(frame),
        "pairs_usable": len(good),
        "pairs_unusable": len(results) - len(good),
        "unpaired_files": unpaired,
        "stray_files": len(index_quarantine) - unpaired,
        "official_splits": dict(sorted(splits.items())),
        "image_formats": dict(
            Counter(f"{r['image_format']} {r['image_mode']}" for r in decoded).most_common()
        ),
        "image_sizes": dict(Counter(f"{r['width']}x{r['height']}" for r in decoded).most_common()),
        "min_size": [min(widths), min(heights)] if decoded else None,
        "max_size": [max(widths), max(heights)] if decoded else None,
        "mask_values": [{**row, "value": _key(row["value"])} for row in _shares(values)],
        "classes": [] if spec.counts_only else class_rows,
        "single_value_masks": sum(len(r["value_counts"]) == 1 for r in good),
        "duplicate_images": duplicate_groups(results),
        "warnings": warnings,
        "problems": [{"file": f, "problem": p} for f, p in problems],
        "ok": not problems,
    }


SUMMARY_KEYS = frozenset({"root", "layout", "pairs_found", "pairs_usable", "ok"})


def is_summary_file(path: str | Path) -> bool:
    """Whether ``path`` holds a summary that ``segpipe verify --json`` wrote (JSON with the keys
    of :func:`summarize`): the only file that ``--json`` replaces."""
    import json

    try:
        summary = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and summary.keys() >= SUMMARY_KEYS


def _lines(title: str, items: list[str], limit: int) -> list[str]:
    out = [f"{title} ({len(items)}):"]
    out += [f"  {item}" for item in items[:limit]]
    if len(items) > limit:
        out.append(f"  ... and {len(items) - limit} more")
    return out


def _span(low: int, high: int) -> str:
    """'30' or '2..300': per axis, as a 2x300 and a 300x2 image have no '300x300' maximum."""
    return str(low) if low == high else f"{low}..{high}"


def format_summary(summary: dict[str, Any], max_lines: int = 50) -> str:
    """The summary as readable text, one section per line group."""
    s = summary
    out = []
    if s["root"]:
        out.append(f"Dataset {s['root']} (layout {s['layout']})")
    out.append(
        f"Pairs: {s['pairs_found']} found, {s['pairs_usable']} usable, "
        f"{s['pairs_unusable']} unusable; {s['unpaired_files']} unpaired files, "
        f"{s['stray_files']} stray files"
    )
    if s["official_splits"]:
        out.append(
            "Official split lists: "
            + ", ".join(f"{k} {v}" for k, v in s["official_splits"].items())
        )
    out.append(
        "Image formats (from content): "
        + (", ".join(f"{k} {v}" for k, v in s["image_formats"].items()) or "none")
    )
    sizes = list(s["image_sizes"].items())
    if sizes:
        shown = ", ".join(f"{k} {v}" for k, v in sizes[:5])
        more = f", ... ({len(sizes)} sizes)" if len(sizes) > 5 else ""
        (w0, h0), (w1, h1) = s["min_size"], s["max_size"]
        out.append(
            f"Image sizes (WxH): {shown}{more}; width {_span(w0, w1)}, height {_span(h0, h1)}"
        )
    values = s["mask_values"]
    shown = ", ".join(f"{v['value']} {100 * v['share']:.1f}%" for v in values[:20])
    more = f", ... ({len(values)} values)" if len(values) > 20 else ""
    out.append(f"Mask values (share of pixels): {shown or 'none'}{more}")
    if s["classes"]:
        out.append(
            "Classes (share of pixels): "
            + ", ".join(
                f"{c['value']} {c['name']} {100 * c['share']:.1f}%".replace("  ", " ")
                for c in s["classes"]
            )
        )
    if s["single_value_masks"]:
        out.append(f"Masks holding a single value: {s['single_value_masks']} (kept)")
    out += _lines("Warnings", s["warnings"], max_lines)
    out += _lines("Problems", [f"{p['file']}: {p['problem']}" for p in s["problems"]], max_lines)
    out.append(verdict(s))
    return "\n".join(out)


def verdict(summary: dict[str, Any]) -> str:
    """The last line: OK or the problem count, and the warning count when there are some."""
    verdict = "OK" if summary["ok"] else f"{len(summary['problems'])} problem(s)"
    warnings = len(summary["warnings"])
    return f"Verdict: {verdict}" + (f", {warnings} warning(s)" if warnings else "")
