"""The descriptor on ONNX Runtime, for CPUs without native bf16.

There torch runs fp32 eager, and ONNX Runtime runs the same graph 1.15–1.5× (ResNet-50) to
2.2–2.8× (EfficientNet-Lite0) faster with the same vectors (cosine ≥ 0.9999 to torch's, checked by
tests/test_embedding.py): fused kernels, no per-layer Python. The graph is exported from the
loaded torch module, so weights, folded BatchNorms and the GeM head are the torch path's.
An export takes ~10 s, so it is kept in ``$XDG_CACHE_HOME/dupdetect/onnx`` under a digest of
the weights file, the descriptor and the torch version; an unreadable cache is re-exported. A
start that finds its graph there never imports torch (~500 MB of memory).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dupdetect" / "onnx"


def cache_key(weights: Path, descriptor: str) -> str:
    """Changes whenever the exported graph could: other weights, head, input size or exporter."""
    exporter = importlib.metadata.version("torch")  # read from its metadata: importing torch costs ~500 MB
    digest = hashlib.sha256(f"{descriptor}|torch {exporter}|".encode())
    with weights.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()[:32]


def export(module: nn.Module, image_size: int) -> bytes:
    """The module as an ONNX graph taking uint8 (N, S, S, 3) for any N."""
    import torch

    example = torch.zeros((2, image_size, image_size, 3), dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1, max=4096)
    # The exporter reports its progress on stdout, which `scan --json` owns, and its passes at INFO.
    for name in ("onnxscript", "onnx_ir"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (example,), dynamo=True, dynamic_shapes=({0: batch},), verbose=False)
    assert program is not None  # dynamo=True always returns the program
    graph: bytes = program.model_proto.SerializeToString()
    return graph


def _session(graph: bytes | str, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Idle threads would otherwise spin for a while after each batch, on the cores the decode
    # workers need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def _cached_session(path: Path, threads: int) -> ort.InferenceSession | None:
    if not path.exists():
        return None
    try:
        return _session(str(path), threads)
    except Exception as exc:  # ONNX Runtime's errors (InvalidProtobuf, Fail…) derive from Exception alone
        log.warning("re-exporting the model: the cached graph %s does not load (%s)", path, exc)
        return None


def _store(path: Path, graph: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as tmp:
            tmp.write(graph)
        os.replace(tmp.name, path)  # concurrent starts each write whole files
    except OSError as exc:
        log.warning("the exported model is not cached (%s): each start exports it again", exc)


def load(build: Callable[[], nn.Module], *, key: str, image_size: int, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """A function from uint8 (N, S, S, 3) to float32 (N, D), read from the cache or exported
    from the module ``build`` makes (only then: a cached graph needs no torch module)."""
    path = cache_dir() / f"{key}.onnx"
    session = _cached_session(path, threads)
    if session is None:
        graph = export(build(), image_size)
        _store(path, graph)
        session = _session(graph, threads)
    name = session.get_inputs()[0].name

    def predict(pixels: np.ndarray) -> np.ndarray:
        vectors: np.ndarray = session.run(None, {name: np.ascontiguousarray(pixels)})[0]
        return vectors

    return predict
