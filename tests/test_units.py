"""Sizes and durations as people write them."""

from __future__ import annotations

import datetime as dt

import pytest

from savedhub._io.units import human_size, parse_duration


@pytest.mark.parametrize(
    "size, text",
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (5 * 2**20, "5.0 MiB"),
        (int(2.5 * 2**30), "2.5 GiB"),
        (3 * 2**40, "3.0 TiB"),
        (2 * 2**50, "2048.0 TiB"),
    ],
)
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text


def test_parse_duration() -> None:
    assert parse_duration("30d") == dt.timedelta(days=30)
    assert parse_duration(" 90M ") == dt.timedelta(minutes=90)
    assert parse_duration("3600") == dt.timedelta(hours=1)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")
