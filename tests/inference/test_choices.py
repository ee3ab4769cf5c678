"""The prediction choices the command line offers are the ones the config's schema allows, and
each flip reverses the image axis it names."""

from __future__ import annotations

import numpy as np

from segpipe.inference.choices import FLIPS, MODES
from segpipe.workflow.config import load_schema

from helpers.repo import REPO


def test_the_command_line_offers_what_the_schema_allows() -> None:
    predict = load_schema(REPO / "config" / "schema.yaml")["properties"]["predict"]["properties"]
    assert sorted(FLIPS) == sorted(predict["tta"]["items"]["enum"])
    assert list(MODES) == predict["mode"]["enum"]


def test_each_flip_reverses_its_axis_of_a_batch() -> None:
    batch = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    assert np.array_equal(np.flip(batch, FLIPS["hflip"]), batch[:, :, :, ::-1])  # width
    assert np.array_equal(np.flip(batch, FLIPS["vflip"]), batch[:, :, ::-1, :])  # height
