"""A decode worker process (``python -m dupdetect.embedding.decode_process``), started by
:class:`dupdetect.embedding.decoders.DecoderPool`.

It reads frames from stdin and answers on stdout: first the decode options and the memory it
may use, then one image per frame, answered by the decoded image or the DecodeError. It caps
its own memory (what a decode allocates past the cap fails as MemoryError, answered
``too_many_pixels``), and it exits when its parent is gone, even in the middle of a decode: a
killed service leaves no workers behind.
"""

from __future__ import annotations

import os
import pickle
import resource
import signal
import sys
import threading
import time
from typing import IO, Any

PARENT_CHECK_S = 0.5


def read_frame(stream: IO[bytes]) -> bytes | None:
    """One length-prefixed frame; None at the end of the stream."""
    head = stream.read(4)
    if len(head) < 4:
        return None
    size = int.from_bytes(head)
    body = stream.read(size)
    return body if len(body) == size else None


def write_frame(stream: IO[bytes], payload: bytes) -> None:
    stream.write(len(payload).to_bytes(4) + payload)
    stream.flush()


def _exit_with_parent(parent: int) -> None:
    """Reparented (the service died, however): stop now, whatever is running."""
    while True:
        time.sleep(PARENT_CHECK_S)
        if os.getppid() != parent:
            os._exit(1)


def _data_in_use() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    return 0


def _cap_memory(allowed: int) -> None:
    """What this process holds now (Python, numpy, PIL, OpenCV) plus what one decode may take."""
    if sys.platform.startswith("linux"):
        limit = _data_in_use() + allowed
        resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.getrlimit(resource.RLIMIT_DATA)[1]))


def main() -> None:
    parent = int(os.environ.get("DUPDETECT_DECODER_PARENT", os.getppid()))
    if os.getppid() != parent:  # the parent died while this process started
        return
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the parent's to handle

    import cv2

    from dupdetect.embedding.decode import DecodeError, decode
    from dupdetect.error_codes import Code

    cv2.setNumThreads(1)  # one decode per process; the pool runs them in parallel
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but frames on the pipe
    config = read_frame(stdin)
    if config is None:
        return
    options: dict[str, Any] = pickle.loads(config)
    _cap_memory(options.pop("memory"))
    write_frame(stdout, b"ready")
    while (data := read_frame(stdin)) is not None:
        try:
            result: object = decode(data, **options)
        except DecodeError as exc:
            result = exc
        except MemoryError:
            result = DecodeError(Code.TOO_MANY_PIXELS, "decoding this image needs more memory than one decode may take")
        except Exception:  # a decoder bug: the item fails, the worker lives on
            result = DecodeError(Code.CORRUPT_IMAGE, "the image could not be decoded")
        try:
            payload = pickle.dumps(result)
        except MemoryError:
            payload = pickle.dumps(DecodeError(Code.TOO_MANY_PIXELS, "the decoded image is too large to hand back"))
        del data, result
        write_frame(stdout, payload)


if __name__ == "__main__":
    main()
