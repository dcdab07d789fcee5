"""`dupdetect` as operators run it: real processes on real ports, or its command line in this
process where a process of its own would only add the interpreter's and torch's start."""

from __future__ import annotations

import contextlib
import io
import logging
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


def run_cli(argv: list[str], **env: str) -> tuple[int, str]:
    """``dupdetect ARGV`` in this process, with only ``env``'s DUPDETECT_* settings: its exit
    code and everything it printed (stdout and stderr together). Blocking: call it in a thread.
    The environment and logging are put back afterwards."""
    from dupdetect.cli import main

    saved_env, root = dict(os.environ), logging.getLogger()
    saved_logging = (root.handlers[:], root.level)
    out = io.StringIO()
    try:
        for name in [name for name in os.environ if name.startswith("DUPDETECT_")]:
            del os.environ[name]
        os.environ.update({"DUPDETECT_MODEL": "efficientnet_lite0", **env})
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse's own errors and --help
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        root.handlers[:] = saved_logging[0]
        root.setLevel(saved_logging[1])
    return code, out.getvalue()
