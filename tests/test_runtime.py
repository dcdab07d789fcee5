"""Start-up guards that protect stored data: descriptor versioning and missing weights."""

from pathlib import Path

import msgspec
import pytest

from dupdetect.folders.files import images_by_sha256
from dupdetect.images.body import Item
from dupdetect.runtime import StartupError, running
from dupdetect.settings import ModelSettings, Settings
from tests.photos import jpeg


async def test_start_refuses_vectors_of_another_model_unless_allowed(settings: Settings) -> None:
    async with running(settings) as runtime:
        await runtime.images.ingest([Item(index=0, filename="a.jpg", data=jpeg("coffee"))])
    other = msgspec.structs.replace(settings, model=msgspec.structs.replace(settings.model, image_size=256))
    with pytest.raises(StartupError) as caught:
        async with running(other):
            pass
    message = str(caught.value)
    assert "1 from efficientnet_lite0/gem3-v1/224px" in message
    assert "efficientnet_lite0/gem3-v1/256px" in message
    assert "dupdetect reembed" in message and "DUPDETECT_ALLOW_MODEL_CHANGE=true" in message

    allowed = msgspec.structs.replace(other, model=msgspec.structs.replace(other.model, allow_model_change=True))
    async with running(allowed) as runtime:
        assert runtime.images.descriptor == "efficientnet_lite0/gem3-v1/256px"


async def test_start_refuses_without_weights(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    resnet = msgspec.structs.replace(settings, model=ModelSettings(model="resnet50", weights_download=False))
    with pytest.raises(StartupError, match="no weights for resnet50"):
        async with running(resnet):
            pass


async def test_reembed_brings_stored_images_to_the_new_model(settings: Settings, tmp_path: Path) -> None:
    originals = tmp_path / "originals"
    originals.mkdir()
    (originals / "coffee.jpg").write_bytes(jpeg("coffee"))
    async with running(settings) as runtime:
        for name in ("coffee", "rocket"):  # the rocket's original will be missing
            await runtime.images.ingest([Item(index=0, filename=f"{name}.jpg", data=jpeg(name))])
    new = msgspec.structs.replace(
        settings, model=msgspec.structs.replace(settings.model, image_size=256, allow_model_change=True)
    )
    async with running(new) as runtime:
        report = await runtime.images.reembed(images_by_sha256(originals), fetch_urls=False, delete_missing=False)
        assert report.reembedded == 1
        assert [line.split(" ", 1)[1] for line in report.missing] == ["(rocket.jpg)"]
        report = await runtime.images.reembed(images_by_sha256(originals), fetch_urls=False, delete_missing=True)
        assert (report.reembedded, report.deleted) == (0, 1)
    strict = msgspec.structs.replace(new, model=msgspec.structs.replace(new.model, allow_model_change=False))
    async with running(strict) as runtime:  # no stale vectors left: starts without the override
        assert runtime.images.descriptor.endswith("/256px")
