"""The class colours (segpipe.data.colors): the one legend, shared by both reports."""

from __future__ import annotations

import pytest

from segpipe.data.colors import legend, palette


@pytest.mark.parametrize("count", [0, 1, 3, 12])
def test_legend_pairs_each_class_with_its_palette_colour(count):
    names = [f"class {i}" for i in range(count)]
    colours = palette(count)
    assert legend(names) == [
        {"name": name, "rgb": f"{r},{g},{b}"}
        for name, (r, g, b) in zip(names, colours.tolist(), strict=True)
    ]


def test_both_reports_use_the_one_legend():
    from segpipe.reporting import comparison, run_report

    assert run_report.legend is legend
    assert comparison.legend is legend
