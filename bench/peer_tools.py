"""The peers of bench/peers.py, one run each, in a Python that has them (not this project's):

    python bench/peer_tools.py fastdup|imagededup|czkawka FOLDER OUT.json WORK

writes the groups it found as a JSON list of lists of file names. Only the standard library
and the tool itself are imported, so it runs in a venv without dupdetect.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path


def _components(pairs: list[tuple[str, str]]) -> list[list[str]]:
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent.setdefault(name, name) != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for a, b in pairs:
        parent[root(a)] = root(b)
    groups: dict[str, list[str]] = defaultdict(list)
    for name in list(parent):
        groups[root(name)].append(name)
    return [members for members in groups.values() if len(members) > 1]


def run_fastdup(folder: Path, work: Path) -> list[list[str]]:
    import fastdup

    fd = fastdup.create(work_dir=str(work), input_dir=str(folder))
    fd.run(overwrite=True, print_summary=False)
    components, _ = fd.connected_components()
    groups: dict[int, list[str]] = defaultdict(list)
    for row in components.itertuples():
        groups[int(row.component_id)].append(Path(str(row.filename)).name)
    return [members for members in groups.values() if len(members) > 1]


def run_imagededup(folder: Path, work: Path) -> list[list[str]]:
    from imagededup.methods import PHash

    found = PHash(verbose=False).find_duplicates(image_dir=str(folder), max_distance_threshold=10)
    return _components([(a, b) for a, dups in found.items() for b in dups])


def run_czkawka(folder: Path, work: Path) -> list[list[str]]:
    from czkawka import ImageSimilarity

    finder = ImageSimilarity()
    finder.set_directories([folder])
    return [[path.name for path in group] for group in finder.find_similar()]


RUNNERS: dict[str, Callable[[Path, Path], list[list[str]]]] = {
    "fastdup": run_fastdup,
    "imagededup": run_imagededup,
    "czkawka": run_czkawka,
}


if __name__ == "__main__":
    name, folder, out, work = sys.argv[1:]
    Path(out).write_text(json.dumps(RUNNERS[name](Path(folder), Path(work))))
