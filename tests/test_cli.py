"""`dupdetect serve` and `dupdetect migrate` as an operator runs them: a real process,
the embedded PostgreSQL, SIGTERM."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import psutil

from dupdetect import migrate
from tests.processes import DUPDETECT, cli_env, free_port, start_serve, wait_ready


def _postgres_running(data_dir: Path) -> bool:
    pgdata = str(data_dir / "postgres")
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "postgres" and pgdata in " ".join(proc.info["cmdline"] or []):
            return True
    return False


def test_serve_answers_ready_with_embedded_database_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    proc = start_serve(cli_env(DUPDETECT_DATA_DIR=str(tmp_path), DUPDETECT_PORT="1"), port)  # the flag wins
    try:
        wait_ready(proc, port, timeout=60)
        assert _postgres_running(tmp_path)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # uvicorn re-raises SIGTERM after its graceful shutdown, as the Unix convention has it
    assert proc.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert f"http://127.0.0.1:{port}" in output
    assert not _postgres_running(tmp_path)


def test_bad_setting_stops_start_with_its_name(tmp_path: Path) -> None:
    result = subprocess.run(
        [*DUPDETECT, "serve"],
        env=cli_env(DUPDETECT_DATA_DIR=str(tmp_path), DUPDETECT_MAX_IMAGE_BYTES="ten megabytes"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "DUPDETECT_MAX_IMAGE_BYTES" in result.stderr


def test_migrate_up_and_down(tmp_path: Path) -> None:
    env = cli_env(DUPDETECT_DATA_DIR=str(tmp_path))
    up = subprocess.run([*DUPDETECT, "migrate"], env=env, capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    assert f"schema revision {migrate.head_revision()}" in up.stdout
    down = subprocess.run(
        [*DUPDETECT, "migrate", "--downgrade", "base"], env=env, capture_output=True, text=True, timeout=120
    )
    assert down.returncode == 0, down.stderr
    assert "base (empty)" in down.stdout
    assert not _postgres_running(tmp_path)
