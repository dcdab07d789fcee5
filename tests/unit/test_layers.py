"""Dependencies point one way (docs/ARCHITECTURE.md): each module imports only its own layer and
the layers below it, read from the source, function-level imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import dupdetect

ROOT = Path(dupdetect.__file__).parent

LAYERS: list[tuple[str, ...]] = [
    ("dupdetect", "dupdetect.error_codes", "dupdetect.errors", "dupdetect.settings", "dupdetect.observability"),
    ("dupdetect.database", "dupdetect.migrate", "dupdetect.analysts", "dupdetect.embedding", "dupdetect.store.base"),
    ("dupdetect.store", "dupdetect.keys"),
    # the domain: rules and services, no HTTP
    ("dupdetect.images.rules", "dupdetect.images.body", "dupdetect.images.fetch", "dupdetect.images.originals"),
    ("dupdetect.images.prepare", "dupdetect.images.duplicates", "dupdetect.images.reembed", "dupdetect.images.service"),
    ("dupdetect.review.grouping", "dupdetect.review.keeper", "dupdetect.review.service"),
    ("dupdetect.runtime",),
    # HTTP: the boundary, controllers, their schemas and dependency providers
    ("dupdetect.api", "dupdetect.images", "dupdetect.review", "dupdetect.app"),
    # commands
    ("dupdetect.folders", "dupdetect.cli"),
]


def _layer(module: str) -> int:
    """The layer of the longest prefix that names ``module``."""
    best, found = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), index
    assert found >= 0, f"{module} is in no layer: add it to LAYERS"
    return found


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ours that ``path`` imports (``from package import module`` names the module)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names}
    return {name for name in names if name in modules}


def test_every_module_imports_only_its_layer_and_those_below() -> None:
    modules = _modules()
    upward = []
    for module, path in sorted(modules.items()):
        mine = _layer(module)
        upward += [f"{module} imports {name}" for name in _imports(path, modules) if _layer(name) > mine]
    assert upward == []


def test_the_image_domain_knows_nothing_of_review_and_no_store_or_embedding_knows_a_service() -> None:
    modules = _modules()
    for module, path in modules.items():
        imported = _imports(path, modules)
        if module.startswith(("dupdetect.images.", "dupdetect.store", "dupdetect.embedding")) and _layer(module) < 7:
            assert not any(name.startswith("dupdetect.review") for name in imported), module
        if module.startswith(("dupdetect.store", "dupdetect.embedding")):
            assert not any(name.startswith(("dupdetect.images", "dupdetect.review")) for name in imported), module
