"""The descriptor as one loaded model: backbone feature map → GeM (p=3) → L2 norm.

Whole image in (resized to a square, no centre crop: duplicates often differ at the edges),
one unit vector out. ``predict`` is blocking; the batching worker owns the only caller thread.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from dupdetect.embedding import weights
from dupdetect.embedding.backbones import BACKBONES
from dupdetect.settings import ModelSettings

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


class GeM(nn.Module):
    """Generalised-mean pooling: between average (p=1) and max pooling, better for retrieval."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = p
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)


class Descriptor(nn.Module):
    def __init__(self, trunk: nn.Module, mean: tuple[float, ...], std: tuple[float, ...], bf16: bool) -> None:
        super().__init__()
        self.trunk = trunk
        self.pool = GeM()
        self.bf16 = bf16
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255.0)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) → float32 (N, D), unit length."""
        x = pixels.permute(0, 3, 1, 2).float()
        x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            features = self.trunk(x)
        return F.normalize(self.pool(features.float()), dim=1)


def fold_batch_norms(trunk: nn.Module, *, depthwise: bool) -> nn.Module:
    """The trunk with each inference-mode BatchNorm folded into the convolution that feeds it:
    the same function with one pass less per layer (EfficientNet-Lite0 on two cores: 1.5× the
    images/s in fp32, 1.7× under bf16). ``depthwise=False`` leaves depthwise convolutions as they
    are: a BatchNorm scale folded into their few taps costs bf16 precision (bf16 vs fp32 cosine
    0.9987 instead of 0.9991 on real photos)."""
    graph = fx.symbolic_trace(trunk)
    modules = dict(graph.named_modules())
    for node in list(graph.graph.nodes):
        conv_node = node.args[0] if node.args else None
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm2d):
            continue
        if not isinstance(conv_node, fx.Node) or conv_node.op != "call_module" or len(conv_node.users) > 1:
            continue
        conv = modules[str(conv_node.target)]
        if not isinstance(conv, nn.Conv2d) or (conv.groups > 1 and not depthwise):
            continue
        parent, _, name = str(conv_node.target).rpartition(".")
        setattr(graph.get_submodule(parent), name, fuse_conv_bn_eval(conv, modules[node.target]))
        node.replace_all_uses_with(conv_node)
        graph.graph.erase_node(node)
    graph.delete_all_unused_submodules()
    graph.recompile()
    return graph


class Embedder:
    """Loads once (behind a lock), then turns batches of pixels into descriptors."""

    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings
        spec = BACKBONES[settings.model]
        self.name = descriptor_name(settings.model, settings.image_size)
        self.dims = spec.dims
        self.image_size = settings.image_size
        onnx = settings.runtime == "onnx"
        self.device = torch.device(
            "cuda"
            if not onnx and (settings.device == "cuda" or (settings.device == "auto" and torch.cuda.is_available()))
            else "cpu"
        )
        self.precision = "fp32" if onnx else self._choose_precision()
        cpu_fp32 = self.device.type == "cpu" and self.precision == "fp32"
        self.runtime = "onnx" if onnx or (settings.runtime == "auto" and cpu_fp32) else "torch"
        self._forward: Callable[[np.ndarray], np.ndarray] | None = None
        self._lock = threading.Lock()

    def _choose_precision(self) -> str:
        if self.settings.precision != "auto":
            return self.settings.precision
        if self.device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if cpu_has_native_bf16() else "fp32"

    def load(self) -> None:
        """Resolve weights, build, warm up. Raises WeightsError with instructions."""
        with self._lock:
            if self._forward is not None:
                return
            threads = self.settings.threads or os.cpu_count() or 1
            if self.device.type == "cpu":
                torch.set_num_threads(threads)
            path = weights.locate(self.settings.model, self.settings.weights_file, self.settings.weights_download)
            build = functools.partial(self._build, path)
            if self.runtime == "onnx":
                from dupdetect.embedding import onnx_runtime  # here alone: hosts that never run it need not install it

                key = onnx_runtime.cache_key(path, self.name)
                forward = onnx_runtime.load(build, key=key, image_size=self.image_size, threads=threads)
            else:
                forward = functools.partial(_torch_forward, build(), self.device)
            forward(np.zeros((1, self.image_size, self.image_size, 3), dtype=np.uint8))  # warm-up
            self._forward = forward
            log.info("model %s loaded from %s on %s (%s, %s)", self.name, path, self.device, self.precision, self.runtime)

    def _build(self, path: Path) -> Descriptor:
        spec = BACKBONES[self.settings.model]
        trunk = spec.build()
        try:
            trunk.load_state_dict(weights.load_state_dict(path, self.settings.model))
        except RuntimeError as exc:
            raise weights.WeightsError(f"{path} does not fit {self.settings.model}: {exc}") from exc
        bf16 = self.precision == "bf16"
        module = Descriptor(fold_batch_norms(trunk.eval(), depthwise=not bf16), spec.mean, spec.std, bf16=bf16)
        return module.eval().to(self.device, memory_format=torch.channels_last)  # type: ignore[call-overload,no-any-return]  # torch's stubs omit memory_format

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (N, S, S, 3) → float32 (N, dims)."""
        if self._forward is None:
            raise RuntimeError("Embedder.load() first")
        return self._forward(pixels)


def _torch_forward(module: Descriptor, device: torch.device, pixels: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        batch = torch.from_numpy(pixels).to(device, non_blocking=True)
        vectors: np.ndarray = module(batch).cpu().numpy()
        return vectors
