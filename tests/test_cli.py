"""`dupdetect serve` and `dupdetect migrate` as an operator runs them: a real process,
the embedded PostgreSQL, SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from dupdetect import migrate
from dupdetect.database import create_pool
from dupdetect.keys import KeyRegistry
from dupdetect.settings import DatabaseSettings
from tests.processes import DUPDETECT, cli_env, free_port, start_serve, wait_ready

pytestmark = pytest.mark.slow  # real processes (`-m "not slow"` leaves them out)


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
    down = subprocess.run([*DUPDETECT, "migrate", "--downgrade", "base"], env=env, capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert "base (empty)" in down.stdout
    assert not _postgres_running(tmp_path)


def _serve_fails(env: dict[str, str]) -> str:
    """`dupdetect serve` that cannot start: exit 2 and one line on stderr; returns the line."""
    result = subprocess.run(
        [*DUPDETECT, "serve", "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("dupdetect: error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_start_up_errors_are_one_line_with_what_to_do(tmp_path: Path) -> None:
    missing_weights = _serve_fails(
        cli_env(
            DUPDETECT_DATA_DIR=str(tmp_path / "a"),
            DUPDETECT_MODEL="resnet50",
            DUPDETECT_WEIGHTS_DOWNLOAD="false",
            TORCH_HOME=str(tmp_path / "torch"),
        )
    )
    assert "resnet50" in missing_weights and "DUPDETECT_WEIGHTS_FILE" in missing_weights

    unreachable = _serve_fails(
        cli_env(
            DUPDETECT_DATA_DIR=str(tmp_path / "b"),
            DUPDETECT_DATABASE_URL=f"postgresql://x@127.0.0.1:{free_port()}/x",
        )
    )
    assert "cannot connect to PostgreSQL" in unreachable

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the data directory should be")
    unwritable = _serve_fails(cli_env(DUPDETECT_DATA_DIR=str(blocked)))
    assert "cannot start the embedded PostgreSQL" in unwritable and "DUPDETECT_DATA_DIR" in unwritable


def test_two_first_starts_on_one_empty_database_both_come_up(tmp_path: Path, empty_dsn: str) -> None:
    """Migrations are serialised: the second process waits for the first, then finds the schema at head."""
    ports = [free_port(), free_port()]
    procs = [start_serve(cli_env(DUPDETECT_DATABASE_URL=empty_dsn, DUPDETECT_DATA_DIR=str(tmp_path / str(p))), p) for p in ports]
    try:
        for proc, port in zip(procs, ports, strict=True):
            wait_ready(proc, port)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)


async def test_keys_are_created_listed_and_revoked_from_the_command_line(dsn: str) -> None:
    env = cli_env(DUPDETECT_DATABASE_URL=dsn, DUPDETECT_LOG_LEVEL="error")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*DUPDETECT, "keys", *args], env=env, capture_output=True, text=True, timeout=120)

    created = cli("create", "--collection", "archive", "--label", "nightly import")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]  # the key is the last line, for scripts
    key_id = token.split("_")[1]
    listed = cli("list")
    assert key_id in listed.stdout and "archive" in listed.stdout and token not in listed.stdout

    pool = await create_pool(dsn, DatabaseSettings(), ef_search=40)
    try:
        registry = KeyRegistry(pool)
        assert await registry.collection_for(token) == "archive"
        assert cli("revoke", key_id).returncode == 0
        assert await registry.collection_for(token) is None
    finally:
        await pool.close()
    assert cli("revoke", "nosuchkey").returncode == 1
    bad = cli("create", "--collection", "Not Valid")
    assert bad.returncode == 2 and bad.stderr.startswith("dupdetect: error: collection")


def test_version_is_the_installed_one() -> None:
    from importlib.metadata import version

    shown = subprocess.run([*DUPDETECT, "--version"], env=cli_env(), capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and shown.stdout.strip() == f"dupdetect {version('dupdetect')}"


def test_a_port_in_use_is_one_line_at_once_and_nothing_claims_to_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*DUPDETECT, "serve", "--port", str(port)],
            env=cli_env(DUPDETECT_DATA_DIR=str(tmp_path)),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert result.stdout == ""  # no "starting on": it never did
    assert result.stderr.splitlines() == [
        f"dupdetect: error: cannot listen on 127.0.0.1:{port}: Address already in use (choose another with --port or"
        " DUPDETECT_PORT)"
    ]
    assert not (tmp_path / "postgres").exists()  # refused before the database or the model was touched


_PROBE = """
import sys
from dupdetect.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted(name for name in ("torch", "torchvision", "cv2", "dupdetect.embedding.model") if name in sys.modules)
print("loaded:", *heavy, file=sys.stderr)
sys.exit(code)
"""


def test_operator_commands_load_no_model_and_print_no_log_lines(tmp_path: Path) -> None:
    env = cli_env(DUPDETECT_DATA_DIR=str(tmp_path))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", _PROBE, *args], env=env, capture_output=True, text=True, timeout=120)

    migrated = run("migrate")  # the data dir exists from here on, as an operator's would
    assert migrated.returncode == 0, migrated.stderr
    for args in (
        ("keys", "create", "--collection", "team"),
        ("keys", "list"),
        ("sql-role", "create", "reader"),
        ("migrate",),
        ("--help",),
    ):
        result = run(*args)
        assert result.returncode == 0, (args, result.stderr)
        assert result.stderr.splitlines()[-1] == "loaded:", (args, result.stderr)  # no torch, no OpenCV
        assert '{"time"' not in result.stdout + result.stderr, args  # no JSON log lines without --verbose
    assert "team" in run("keys", "list").stdout
    verbose = run("keys", "list", "--verbose")
    assert '{"time"' in verbose.stderr  # the logs are there when asked for
