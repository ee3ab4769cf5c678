"""Comparison reports built from fabricated runs and read back as tables."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from segpipe.reporting.comparison import (
    RunResult,
    build_comparison,
)

from helpers.report_inputs import CLASSES

GALLERY_SIZE = 2


class _Tables(HTMLParser):
    """Collects the cell texts of each <table id=...> as rows, and each row's class."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.row_classes: dict[str, list[str | None]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if tag == "table":
            self._table = attrs.get("id", "")
            self.tables.setdefault(self._table, [])
            self.row_classes.setdefault(self._table, [])
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
            self.row_classes[self._table].append(attrs.get("class"))
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._table is not None and self._cell is not None:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse_tables(html: str) -> _Tables:
    parser = _Tables()
    parser.feed(html)
    return parser


def comparison_html(tmp_path: Path, runs: list[RunResult], **options) -> str:
    out = tmp_path / "compare"
    build_comparison(
        out / "report.html",
        out / "figures",
        out / "leaderboard.csv",
        runs,
        **{"class_names": CLASSES, "gallery_size": GALLERY_SIZE, "n_resamples": 2000, **options},
    )
    return (out / "report.html").read_text(encoding="utf-8")
