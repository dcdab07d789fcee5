"""The descriptor as one loaded model: backbone feature map → GeM (p=3) → L2 norm.

Whole image in (resized to a square, no centre crop: duplicates often differ at the edges),
one unit vector out. ``predict`` is blocking; the batching worker owns the only caller thread.

torch is imported only where it runs (:mod:`dupdetect.embedding.torch_model`): torch and
torchvision take ~500 MB of memory once imported, and a CPU running a cached ONNX graph (the
default on CPUs, except ResNets where native bf16 runs them faster) needs neither.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dupdetect.embedding import weights
from dupdetect.embedding.backbones import BACKBONES
from dupdetect.settings import ModelSettings

if TYPE_CHECKING:
    from dupdetect.embedding import torch_model

log = logging.getLogger(__name__)

HEAD_VERSION = "gem3-v1"


def descriptor_name(model: str, image_size: int) -> str:
    """What ``images.model`` records: vectors with different names are never compared."""
    return f"{model}/{HEAD_VERSION}/{image_size}px"


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX: where bf16 autocast is ~2.5× faster than fp32 instead of slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


GPU_DRIVERS = (Path("/proc/driver/nvidia/version"), Path("/dev/dxg"))
"""What a Linux host shows when a CUDA device can be there: NVIDIA's kernel driver, or WSL2's GPU."""


def cuda_available() -> bool:
    """torch's answer, without importing torch on a Linux host with no GPU driver loaded."""
    if sys.platform == "linux" and not any(path.exists() for path in GPU_DRIVERS):
        return False
    import torch

    return torch.cuda.is_available()


class Embedder:
    """Loads once (behind a lock), then turns batches of pixels into descriptors."""

    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings
        spec = BACKBONES[settings.model]
        self.name = descriptor_name(settings.model, settings.image_size)
        self.dims = spec.dims
        self.image_size = settings.image_size
        cuda = settings.runtime != "onnx" and (settings.device == "cuda" or (settings.device == "auto" and cuda_available()))
        self.device = "cuda" if cuda else "cpu"
        bf16 = settings.precision == "bf16" or (settings.precision == "auto" and spec.bf16_beats_onnx and cpu_has_native_bf16())
        onnx = settings.runtime == "onnx" or (settings.runtime == "auto" and not cuda and not bf16)
        self.precision = "fp32" if onnx else self._choose_precision()
        self.runtime = "onnx" if onnx else "torch"
        self._forward: Callable[[np.ndarray], np.ndarray] | None = None
        self._lock = threading.Lock()

    def _choose_precision(self) -> str:
        if self.settings.precision != "auto":
            return self.settings.precision
        if self.device == "cuda":
            import torch

            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if cpu_has_native_bf16() else "fp32"

    def load(self) -> None:
        """Resolve weights, build, warm up. Raises WeightsError with instructions."""
        with self._lock:
            if self._forward is not None:
                return
            threads = self.settings.threads or os.cpu_count() or 1
            path = weights.locate(self.settings.model, self.settings.weights_file, self.settings.weights_download)
            if self.runtime == "onnx":
                from dupdetect.embedding import onnx_runtime  # here alone: hosts that never run it need not install it

                key = onnx_runtime.cache_key(path, self.name)
                build = functools.partial(self._build, path, threads)
                forward = onnx_runtime.load(build, key=key, image_size=self.image_size, threads=threads)
            else:
                from dupdetect.embedding import torch_model

                forward = functools.partial(torch_model.forward, self._build(path, threads), self.device)
            forward(np.zeros((1, self.image_size, self.image_size, 3), dtype=np.uint8))  # warm-up
            self._forward = forward
            log.info("model %s loaded from %s on %s (%s, %s)", self.name, path, self.device, self.precision, self.runtime)

    def _build(self, path: Path, threads: int) -> torch_model.Descriptor:
        """The torch module, for the torch path or an ONNX export (only then is torch imported)."""
        from dupdetect.embedding import torch_model

        bf16 = self.precision == "bf16"
        return torch_model.build(self.settings.model, path, bf16=bf16, device=self.device, threads=threads)

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (N, S, S, 3) → float32 (N, dims)."""
        if self._forward is None:
            raise RuntimeError("Embedder.load() first")
        return self._forward(pixels)
