"""``dupdetect scan`` beside the tools a user would pick instead, on one folder, in one run:
recall by tier, false pairs, wall time, CPU time per image and peak memory.

    python bench/peers.py [--originals 24] [--rounds 3] [--peers-python /tmp/peers/bin/python]

The folder: ``--originals`` real photos (the shared nature photos, then KDE Plasma's and GNOME's
wallpapers), each with every edit of bench/transforms.py beside it; which copy belongs to which
original is known from the names. A copy is found when a tool puts it in one group with its
original; a false pair is two files of different originals in one group.

Each tool runs as its own process tree, one after another, in ``--rounds`` interleaved rounds
(medians reported):
- ``dupdetect scan --json`` (its throw-away embedded PostgreSQL included), with the offline
  EfficientNet-Lite0 weights (ResNet-50's can't be downloaded here), at the defaults
  (``dupdetect``) and with the model forced onto ONNX Runtime in fp32 (``dupdetect-onnx``, what
  ``auto`` picks on a CPU without bf16);
- fastdup (``create().run()``, its connected components at the defaults);
- imagededup's PHash (``find_duplicates``, distance ≤ 10, its default);
- czkawka's similar-images search (the ``czkawka`` Python bindings, its default similarity).
The peers are not dependencies of this project: install them into a separate venv
(``pip install fastdup imagededup czkawka``) and name its Python with ``--peers-python``; a
tool that does not import there is left out of the table. Immaculate is on no registry this
machine reaches, so it is not here.

CPU time is the whole machine's busy time during the run (/proc/stat), so a database or helper
process that is not a child still counts: run on a quiet machine. Peak memory is the largest sum
of the tree's proportional set sizes (PSS: shared pages divided among their users), sampled
every 0.25 s, PostgreSQL's processes included; the sampling's own CPU time is left out.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.embed import nature_photos, table, wallpapers  # noqa: E402
from bench.transforms import EDITS  # noqa: E402

TOOLS = ("dupdetect", "dupdetect-onnx", "fastdup", "imagededup", "czkawka")
TIERS = ("mild", "moderate", "hard")
SUFFIX = {b"\xff\xd8": "jpg", b"\x89P": "png", b"RI": "webp", b"GI": "gif", b"BM": "bmp", b"II": "tif", b"MM": "tif"}


def build_folder(folder: Path, originals: int) -> dict[str, tuple[int, str]]:
    """Write the originals and their copies; returns file name → (original, tier or "original")."""
    photos = (nature_photos() + wallpapers())[:originals]
    truth: dict[str, tuple[int, str]] = {}
    for index, payload in enumerate(photos):
        photo = Image.open(io.BytesIO(payload)).convert("RGB")
        photo.thumbnail((1600, 1600), Image.Resampling.LANCZOS)  # ~1–2 MP, as a phone library's
        buffer = io.BytesIO()
        photo.save(buffer, "JPEG", quality=92)
        (folder / f"o{index:03d}.jpg").write_bytes(buffer.getvalue())
        truth[f"o{index:03d}.jpg"] = (index, "original")
        photo = Image.open(buffer).convert("RGB")  # copies are made of the file, as people make them
        for number, edit in enumerate(EDITS):
            data = edit.apply(photo)
            name = f"o{index:03d}-e{number:02d}.{SUFFIX.get(data[:2], 'bin')}"
            (folder / name).write_bytes(data)
            truth[name] = (index, edit.difficulty)
    return truth


# --- measuring a run ---


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (user, nice, system, irq, softirq, steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _pss(pid: int) -> int:
    """Proportional set size (/proc/PID/smaps_rollup: one read, cheap beside psutil's full smaps)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_pss(root: psutil.Process, started: float) -> int:
    """PSS of the tree, with PostgreSQL processes started since (a daemonised server is not a child)."""
    try:
        members = {root, *root.children(recursive=True)}
    except psutil.NoSuchProcess:
        return 0
    for process in psutil.process_iter(["name", "create_time"]):
        if process.info["name"] == "postgres" and process.info["create_time"] >= started - 1:
            members.add(process)
    return sum(_pss(p.pid) for p in members)


class PeakMemory:
    """The largest :func:`tree_pss` of a running child, sampled in a thread until :meth:`stop`."""

    def __init__(self, pid: int, started: float, every: float) -> None:
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(psutil.Process(pid), started, every), daemon=True)
        self._thread.start()

    def _sample(self, process: psutil.Process, started: float, every: float) -> None:
        while not self._done.wait(every):
            self.peak = max(self.peak, tree_pss(process, started))

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return self.peak


@dataclass
class Run:
    wall: float
    cpu: float
    peak: int
    groups: list[list[str]]


def measure(command: list[str], out: Path, env: dict[str, str], *, scan_report: bool) -> Run | None:
    """One run; its CPU time leaves out this process's own (the sampling)."""
    started, busy, own = time.time(), _busy_seconds(), time.process_time()
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    memory = PeakMemory(child.pid, started, every=0.25)
    _, stderr = child.communicate()
    wall, cpu = time.time() - started, _busy_seconds() - busy - (time.process_time() - own)
    peak = memory.stop()
    if child.returncode != 0:
        print(f"{command[0]} … failed ({child.returncode}): {stderr.decode(errors='replace')[-600:]}", file=sys.stderr)
        return None
    written = json.loads(out.read_text())
    if scan_report:  # ``dupdetect scan --json``: groups with their members
        written = [[Path(m["file"]).name for m in group["members"]] for group in written["groups"]]
    return Run(wall, cpu, peak, written)


def command_for(tool: str, folder: Path, out: Path, work: Path, peers_python: str) -> list[str]:
    if tool.startswith("dupdetect"):
        return [
            str(Path(sys.executable).with_name("dupdetect")),
            "scan",
            str(folder),
            "--json",
            str(out),
            "--report",
            str(work / "report.html"),
        ]
    return [peers_python, str(Path(__file__).with_name("peer_tools.py")), tool, str(folder), str(out), str(work)]


def available(tool: str, peers_python: str) -> bool:
    if tool.startswith("dupdetect"):
        return True
    probe = subprocess.run([peers_python, "-c", f"import {tool}"], capture_output=True, check=False)
    return probe.returncode == 0


def score(groups: list[list[str]], truth: dict[str, tuple[int, str]]) -> tuple[dict[str, float], int, int]:
    """Recall by tier, false pairs, and pairs in all."""
    group_of = {name: i for i, members in enumerate(groups) for name in members}
    original = {index: name for name, (index, tier) in truth.items() if tier == "original"}
    found: dict[str, list[bool]] = defaultdict(list)
    for name, (index, tier) in truth.items():
        if tier != "original":
            mine, theirs = group_of.get(name), group_of.get(original[index])
            found[tier].append(mine is not None and mine == theirs)
    false_pairs = pairs = 0
    for members in groups:
        origins = [truth[name][0] for name in members if name in truth]
        pairs += len(origins) * (len(origins) - 1) // 2
        counts: dict[int, int] = defaultdict(int)
        for origin in origins:
            counts[origin] += 1
        same = sum(c * (c - 1) // 2 for c in counts.values())
        false_pairs += len(origins) * (len(origins) - 1) // 2 - same
    return {tier: sum(hits) / len(hits) for tier, hits in found.items()}, false_pairs, pairs


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            flags = Path("/proc/cpuinfo").read_text()
            return line.split(":", 1)[1].strip() + (", avx512_bf16" if "avx512_bf16" in flags else ", no bf16")
    return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--originals", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--peers-python", default=sys.executable, help="a Python with fastdup, imagededup and czkawka")
    args = parser.parse_args()

    tools = [t for t in args.tools.split(",") if available(t, args.peers_python)]
    env = {**os.environ, "DUPDETECT_MODEL": "efficientnet_lite0"}

    def ours(tool: str) -> bool:
        return tool.startswith("dupdetect")

    def env_for(tool: str) -> dict[str, str]:
        return {**env, "DUPDETECT_RUNTIME": "onnx" if tool == "dupdetect-onnx" else "auto"}

    runs: dict[str, list[Run]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="dupdetect-peers-") as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        truth = build_folder(folder, args.originals)
        print(f"{len(truth)} files ({args.originals} originals × {len(EDITS)} edits and the originals)", file=sys.stderr)
        warm = Path(tmp) / "warm-up"  # caches filled (model files, ONNX export, page cache) before anything is timed
        warm.mkdir()
        for name in sorted(truth)[:8]:
            (warm / name).write_bytes((folder / name).read_bytes())
        for tool in tools:
            (Path(tmp) / f"{tool}-warm").mkdir()
            out = Path(tmp) / f"{tool}-warm" / "groups.json"
            measure(command_for(tool, warm, out, out.parent, args.peers_python), out, env_for(tool), scan_report=ours(tool))
        for round_ in range(args.rounds):
            for tool in tools:
                work = Path(tmp) / f"{tool}-{round_}"
                work.mkdir()
                out = work / "groups.json"
                run = measure(command_for(tool, folder, out, work, args.peers_python), out, env_for(tool), scan_report=ours(tool))
                if run is None:
                    continue
                runs[tool].append(run)
                print(f"round {round_ + 1} {tool}: {run.wall:.1f} s", file=sys.stderr)

    files = len(truth)
    rows = []
    for tool in tools:
        if not runs[tool]:
            continue
        recall, false_pairs, pairs = score(runs[tool][0].groups, truth)
        cpu = statistics.median(r.cpu for r in runs[tool])
        rows.append(
            [
                tool,
                " / ".join(f"{recall.get(t, 0.0):.2f}" for t in TIERS),
                f"{false_pairs} of {pairs}",
                f"{statistics.median(r.wall for r in runs[tool]):.1f}",
                f"{cpu / files * 1000:.0f}",
                f"{files / cpu:.1f}",
                f"{statistics.median(r.peak for r in runs[tool]) / 2**20:.0f} MB",
            ]
        )
    if not rows:
        sys.exit("no tool ran")
    table(
        f"One folder of {files} files, {os.cpu_count()} cores ({cpu_name()}), medians of {args.rounds} interleaved runs",
        [
            "tool",
            "recall mild / moderate / hard",
            "false pairs",
            "wall s",
            "CPU ms per image",
            "images/s per core",
            "peak memory",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
