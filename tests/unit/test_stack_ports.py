"""The stack's port band joins whatever `ip_local_reserved_ports` already holds."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack"))

from stackctl.ports import merged


def test_band_added_to_nothing() -> None:
    assert merged("\n", 50000, 60999) == "50000-60999"


def test_band_merged_with_overlapping_and_separate_ranges() -> None:
    assert merged("8080,49990-50010,61000-61005\n", 50000, 60999) == "8080,49990-61005"
    assert merged("1000-2000", 50000, 60999) == "1000-2000,50000-60999"
    assert merged("50000-60999", 50000, 60999) == "50000-60999"
