"""The CNN trunks the descriptor can use: their size and input normalisation, without torch
(the modules themselves are in :mod:`dupdetect.embedding.trunks`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    dims: int
    """Channels of the last feature map, i.e. the descriptor size."""
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    bf16_beats_onnx: bool = True
    """On a CPU with native bf16, whether torch under bf16 autocast outruns ONNX Runtime's fp32:
    dense convolutions (ResNets, 1.7× for ResNet-50) gain; depthwise ones (EfficientNet-Lite0)
    do not, and there ONNX Runtime also spares the ~500 MB of importing torch."""

    def build(self) -> nn.Module:
        """A trunk with random weights; the weights module fills them in. Imports torch."""
        from dupdetect.embedding.trunks import TRUNKS

        return TRUNKS[self.name]()


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

BACKBONES: dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec("resnet18", 512, IMAGENET_MEAN, IMAGENET_STD),
    "resnet34": BackboneSpec("resnet34", 512, IMAGENET_MEAN, IMAGENET_STD),
    "resnet50": BackboneSpec("resnet50", 2048, IMAGENET_MEAN, IMAGENET_STD),
    "resnet101": BackboneSpec("resnet101", 2048, IMAGENET_MEAN, IMAGENET_STD),
    "resnet152": BackboneSpec("resnet152", 2048, IMAGENET_MEAN, IMAGENET_STD),
    # TF-Lite models take (x - 127.5) / 127.5.
    "efficientnet_lite0": BackboneSpec("efficientnet_lite0", 1280, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), bf16_beats_onnx=False),
}
