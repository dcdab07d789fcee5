"""Does the suggested keeper hold the original, and does one pass of "keep the best, trash the
rest" leave one file per photo?

    python bench/keeper.py [--photos 24] [--threshold 0.5]

From real photos (the nature photos of ../shared/photos and desktop backgrounds, as
bench/embed.py fetches them) it makes a folder where each original (a camera JPEG with EXIF)
has the derived copies of bench/derived.py, and every third original 16–50 near copies. It
runs ``dupdetect scan --json --trash-list`` on the folder and prints, per kind of copy and in
all: how often the keeper is the original, originals in the trash list, files left after one
pass against one per photo, and groups against photos.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.derived import DERIVED, photo_folder  # noqa: E402
from bench.embed import nature_photos, table, wallpapers  # noqa: E402


def _photos(count: int) -> list[bytes]:
    found = nature_photos() + wallpapers()
    usable = [p for p in found if min(Image.open(io.BytesIO(p)).size) >= 600]
    return usable[:count]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=24)
    parser.add_argument("--threshold", type=float, help="scan --threshold (default: the service's)")
    parser.add_argument("--keep", type=Path, help="copy the folder's scan output (groups.json, trash.txt, report) here")
    args = parser.parse_args()
    photos = _photos(args.photos)
    if not photos:
        print("no photos: bench/embed.py fetches them with apt-get", file=sys.stderr)
        return 1
    folder = photo_folder(photos)
    with tempfile.TemporaryDirectory(prefix="dupdetect-keeper-") as tmp:
        root = Path(tmp) / "photos"
        for name, data in folder.files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        out = Path(tmp)
        command = [
            sys.executable,
            "-c",
            "from dupdetect.cli import main; raise SystemExit(main())",
            "scan",
            str(root),
            "--report",
            str(out / "report.html"),
            "--json",
            str(out / "groups.json"),
            "--trash-list",
            str(out / "trash.txt"),
        ]
        if args.threshold is not None:
            command += ["--threshold", str(args.threshold)]
        started = time.monotonic()
        env = {**os.environ, "DUPDETECT_MODEL": os.environ.get("DUPDETECT_MODEL", "efficientnet_lite0")}
        done = subprocess.run(command, check=False, stderr=subprocess.PIPE, text=True, env=env)
        if done.returncode not in (0, 1) or not (out / "groups.json").exists():  # 1 alone: some files failed
            print(done.stderr[-2000:], file=sys.stderr)
            return done.returncode or 1
        elapsed = time.monotonic() - started
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            for name in ("groups.json", "trash.txt", "report.html"):
                shutil.copy(out / name, args.keep / name)
        scan = json.loads((out / "groups.json").read_text())
        trashed = {str(Path(p).relative_to(root)) for p in shlex.split((out / "trash.txt").read_text())}
    originals = set(folder.originals.values())
    kept = Counter[str]()
    groups_of = Counter[str]()
    for group in scan["groups"]:
        source = folder.originals[group["keep"]]
        groups_of[source] += 1
        kept["original" if group["keep"] == source else group["keep"].split("/", 1)[1].split("/")[0]] += 1
    photos_grouped = len(groups_of)
    grouped = {m["file"] for group in scan["groups"] for m in group["members"]}
    right = sum(1 for group in scan["groups"] if folder.originals[group["keep"]] == group["keep"])
    left = len(folder.files) - len(trashed)
    rows = [
        ["photos", str(len(originals))],
        ["files", str(len(folder.files))],
        ["groups", str(len(scan["groups"]))],
        ["photos found in a group", str(photos_grouped)],
        ["keeper is the original", f"{right}/{len(scan['groups'])} ({right / max(1, len(scan['groups'])):.1%})"],
        ["originals in the trash list", str(len(originals & trashed))],
        ["files left after one pass (ideal: one per photo)", f"{left} (ideal {len(originals)})"],
        ["copies in no group", str(len(set(folder.files) - grouped))],
        ["scan wall time", f"{elapsed:.0f} s"],
    ]
    table("Keeper and groups (defaults)", ["measure", "value"], rows)
    wrong = [[what, str(n)] for what, n in kept.most_common() if what != "original"]
    table("Groups whose keeper is not the original", ["kept instead", "groups"], wrong or [["(none)", "0"]])
    left_over = Counter(f.split("/", 1)[1].split("/")[0] for f in folder.files if f not in trashed and f not in originals)
    table("Copies left after one pass", ["copy", "files"], [[k, str(v)] for k, v in left_over.most_common()] or [["(none)", "0"]])
    print(f"\nkinds of copy: {', '.join(DERIVED)}, near/NN.jpg")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
