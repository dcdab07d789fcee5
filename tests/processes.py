"""`dupdetect` as operators run it: real processes on real ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

DUPDETECT = [sys.executable, "-m", "dupdetect.cli"]


def cli_env(**extra: str) -> dict[str, str]:
    """This environment without DUPDETECT_* variables, with the offline model, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUPDETECT_")}
    env["DUPDETECT_MODEL"] = "efficientnet_lite0"
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_serve(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*DUPDETECT, "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def wait_ready(proc: subprocess.Popen[str], port: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as resp:
                assert resp.status == 200
                return
        except OSError:
            assert time.monotonic() < deadline, f"not ready within {timeout:.0f} s"
            time.sleep(0.1)
