"""Decode worker processes, shared fairly between callers, each decode bounded in time and memory.

A hostile file (a JPEG of thousands of scans, a PNG of many pixels) can hold a decoder for a
long time. So each decode has a wall-clock limit (the worker is killed and replaced, the item
gets ``decode_timeout``), each worker caps its own memory, and callers (collections) take turns:
waiting images are handed to free workers one caller at a time, and when the pool is shared no
caller holds every worker, so one caller's slow images delay another's by at most one image.

Workers are plain subprocesses on pipes (no multiprocessing machinery, no resource tracker), and
they exit when the service does, however it ends.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import pickle
import select
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

from dupdetect.embedding.decode import DecodedImage, DecodeError
from dupdetect.embedding.decode_process import write_frame
from dupdetect.error_codes import Code

log = logging.getLogger(__name__)

MEMORY_HEADROOM = 64 * 1024 * 1024
"""Above one decode's budget, for the worker's own objects (the image bytes, the answer)."""
START_TIMEOUT_S = 120.0
"""A worker imports numpy, Pillow and OpenCV: seconds on a busy machine."""


class _Died(Exception):
    pass


class _Worker:
    """One worker process and the pipe protocol to it; used by one thread at a time."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None
        self.closed = False
        self._lock = threading.Lock()

    def start(self) -> None:
        if self.closed:
            raise RuntimeError("the decoders are stopped")
        env = dict(os.environ, DUPDETECT_DECODER_PARENT=str(os.getpid()), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dupdetect.embedding.decode_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self.process.stdin is not None
        write_frame(self.process.stdin, pickle.dumps(self.options))

    def wait_ready(self) -> None:
        if self._read(time.monotonic() + START_TIMEOUT_S) != b"ready":
            raise RuntimeError("a decode worker did not start")

    def kill(self) -> None:
        with self._lock:
            process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        if process is not None:
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()

    def decode(self, data: bytes, timeout: float) -> DecodedImage:
        """Blocking. A worker that runs past ``timeout`` or dies is replaced before this returns."""
        if self.process is None:
            self._replace()
        if self.process is None:
            raise DecodeError(Code.CORRUPT_IMAGE, "no decoder process could be started for this image")
        assert self.process is not None and self.process.stdin is not None
        try:
            write_frame(self.process.stdin, data)
            answer = pickle.loads(self._read(time.monotonic() + timeout))
        except TimeoutError:
            self._replace()
            raise DecodeError(
                Code.DECODE_TIMEOUT, f"decoding this image took longer than {timeout:g} s (DUPDETECT_DECODE_TIMEOUT)"
            ) from None
        except (_Died, OSError, ValueError, pickle.UnpicklingError):  # ValueError: its pipe closed by stop()
            self._replace()
            raise DecodeError(Code.CORRUPT_IMAGE, "decoding this image stopped its decoder process") from None
        if isinstance(answer, DecodeError):
            raise answer
        assert isinstance(answer, DecodedImage)
        return answer

    def _replace(self) -> None:
        self.kill()
        if self.closed:
            return
        try:
            self.start()
            self.wait_ready()
        except (OSError, RuntimeError, _Died, TimeoutError):  # the next decode starts one again
            log.exception("restarting a decode worker failed")
            self.kill()

    def _read(self, deadline: float) -> bytes:
        head = self._read_exactly(4, deadline)
        return self._read_exactly(int.from_bytes(head), deadline)

    def _read_exactly(self, size: int, deadline: float) -> bytes:
        process = self.process
        if process is None:
            raise _Died
        stdout: IO[bytes] | None = process.stdout
        assert stdout is not None
        chunks, left = [], size
        while left:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            readable, _, _ = select.select([stdout], [], [], remaining)
            if not readable:
                raise TimeoutError
            chunk = os.read(stdout.fileno(), min(left, 1 << 20))
            if not chunk:
                raise _Died
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


class DecoderPool:
    """``shared``: other callers may come (the service), so one caller holds at most all
    workers but one; a lone caller (a folder command) uses them all."""

    def __init__(self, workers: int, options: dict[str, Any], *, timeout: float, memory: int, shared: bool = True) -> None:
        self.timeout = timeout
        self.per_caller = max(1, workers - 1) if shared else workers
        self._workers = [_Worker({**options, "memory": memory + MEMORY_HEADROOM}) for _ in range(workers)]
        self._idle = list(self._workers)
        self._threads = ThreadPoolExecutor(workers, thread_name_prefix="dupdetect-decode")
        self._waiting: dict[str, collections.deque[asyncio.Future[_Worker]]] = {}
        """Per caller, in turn order: the caller served last goes to the back."""
        self._running: collections.Counter[str] = collections.Counter()

    def start(self) -> None:
        """Blocking: start every worker (in parallel) and wait until each is ready."""
        for worker in self._workers:
            worker.start()
        for worker in self._workers:
            worker.wait_ready()

    def stop(self) -> None:
        """Kill the workers, mid-decode or not: shutting down waits for no image."""
        for worker in self._workers:
            worker.closed = True
            worker.kill()
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def decode(self, data: bytes, caller: str) -> DecodedImage:
        """Raises DecodeError (the image's, a timeout, or a worker that died decoding it)."""
        worker = await self._turn(caller)
        job = asyncio.get_running_loop().run_in_executor(self._threads, worker.decode, data, self.timeout)
        job.add_done_callback(lambda _: self._finished(job, worker, caller))
        return await asyncio.shield(job)  # a cancelled request leaves its decode running, and the worker busy

    async def _turn(self, caller: str) -> _Worker:
        future: asyncio.Future[_Worker] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(caller, collections.deque()).append(future)
        self._dispatch()
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release(future.result(), caller)
            else:
                queue = self._waiting.get(caller)
                if queue is not None and future in queue:
                    queue.remove(future)
                    if not queue:
                        del self._waiting[caller]
            raise

    def _dispatch(self) -> None:
        while self._idle:
            caller = next((c for c in self._waiting if self._running[c] < self.per_caller), None)
            if caller is None:
                return
            queue = self._waiting.pop(caller)
            future = queue.popleft()
            if queue:
                self._waiting[caller] = queue  # to the back of the turn order
            if future.done():
                continue
            self._running[caller] += 1
            future.set_result(self._idle.pop())

    def _finished(self, job: asyncio.Future[DecodedImage], worker: _Worker, caller: str) -> None:
        """The worker is free when its thread is done, not when the request stops waiting."""
        if not job.cancelled():
            job.exception()  # retrieved: a request that stopped waiting has no use for it
        self._release(worker, caller)

    def _release(self, worker: _Worker, caller: str) -> None:
        self._running[caller] -= 1
        if self._running[caller] <= 0:
            del self._running[caller]
        self._idle.append(worker)
        self._dispatch()
