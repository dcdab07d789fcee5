"""The decode workers: one caller's slow images do not hold up another's, a decode past its
time or memory fails alone, and no worker outlives its service. Real worker processes, no
database, no model."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import psutil
import pytest
from PIL import Image

from dupdetect.embedding.decode import DecodeError
from dupdetect.embedding.decoders import DecoderPool
from tests.photos import jpeg

MB = 1024 * 1024
OPTIONS: dict[str, Any] = {"size": 64, "max_pixels": 64_000_000, "max_decode_bytes": None, "thumbnail": 0, "keypoints": False}


def _slow_png(side: int = 3000) -> bytes:
    """Noise, barely compressed: the slowest thing to decode per byte sent."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (side, side, 3), dtype=np.uint8)).save(
        buffer, "PNG", compress_level=1
    )
    return buffer.getvalue()


@pytest.fixture
async def pool(request: pytest.FixtureRequest) -> AsyncIterator[DecoderPool]:
    options = getattr(request, "param", {})
    decoders = DecoderPool(2, OPTIONS, timeout=options.get("timeout", 120.0), memory=options.get("memory", 512 * MB))
    await asyncio.to_thread(decoders.start)
    try:
        yield decoders
    finally:
        decoders.stop()


async def test_one_callers_slow_images_do_not_hold_up_another_callers_photo(pool: DecoderPool) -> None:
    slow = _slow_png()
    finished: list[str] = []

    async def decode(data: bytes, caller: str) -> None:
        await pool.decode(data, caller)
        finished.append(caller)

    noisy = [asyncio.create_task(decode(slow, "noisy")) for _ in range(4)]
    await asyncio.sleep(0.05)  # the noisy caller's images are queued first
    await decode(jpeg("coffee"), "victim")
    # The victim had a worker of its own: at most one of the noisy images was done before it.
    assert finished.index("victim") <= 1, finished
    await asyncio.gather(*noisy)


@pytest.mark.parametrize("pool", [{"timeout": 0.05}], indirect=True)
async def test_a_decode_past_its_time_fails_alone_and_its_worker_is_replaced(pool: DecoderPool) -> None:
    before = {worker.process.pid for worker in pool._workers if worker.process}
    with pytest.raises(DecodeError) as refused:
        await pool.decode(_slow_png(), "a")
    assert refused.value.code == "decode_timeout" and "DUPDETECT_DECODE_TIMEOUT" in refused.value.message
    after = {worker.process.pid for worker in pool._workers if worker.process}
    assert len(after) == 2 and after != before  # killed and replaced
    pool.timeout = 60.0
    assert (await pool.decode(jpeg("coffee"), "a")).width == 600


@pytest.mark.parametrize("pool", [{"memory": 16 * MB}], indirect=True)
async def test_a_decode_that_allocates_more_than_a_worker_may_is_refused(pool: DecoderPool) -> None:
    # No estimate in the way (max_decode_bytes None): the worker's own memory cap stops it.
    with pytest.raises(DecodeError) as refused:
        await pool.decode(_slow_png(2500), "a")
    assert refused.value.code == "too_many_pixels"
    assert (await pool.decode(jpeg("coffee"), "a")).width == 600  # and the worker lives on


async def test_stopping_does_not_wait_for_a_running_decode(pool: DecoderPool) -> None:
    running = asyncio.create_task(pool.decode(_slow_png(4000), "a"))
    await asyncio.sleep(0.3)
    processes = [worker.process for worker in pool._workers]
    pool.stop()
    assert all(process is not None and process.poll() is not None for process in processes)
    with pytest.raises(DecodeError):
        await running


_ORPHANING = """
import asyncio, sys
from dupdetect.embedding.decoders import DecoderPool
pool = DecoderPool(2, {options!r}, timeout=600, memory=512 * 1024 * 1024)
pool.start()
print(" ".join(str(w.process.pid) for w in pool._workers), flush=True)
asyncio.run(pool.decode(open(sys.argv[1], "rb").read(), "a"))
"""


@pytest.mark.slow
def test_workers_exit_when_their_service_is_killed(tmp_path: Any) -> None:
    slow = tmp_path / "slow.png"
    slow.write_bytes(_slow_png(4000))
    service = subprocess.Popen(
        [sys.executable, "-c", _ORPHANING.format(options=OPTIONS), str(slow)], stdout=subprocess.PIPE, text=True
    )
    assert service.stdout is not None
    workers = [psutil.Process(int(pid)) for pid in service.stdout.readline().split()]
    time.sleep(0.2)  # one of them is decoding now
    os.kill(service.pid, signal.SIGKILL)
    service.wait()
    _gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, f"workers outlived the killed service: {alive}"
