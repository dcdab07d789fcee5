"""The descriptor with real pretrained weights (EfficientNet-Lite0, installed by pip), the
ResNet path with a weights file the test writes, the resolution order, bf16 and batching."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import models

from dupdetect.embedding import weights
from dupdetect.embedding.backbones import BACKBONES
from dupdetect.embedding.decode import decode
from dupdetect.embedding.model import Embedder, cpu_has_native_bf16
from dupdetect.embedding.torch_model import fold_batch_norms
from dupdetect.embedding.weights import WeightsError
from dupdetect.embedding.worker import EmbeddingWorker, Overloaded
from dupdetect.settings import ModelSettings
from tests.photos import PHOTOS, edited_copy, jpeg

SIZE = 224


def pixels(*payloads: bytes) -> np.ndarray:
    return np.stack([decode(p, size=SIZE, max_pixels=10**8).pixels for p in payloads])


@pytest.fixture(scope="module")
def lite0() -> Embedder:
    embedder = Embedder(ModelSettings(model="efficientnet_lite0", precision="fp32"))
    embedder.load()
    return embedder


@pytest.fixture
def resnet18_file(tmp_path: Path) -> Path:
    """A state dict in torchvision's layout (random values: only loading is under test)."""
    torch.manual_seed(0)
    path = tmp_path / "resnet18-test.pth"
    torch.save(models.resnet18().state_dict(), path)
    return path


@pytest.fixture
def empty_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def test_copies_score_far_higher_than_different_photos(lite0: Embedder) -> None:
    originals = lite0.predict(pixels(*(jpeg(name) for name in PHOTOS)))
    copies = lite0.predict(pixels(*(edited_copy(name) for name in PHOTOS)))
    same = (originals * copies).sum(axis=1)
    cross = originals @ originals.T
    different = cross[~np.eye(len(PHOTOS), dtype=bool)]
    assert same.min() > 0.9, same
    assert different.max() < 0.75, different.max()
    assert same.min() - different.max() > 0.2


def test_vectors_are_unit_length_and_deterministic(lite0: Embedder) -> None:
    batch = pixels(jpeg("coffee"), jpeg("rocket"))
    first, second = lite0.predict(batch), lite0.predict(batch)
    assert first.shape == (2, 1280) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("model", ["efficientnet_lite0", "resnet50"])
@pytest.mark.parametrize("depthwise", [True, False])
def test_folding_batch_norms_keeps_the_descriptor(model: str, depthwise: bool) -> None:
    """Vectors stored before the folding stay comparable: the folded trunk computes the same
    features (the unfolded one is the reference), with no BatchNorm left to run."""
    torch.manual_seed(0)
    trunk = BACKBONES[model].build().eval()
    for module in trunk.modules():  # trained-looking statistics, not the identity of a fresh layer
        if isinstance(module, torch.nn.BatchNorm2d):
            assert module.running_mean is not None and module.running_var is not None
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.05, 2.0)
    batch = torch.from_numpy(pixels(jpeg("coffee"), jpeg("chelsea"))).permute(0, 3, 1, 2).float() / 255
    folded = fold_batch_norms(trunk, depthwise=depthwise)
    with torch.inference_mode():
        expected, got = trunk(batch), folded(batch)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    left = [m for m in folded.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert left == [] if depthwise or model == "resnet50" else len(left) == 16  # Lite0's depthwise layers


def test_bf16_agrees_with_fp32_on_real_photos(lite0: Embedder) -> None:
    bf16 = Embedder(ModelSettings(model="efficientnet_lite0", precision="bf16"))
    bf16.load()
    batch = pixels(*(jpeg(name) for name in PHOTOS))
    agreement = (lite0.predict(batch) * bf16.predict(batch)).sum(axis=1)
    assert agreement.min() >= 0.999, agreement


def test_onnx_runtime_gives_torchs_vectors_on_real_photos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    reference = Embedder(ModelSettings(model="efficientnet_lite0", precision="fp32", runtime="torch"))
    onnx = Embedder(ModelSettings(model="efficientnet_lite0", runtime="onnx"))
    reference.load()
    onnx.load()
    assert (reference.runtime, onnx.runtime, onnx.precision) == ("torch", "onnx", "fp32")
    for batch in (pixels(*(jpeg(name) for name in PHOTOS)), pixels(jpeg("coffee"))):  # any batch size
        agreement = (reference.predict(batch) * onnx.predict(batch)).sum(axis=1)
        assert agreement.min() >= 0.9999, agreement


def test_the_onnx_export_is_cached_and_a_damaged_cache_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    settings = ModelSettings(model="efficientnet_lite0", runtime="onnx")
    first = Embedder(settings)
    first.load()
    [graph] = (tmp_path / "dupdetect" / "onnx").glob("*.onnx")
    exported = graph.stat().st_mtime_ns
    expected = first.predict(pixels(jpeg("chelsea")))
    second = Embedder(settings)
    second.load()
    assert graph.stat().st_mtime_ns == exported  # read back, not exported again
    np.testing.assert_array_equal(second.predict(pixels(jpeg("chelsea"))), expected)
    graph.write_bytes(b"not a graph")
    third = Embedder(settings)
    third.load()  # starts anyway, and repairs the cache
    np.testing.assert_allclose(third.predict(pixels(jpeg("chelsea"))), expected, atol=1e-6)
    assert graph.stat().st_size > 1_000_000


_WITHOUT_TORCH = """
import sys
import numpy as np
import dupdetect.app, dupdetect.cli, dupdetect.folders.scan, dupdetect.embedding.pipeline
from dupdetect.embedding.model import Embedder
from dupdetect.settings import ModelSettings
embedder = Embedder(ModelSettings(model="efficientnet_lite0", runtime="onnx"))
embedder.load()
print(embedder.predict(np.zeros((1, 224, 224, 3), np.uint8)).shape[1])
print(sorted(name for name in sys.modules if name.split(".")[0] in ("torch", "torchvision")))
"""


def test_a_start_on_the_cached_onnx_graph_never_imports_torch(tmp_path: Path) -> None:
    """torch and torchvision take ~500 MB once imported: the service, the CLI and a scan on the
    cached graph (fp32 CPUs) leave them out."""
    environment = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    run = [sys.executable, "-c", _WITHOUT_TORCH]
    first = subprocess.run(run, env=environment, capture_output=True, text=True, check=True, timeout=300)
    assert first.stdout.split("\n")[0] == "1280" and "'torch'" in first.stdout  # the export needs torch
    again = subprocess.run(run, env=environment, capture_output=True, text=True, check=True, timeout=300)
    assert again.stdout.split("\n")[:2] == ["1280", "[]"], again.stdout


def test_weights_are_looked_for_where_torch_hub_keeps_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for model in weights.TORCHVISION_MODELS:
        assert weights.torchvision_url(model) == models.get_model_weights(model).IMAGENET1K_V1.url
    monkeypatch.delenv("TORCH_HOME", raising=False)
    for variable in ("XDG_CACHE_HOME", "TORCH_HOME"):
        monkeypatch.setenv(variable, str(tmp_path / variable))
        assert weights.hub_cache_path("resnet50") == Path(torch.hub.get_dir()) / "checkpoints" / "resnet50-0676ba61.pth"
        assert weights.hub_cache_path("resnet50").is_relative_to(tmp_path / variable)


def test_the_cpu_runs_on_onnx_runtime_unless_bf16_runs_faster_or_is_asked_for() -> None:
    lite0 = Embedder(ModelSettings(model="efficientnet_lite0", device="cpu"))  # with native bf16 or without
    assert (lite0.runtime, lite0.precision) == ("onnx", "fp32")
    resnet = Embedder(ModelSettings(model="resnet50", device="cpu"))
    assert (resnet.runtime, resnet.precision) == (("torch", "bf16") if cpu_has_native_bf16() else ("onnx", "fp32"))
    assert Embedder(ModelSettings(model="efficientnet_lite0", device="cpu", precision="fp32")).runtime == "onnx"
    assert Embedder(ModelSettings(model="efficientnet_lite0", device="cpu", precision="bf16")).runtime == "torch"
    forced = Embedder(ModelSettings(model="efficientnet_lite0", device="cpu", precision="fp32", runtime="torch"))
    assert forced.runtime == "torch"


def test_resnet_loads_from_a_weights_file(resnet18_file: Path, empty_torch_home: Path) -> None:
    embedder = Embedder(ModelSettings(model="resnet18", weights_file=resnet18_file, weights_download=False))
    embedder.load()
    batch = pixels(jpeg("chelsea"), jpeg("coffee"))
    vectors = embedder.predict(batch)
    assert vectors.shape == (2, 512)
    np.testing.assert_array_equal(vectors, embedder.predict(batch))
    assert embedder.name == "resnet18/gem3-v1/224px"


def test_resnet_loads_from_the_torch_hub_cache(resnet18_file: Path, empty_torch_home: Path) -> None:
    cached = weights.hub_cache_path("resnet18")
    assert cached.is_relative_to(empty_torch_home)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(resnet18_file.read_bytes())
    assert weights.locate("resnet18", None, allow_download=False) == cached


def test_a_configured_file_comes_before_the_cache(resnet18_file: Path, empty_torch_home: Path) -> None:
    cached = weights.hub_cache_path("resnet18")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(resnet18_file.read_bytes())
    assert weights.locate("resnet18", resnet18_file, allow_download=False) == resnet18_file


def test_missing_weights_refuse_with_instructions(empty_torch_home: Path) -> None:
    with pytest.raises(WeightsError) as caught:
        Embedder(ModelSettings(model="resnet50", weights_download=False)).load()
    message = str(caught.value)
    assert "no weights for resnet50" in message
    assert "dupdetect weights download --model resnet50" in message
    assert "DUPDETECT_WEIGHTS_FILE" in message and "resnet50-0676ba61.pth" in message
    assert "DUPDETECT_MODEL=efficientnet_lite0" in message


def test_a_missing_configured_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"DUPDETECT_WEIGHTS_FILE=.*nope\.pth does not exist"):
        weights.locate("resnet50", tmp_path / "nope.pth", allow_download=False)


def test_weights_of_another_model_are_refused(resnet18_file: Path) -> None:
    with pytest.raises(WeightsError, match="does not fit resnet50"):
        Embedder(ModelSettings(model="resnet50", weights_file=resnet18_file)).load()


def test_a_file_that_is_not_weights_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "weights.pth"
    bogus.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read weights file"):
        Embedder(ModelSettings(model="resnet18", weights_file=bogus)).load()


async def test_worker_batches_concurrent_requests(lite0: Embedder) -> None:
    worker = EmbeddingWorker(lite0, batch_size=8, batch_wait_ms=50, queue_size=64)
    worker.start()
    try:
        images = pixels(*(jpeg(name) for name in PHOTOS))
        results = await asyncio.gather(*(worker.embed(images[i % len(PHOTOS)]) for i in range(16)))
    finally:
        worker.stop()
    assert worker.images == 16
    assert worker.batches <= 4  # 16 concurrent images, batches of up to 8
    expected = lite0.predict(images)
    for i, vector in enumerate(results):
        assert float(vector @ expected[i % len(PHOTOS)]) > 0.9999


async def test_a_full_queue_refuses_instead_of_piling_up(lite0: Embedder) -> None:
    worker = EmbeddingWorker(lite0, batch_size=8, batch_wait_ms=0, queue_size=1)  # not started: nothing drains
    image = pixels(jpeg("coffee"))[0]
    waiting = asyncio.ensure_future(worker.embed(image))
    await asyncio.sleep(0)
    with pytest.raises(Overloaded, match="1 images are already waiting"):
        await worker.embed(image)
    waiting.cancel()
