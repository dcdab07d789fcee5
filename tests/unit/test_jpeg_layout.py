"""What a JPEG's structure says before it is decoded: cut short, lying about its size, or a
scan bomb. These are refused without decoding; real encoders' output is not."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from dupdetect.embedding import jpeg_layout
from dupdetect.embedding.decode import DecodeError, decode


def _jpeg(array: np.ndarray, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", **options)
    return buffer.getvalue()


PHOTO = _jpeg(np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8), quality=85)


def _decode(data: bytes) -> object:
    return decode(data, size=64, max_pixels=64_000_000, keypoints=False)


@pytest.mark.parametrize("kept", [0.1, 0.5, 0.99])
def test_a_jpeg_cut_short_is_corrupt_not_a_grey_picture(kept: float) -> None:
    with pytest.raises(DecodeError) as refused:
        _decode(PHOTO[: int(len(PHOTO) * kept)])
    assert refused.value.code == "corrupt_image" and "truncated" in refused.value.message


def test_a_header_with_an_end_marker_and_no_data_is_corrupt() -> None:
    header = PHOTO[: PHOTO.index(b"\xff\xda")]
    with pytest.raises(DecodeError) as refused:
        _decode(header + b"\xff\xd9")
    assert refused.value.code == "corrupt_image"


def test_a_small_jpeg_whose_header_claims_8000_by_8000_is_corrupt() -> None:
    small = bytearray(_jpeg(np.full((16, 16, 3), 200, np.uint8)))
    frame = small.index(b"\xff\xc0")
    small[frame + 5 : frame + 9] = (8000).to_bytes(2) + (8000).to_bytes(2)
    with pytest.raises(DecodeError) as refused:
        _decode(bytes(small))
    assert refused.value.code == "corrupt_image" and "8000×8000" in refused.value.message


def test_a_progressive_jpeg_of_thousands_of_scans_is_refused_before_decoding() -> None:
    progressive = _jpeg(np.random.default_rng(1).integers(0, 255, (256, 256), dtype=np.uint8), progressive=True)
    last_scan = progressive[progressive.rindex(b"\xff\xda") : -2]
    bomb = progressive[:-2] + last_scan * 2000 + b"\xff\xd9"
    with pytest.raises(DecodeError) as refused:
        _decode(bomb)
    assert refused.value.code == "too_many_scans"


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("size", [(1, 1), (7, 13), (401, 600)])
@pytest.mark.parametrize(
    "options", [{}, {"progressive": True}, {"optimize": True}, {"subsampling": 0}, {"restart_marker_blocks": 2}, {"quality": 1}]
)
def test_what_encoders_write_passes_even_with_the_least_data_a_picture_can_have(
    mode: str, size: tuple[int, int], options: dict[str, object]
) -> None:
    flat = np.full(size + ((3,) if mode == "RGB" else ()), 128, np.uint8)  # flat: the fewest bytes per block
    data = _jpeg(flat, **options)
    layout = jpeg_layout.read_layout(data)
    assert layout.complete and layout.entropy_bytes >= layout.least_entropy_bytes
    assert layout.scans <= jpeg_layout.MAX_SCANS
    _decode(data)


def test_whatever_follows_the_end_marker_is_not_read() -> None:
    layout = jpeg_layout.read_layout(PHOTO + b"\xff\xd8 a camera's second picture")
    assert layout.complete and (layout.width, layout.height) == (320, 240)


@pytest.mark.parametrize("head", [b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"II*\x00", b"RIFF\0\0\0\0WEBP", b"\xff\xd8\xff"])
def test_errors_name_the_problem_not_python_objects(head: bytes) -> None:
    with pytest.raises(DecodeError) as refused:
        _decode(head + bytes(range(256)) * 4)
    assert refused.value.code == "corrupt_image"
    assert " at 0x" not in refused.value.message and "<" not in refused.value.message
