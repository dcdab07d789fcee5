"""The short version of bench/soak.py: uploads under a killed database, a killed service and a
SIGTERM; afterwards every answer matches what is stored. Paced by uploads answered, not by
the clock: a slow machine takes longer and tests the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import FAULTS, soak

pytestmark = pytest.mark.slow


async def test_uploads_under_faults_lose_nothing_and_leave_nothing_partial(tmp_path: Path) -> None:
    report = await soak(tmp_path, clients=2, faults=len(FAULTS), between=8, model="efficientnet_lite0")

    assert [fault.kind for fault in report.faults] == list(FAULTS)  # each came back: ready again, uploads stored
    assert report.counts["ok"] >= 8 * (len(FAULTS) + 1)
    assert report.counts["lost"] == 0 and report.counts["partial"] == 0 and report.counts["unclean"] == 0
    assert report.problems == []
