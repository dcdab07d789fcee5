"""The short version of bench/soak.py: uploads under a killed database, a killed service and a
SIGTERM; afterwards every answer matches what is stored."""

from __future__ import annotations

from pathlib import Path

from bench.soak import FAULTS, soak


async def test_uploads_under_faults_lose_nothing_and_leave_nothing_partial(tmp_path: Path) -> None:
    report = await soak(tmp_path, clients=2, seconds=40, fault_every=10, model="efficientnet_lite0")

    assert [fault.kind for fault in report.faults] == list(FAULTS)
    assert report.counts["ok"] > 20 and report.counts["failed"] > 0  # the faults did hit uploads
    assert report.counts["lost"] == 0 and report.counts["partial"] == 0 and report.counts["unclean"] == 0
    assert report.problems == []
    db_kill = next(fault for fault in report.faults if fault.kind == "db-kill")
    assert db_kill.recovery_s <= 10
