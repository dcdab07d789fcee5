"""`dupdetect ingest DIR` and `dupdetect scan DIR --report` as a user runs them."""

from __future__ import annotations

import asyncio
import json
import shlex
import signal
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.photos import edited_copy, encode, jpeg, photo, truncated_jpeg
from tests.processes import DUPDETECT, cli_env, run_cli

pytestmark = pytest.mark.slow  # whole folder commands, some in processes of their own (`-m "not slow"` leaves them out)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    (root / "trip").mkdir(parents=True)
    (root / "chelsea.jpg").write_bytes(jpeg("chelsea"))
    (root / "trip" / "chelsea-small.jpg").write_bytes(edited_copy("chelsea"))
    (root / "trip" / "coffee.png").write_bytes(encode(photo("coffee"), "PNG"))
    (root / "notes.txt").write_text("not an image")
    return root


async def dupdetect(*args: str, data_dir: Path) -> tuple[int, str]:
    """The command line as a user runs it (exit code and output), in this process: the same
    ``main``, without an interpreter and torch to start for each of these tests."""
    return await asyncio.to_thread(run_cli, list(args), DUPDETECT_DATA_DIR=str(data_dir))


async def test_scan_writes_an_offline_report_of_groups(folder: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    code, out = await dupdetect("scan", str(folder), "--report", str(report), data_dir=tmp_path / "data")
    assert code == 0, out
    assert "3 images, 1 duplicate groups, 0 failed" in out
    page = report.read_text()
    assert "Group 1: 2 images" in page and "chelsea.jpg" in page and "trip/chelsea-small.jpg" in page
    assert "coffee.png" not in page and "data:image/jpeg;base64," in page
    assert not (tmp_path / "data").exists()  # the service's data is never touched


async def test_scan_fails_loudly_on_unreadable_images(folder: Path, tmp_path: Path) -> None:
    (folder / "broken.jpg").write_bytes(truncated_jpeg())
    code, out = await dupdetect("scan", str(folder), "--report", str(tmp_path / "r.html"), data_dir=tmp_path)
    assert code == 1
    assert "failed: broken.jpg: the JPEG data is truncated" in out


async def test_ingest_is_resumable_in_process(folder: Path, tmp_path: Path) -> None:
    code, out = await dupdetect("ingest", str(folder), data_dir=tmp_path / "data")
    assert code == 0, out
    assert "3 added (1 duplicate pairs found), 0 already stored, 0 failed" in out
    (folder / "trip" / "rocket.jpg").write_bytes(jpeg("rocket"))
    (folder / "trip" / "chelsea-again.jpg").write_bytes(jpeg("chelsea"))  # a copy: takes the stored vector
    code, out = await dupdetect("ingest", str(folder), data_dir=tmp_path / "data")
    assert "2 added (2 duplicate pairs found), 3 already stored, 0 failed" in out, out


async def test_ingest_to_a_running_service(folder: Path, base_url: str, tmp_path: Path) -> None:
    code, out = await dupdetect("ingest", str(folder), "--url", base_url, "--batch", "2", data_dir=tmp_path)
    assert code == 0, out
    assert "3 added (1 duplicate pairs found)" in out and "ingest [" in out  # with a progress bar
    code, out = await dupdetect("ingest", str(folder), "--url", base_url, data_dir=tmp_path)
    assert "0 added (0 duplicate pairs found), 3 already stored" in out


async def test_ingest_to_a_running_service_names_each_refused_file(folder: Path, base_url: str, tmp_path: Path) -> None:
    """A batch the service refuses whole (422: no usable image) reports each file's own error."""
    (folder / "broken.jpg").write_bytes(truncated_jpeg())
    code, out = await dupdetect("ingest", str(folder), "--url", base_url, "--batch", "1", data_dir=tmp_path)
    assert code == 1, out
    assert "3 added" in out and "1 failed" in out
    assert "failed: broken.jpg: the JPEG data is truncated" in out


async def test_byte_identical_copies_are_paired_and_a_rerun_skips_them(folder: Path, tmp_path: Path) -> None:
    (folder / "COPY_chelsea.jpg").write_bytes((folder / "chelsea.jpg").read_bytes())
    report = tmp_path / "report.html"
    code, out = await dupdetect("scan", str(folder), "--report", str(report), data_dir=tmp_path / "data")
    assert code == 0, out
    assert "4 images, 1 duplicate groups, 0 failed" in out
    page = report.read_text()
    assert "Group 1: 3 images" in page and "COPY_chelsea.jpg" in page

    code, out = await dupdetect("ingest", str(folder), data_dir=tmp_path / "data")
    assert "4 added" in out, out
    code, out = await dupdetect("ingest", str(folder), data_dir=tmp_path / "data")
    assert "0 added (0 duplicate pairs found), 4 already stored" in out


async def test_ingest_over_http_keeps_file_names_as_they_are(
    folder: Path, base_url: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    (folder / "sub dir").mkdir()
    (folder / "sub dir" / "ünï photo.jpg").write_bytes(jpeg("rocket"))
    code, out = await dupdetect("ingest", str(folder), "--url", base_url, data_dir=tmp_path)
    assert code == 0, out
    async with http.get(f"{base_url}/groups") as resp:
        assert resp.status == 200
    async with http.post(f"{base_url}/search", data=_form("rocket.jpg", jpeg("rocket"))) as resp:
        found = (await resp.json())["items"][0]["duplicates"]
    assert [d["filename"] for d in found] == ["sub dir/ünï photo.jpg"]


def _form(name: str, payload: bytes) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("files", payload, filename=name)
    return form


async def test_ctrl_c_during_ingest_prints_one_line_and_the_summary_so_far(tmp_path: Path, dsn: str) -> None:
    """The ingest is held mid-way by a lock, so Ctrl-C always lands during it, however fast the
    machine: its waiting write is the signal that it is working."""
    folder = tmp_path / "many"
    folder.mkdir()
    for n in range(6):
        (folder / f"{n}.jpg").write_bytes(jpeg("rocket", quality=40 + n))
    env = cli_env(DUPDETECT_DATABASE_URL=dsn, DUPDETECT_QUERY_TIMEOUT="600")
    holder = await asyncpg.connect(dsn)
    try:
        held = holder.transaction()
        await held.start()
        await holder.execute("LOCK TABLE images IN SHARE ROW EXCLUSIVE MODE")  # reads go on, writes wait
        proc = await asyncio.create_subprocess_exec(
            *DUPDETECT,
            "ingest",
            str(folder),
            "--batch",
            "2",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            # as a terminal starts it: a suite run in the background (`scripts/test &`) ignores
            # SIGINT, and a child would inherit that and never see the Ctrl-C
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        waiting = (  # pg_locks spans the cluster, and every test database is a copy with the same table oids
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'images'::regclass"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        while not await holder.fetchval(waiting):
            assert proc.returncode is None, (await proc.communicate())[0].decode()
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        await held.rollback()
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    finally:
        await holder.close()
    text = out.decode()
    assert proc.returncode == 130, text
    assert "Traceback" not in text and "interrupted; run the same command again" in text
    assert text.splitlines()[-1] == "dupdetect: 0 added (0 duplicate pairs found), 0 already stored, 0 failed"


async def test_scan_writes_json_for_machines_and_keeps_its_output_quiet(folder: Path, tmp_path: Path) -> None:
    (folder / "COPY_chelsea.jpg").write_bytes((folder / "chelsea.jpg").read_bytes())
    report, answer = tmp_path / "report.html", tmp_path / "groups.json"
    code, out = await dupdetect("scan", str(folder), "--report", str(report), "--json", str(answer), data_dir=tmp_path / "data")
    assert code == 0, out
    assert '{"time"' not in out  # no JSON log lines without --verbose
    (group,) = json.loads(answer.read_text())["groups"]
    assert {m["file"] for m in group["members"]} == {"chelsea.jpg", "COPY_chelsea.jpg", "trip/chelsea-small.jpg"}
    assert group["keep"] in ("chelsea.jpg", "COPY_chelsea.jpg")  # full size, not the small copy
    kinds = {frozenset((p["a"], p["b"])): p["kind"] for p in group["pairs"]}
    assert kinds[frozenset(("chelsea.jpg", "COPY_chelsea.jpg"))] == "exact"
    page = report.read_text()
    assert "<b>keep</b>" in page and "exact 1.000" in page

    code, out = await dupdetect("scan", str(folder), "--report", str(report), "--threshold", "0.9999", data_dir=tmp_path / "data")
    assert code == 0 and "1 duplicate groups" in out  # exact copies pair whatever the threshold
    code, out = await dupdetect("scan", str(folder), "--threshold", "2", data_dir=tmp_path / "data")
    assert code == 2 and "not a similarity" in out


async def test_scan_lists_the_copies_to_remove_and_moves_them_only_when_asked(folder: Path, tmp_path: Path) -> None:
    (folder / "it's a copy.jpg").write_bytes((folder / "chelsea.jpg").read_bytes())
    listing, aside = tmp_path / "trash.txt", tmp_path / "aside"
    code, out = await dupdetect(
        "scan", str(folder), "--report", str(tmp_path / "r.html"), "--trash-list", str(listing), data_dir=tmp_path
    )
    assert code == 0, out
    listed = [shlex.split(line)[0] for line in listing.read_text().splitlines()]
    assert sorted(Path(p).name for p in listed) == ["chelsea-small.jpg", "it's a copy.jpg"]  # not the keeper
    assert all(Path(p).exists() for p in listed)  # listing deletes nothing

    code, out = await dupdetect(
        "scan", str(folder), "--report", str(tmp_path / "r.html"), "--move-to", str(aside), data_dir=tmp_path
    )
    assert code == 0, out
    assert (folder / "chelsea.jpg").exists() and not (folder / "it's a copy.jpg").exists()
    assert (aside / "it's a copy.jpg").exists() and (aside / "trip" / "chelsea-small.jpg").exists()


async def test_folder_commands_refuse_a_missing_folder_or_a_file_in_one_line(folder: Path, tmp_path: Path) -> None:
    for command in ("scan", "ingest"):
        for path in (tmp_path / "nowhere", folder / "chelsea.jpg"):
            code, out = await dupdetect(command, str(path), data_dir=tmp_path / "data")
            assert code == 2 and out.strip().startswith("dupdetect: error: ") and len(out.strip().splitlines()) == 1, out
    code, out = await dupdetect("scan", str(folder), "--report", str(tmp_path / "no" / "r.html"), data_dir=tmp_path)
    assert code == 2 and "does not exist" in out and "Traceback" not in out


async def test_scan_skips_hidden_and_excluded_folders_and_its_own_move_target(folder: Path, tmp_path: Path) -> None:
    for hidden in (".thumbnails", "@eaDir", "raw"):
        (folder / hidden).mkdir()
        (folder / hidden / "chelsea.jpg").write_bytes((folder / "chelsea.jpg").read_bytes())
    (folder / "line\nbreak.jpg").write_bytes((folder / "chelsea.jpg").read_bytes())
    aside, listing = folder / "_dupes", tmp_path / "trash"
    args = ("--report", str(tmp_path / "r.html"), "--exclude", "raw", "--json", str(tmp_path / "g.json"))
    code, out = await dupdetect("scan", str(folder), *args, "--trash-list", str(listing), data_dir=tmp_path)
    scanned = {m["file"] for g in json.loads((tmp_path / "g.json").read_text())["groups"] for m in g["members"]}
    assert not any(name.startswith((".thumbnails", "@eaDir", "raw")) for name in scanned)
    assert "line\nbreak.jpg" in scanned and code == 1 and "use --null" in out  # never split over two lines
    assert "break.jpg" not in listing.read_text()
    code, out = await dupdetect("scan", str(folder), *args, "--trash-list", str(listing), "--null", data_dir=tmp_path)
    assert code == 0 and str(folder / "line\nbreak.jpg").encode() + b"\0" in listing.read_bytes()

    code, out = await dupdetect("scan", str(folder), *args, "--move-to", str(aside), data_dir=tmp_path)
    assert code == 0 and (aside / "line\nbreak.jpg").exists()
    code, out = await dupdetect("scan", str(folder), *args, "--move-to", str(aside), data_dir=tmp_path)
    assert code == 0 and "0 duplicate groups" in out and not (aside / "_dupes").exists()  # never its own target again


async def test_scan_keeps_copies_in_a_reference_folder(folder: Path, tmp_path: Path) -> None:
    (folder / "archive").mkdir()
    (folder / "archive" / "cat-small.jpg").write_bytes(edited_copy("chelsea"))
    listing, out_json = tmp_path / "trash", tmp_path / "g.json"
    code, out = await dupdetect(
        "scan",
        str(folder),
        "--report",
        str(tmp_path / "r.html"),
        "--trash-list",
        str(listing),
        "--json",
        str(out_json),
        "--keep-in",
        "archive",
        data_dir=tmp_path,
    )
    assert code == 0, out
    [group] = [g for g in json.loads(out_json.read_text())["groups"] if len(g["members"]) > 2]
    assert group["keep"] == "archive/cat-small.jpg" and group["keep_reason"].startswith("kept: in a reference folder")
    assert "archive" not in listing.read_text() and "chelsea.jpg" in listing.read_text()


async def test_a_parent_and_a_child_ingested_under_one_root_store_nothing_twice(folder: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    code, out = await dupdetect("ingest", str(folder / "trip"), "--root", str(folder), data_dir=data)
    assert code == 0 and "2 added" in out, out
    code, out = await dupdetect("ingest", str(folder), "--root", str(folder), data_dir=data)
    assert code == 0 and "1 added" in out and "2 already stored" in out, out  # trip/… has the same names
    code, out = await dupdetect("ingest", str(folder), "--root", str(folder / "trip"), data_dir=data)
    assert code == 2 and out.startswith("dupdetect: error: ") and "not under --root" in out


async def test_ingest_into_an_unknown_collection_is_one_line(folder: Path, tmp_path: Path) -> None:
    code, out = await dupdetect("ingest", str(folder), "--collection", "nosuch", data_dir=tmp_path / "data")
    assert (
        code == 2
        and "Traceback" not in out
        and out.strip().splitlines()[-1]
        == ("dupdetect: error: no collection 'nosuch'; `dupdetect keys create --collection nosuch` makes it")
    )


async def test_ingest_to_a_service_that_cannot_be_reached_is_one_line(folder: Path, tmp_path: Path) -> None:
    code, out = await dupdetect("ingest", str(folder), "--url", "http://127.0.0.1:9", data_dir=tmp_path / "data")
    assert code == 2 and out.startswith("dupdetect: error: cannot reach http://127.0.0.1:9") and "Traceback" not in out
