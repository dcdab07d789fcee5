"""Bytes → the RGB pixels the model sees, with one typed error for everything that can go wrong.

The format comes from the magic bytes, never from a filename or a declared content type.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from dupdetect.embedding import geometry, jpeg_layout, quality
from dupdetect.embedding.perceptual import phash
from dupdetect.error_codes import Code
from dupdetect.errors import DupdetectError
from dupdetect.settings import MB

try:  # HEIC/HEIF through the pillow-heif plugin; AVIF is built into Pillow >= 11.3
    from pillow_heif import register_heif_opener

    register_heif_opener()
    _HEIF = True
except ImportError:  # pragma: no cover - the plugin is a dependency, but optional in spirit
    _HEIF = False

LIGHT, DARK = (255, 255, 255), (0, 0, 0)
"""Backgrounds for transparent images: white under dark drawings, black under light ones, so
that what is drawn stays visible (a white logo on white would be a blank image)."""
BORDER_TOLERANCE = 24
"""Grey levels a border may vary by and still count as uniform padding."""


class DecodeError(DupdetectError, ValueError):
    """The bytes are not an image we can use; ``code`` is what the API returns."""

    status = 422


@dataclass(frozen=True)
class DecodedImage:
    sha256: str
    """Of the bytes as sent: the exact-duplicate key."""
    byte_size: int
    pixels: np.ndarray
    """uint8, (size, size, 3): the whole image resized to the model input, no crop."""
    phash: int | None
    """64-bit perceptual hash of the content (the near-exact tier); None when the image has
    too little detail for one (flat, gradient, mostly empty)."""
    keypoints: bytes | None
    """Packed local features of the content (geometric verification, :mod:`dupdetect.embedding.geometry`);
    None when not asked for."""
    thumbnail: bytes | None
    """A small JPEG of the whole image, for review pages."""
    format: str
    """Detected from the bytes: JPEG, PNG, WEBP, GIF, BMP, TIFF, HEIF, AVIF."""
    width: int
    height: int
    """Of the original, after EXIF orientation."""
    content_width: int = 0
    content_height: int = 0
    """The picture, in the original's pixels: padding trimmed, a rotation's filled corners left out."""
    detail_scale: float = 1.0
    """Pixels per pixel of real detail (:func:`dupdetect.embedding.quality.upscale`): about 1 at a
    photo's own size."""
    jpeg_quality: int | None = None
    artefacts: tuple[quality.Artefact, ...] = ()
    """Marks of editing (:mod:`dupdetect.embedding.quality`): the keeper rule prefers copies without."""
    taken_at: datetime | None = None
    """EXIF DateTimeOriginal: the camera's local time, no time zone."""
    camera_make: str | None = None
    camera_model: str | None = None


def sniff_format(data: bytes) -> str | None:
    """The container format from the first bytes, or None if it is not one we read."""
    head = data[:32]
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:2] == b"BM":
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"):
            return "HEIF" if _HEIF else None
    return None


SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF") + (("HEIF",) if _HEIF else ())

_ORIENTATION_SWAPS = {5, 6, 7, 8}


def _flatten(image: Image.Image) -> tuple[Image.Image, tuple[int, int, int, int] | None]:
    """RGB pixels, and for a transparent image the box of what is drawn (None: nothing is).
    Pasted onto the background in place: no float or RGBA copies of a large image."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        alpha = rgba.getchannel("A")
        drawn = alpha.point(lambda a: 255 if a > 8 else 0).getbbox()
        small = rgba.reduce(max(1, max(rgba.size) // 256))  # the drawing's lightness, from ~256 px
        grey = np.asarray(small.convert("L"), dtype=np.float32)
        weights = np.asarray(small.getchannel("A"), dtype=np.float32)
        lightness = float((grey * weights).sum() / max(weights.sum(), 1.0))
        flat = Image.new("RGB", rgba.size, DARK if lightness > 160 else LIGHT)
        flat.paste(rgba, mask=alpha)
        return flat, drawn or (0, 0, *rgba.size)
    return image.convert("RGB"), None


def _content(rgb: Image.Image, drawn: tuple[int, int, int, int] | None) -> Image.Image:
    """What is drawn: a transparent image's drawing, or the picture inside uniform padding
    (letterbox, pillarbox, a photo pasted on a plain canvas). Copies are compared on this, so
    padding added or removed changes nothing."""
    if drawn is not None:
        return rgb.crop(drawn)
    small = rgb.reduce(max(1, max(rgb.size) // 128))  # box-averaged, ~128 px: borders survive
    pixels = np.asarray(small, dtype=np.int16)
    corners = np.stack([pixels[0, 0], pixels[0, -1], pixels[-1, 0], pixels[-1, -1]])
    border = np.median(corners, axis=0)
    differs = np.abs(pixels - border).max(axis=2) > BORDER_TOLERANCE
    rows, cols = np.flatnonzero(differs.any(axis=1)), np.flatnonzero(differs.any(axis=0))
    if len(rows) == 0:
        return rgb
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    h, w = differs.shape
    if (bottom - top) * (right - left) > 0.95 * h * w or (bottom - top) * (right - left) < 0.05 * h * w:
        return rgb  # no padding to speak of, or a speck on a plain canvas: keep the whole image
    sx, sy = rgb.width / w, rgb.height / h
    return rgb.crop((int(left * sx), int(top * sy), round(right * sx), round(bottom * sy)))


def _thumbnail(rgb: Image.Image, side: int) -> bytes | None:
    if side == 0:
        return None
    scale = min(1.0, side / max(rgb.size))  # as Image.thumbnail sizes it, without copying the original first
    small = rgb.resize(
        (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.Resampling.BILINEAR, reducing_gap=2.0
    )
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def _exif_text(value: object) -> str | None:
    """EXIF strings are NUL-padded bytes of any encoding: keep what reads as text."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).replace("\x00", "").strip() if value is not None else ""
    return text[:100] or None


def _camera(exif: Image.Exif) -> dict[str, Any]:
    """When and with what the photo was taken, from EXIF; None for what is missing or garbled."""
    taken = exif.get_ifd(0x8769).get(0x9003) or exif.get(0x0132)  # DateTimeOriginal, else DateTime
    try:
        taken_at = datetime.strptime(str(_exif_text(taken)), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        taken_at = None
    return {"taken_at": taken_at, "camera_make": _exif_text(exif.get(0x010F)), "camera_model": _exif_text(exif.get(0x0110))}


def _draft_box(full: tuple[int, int], size: int, keypoints: bool) -> tuple[int, int]:
    """The smallest box JPEG draft may decode to: the shorter side still covers the model
    input, and the longer one the keypoints' image when there are keypoints to find."""
    scale = min(1.0, max(geometry.SIDE / max(full) if keypoints else 0.0, size / max(1, min(full))))
    return max(1, round(full[0] * scale)), max(1, round(full[1] * scale))


def _transparent(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)


def _decode_cost(image: Image.Image, stored_size: tuple[int, int], layout: jpeg_layout.JpegLayout | None) -> int:
    """Bytes decoding will allocate at its peak, all held at once: the decoded raster, its RGB
    copy, the cropped picture, its grey copy and that one's array; for transparency an RGBA
    copy and the alpha channel; for a progressive JPEG the coefficients of the whole image at
    the stored size (2 bytes each, whatever the reduced decode's size); for a reduced JPEG
    decode the grey image at the stored size that the upscale check reads, and its array."""
    width, height = image.size
    sample = 2 if image.mode.startswith("I;16") else 4 if image.mode in ("I", "F") else 1
    per_pixel = len(image.getbands()) * sample + 3 + 3 + 1 + 1
    if _transparent(image):
        per_pixel += (0 if image.mode == "RGBA" else 4) + 1
    stored = stored_size[0] * stored_size[1]
    coefficients = 2 * stored * layout.components if layout is not None and layout.progressive else 0
    grey = 2 * stored if stored_size != image.size else 0
    return width * height * per_pixel + coefficients + grey


def _jpeg_layout(data: bytes) -> jpeg_layout.JpegLayout:
    """The structure of a JPEG that is worth decoding; DecodeError for one that is not."""
    try:
        layout = jpeg_layout.read_layout(data)
    except jpeg_layout.LayoutError as exc:
        raise DecodeError(Code.CORRUPT_IMAGE, f"the JPEG structure is broken ({exc})") from None
    if layout.scans > jpeg_layout.MAX_SCANS:
        raise DecodeError(
            Code.TOO_MANY_SCANS,
            f"the JPEG has more than {jpeg_layout.MAX_SCANS} scans (each one a pass over the whole image);"
            " re-save it as an ordinary JPEG",
        )
    if not layout.complete:
        raise DecodeError(Code.CORRUPT_IMAGE, "the JPEG data is truncated: it ends before its end-of-image marker")
    if layout.entropy_bytes < layout.least_entropy_bytes:
        raise DecodeError(
            Code.CORRUPT_IMAGE,
            f"the JPEG holds {layout.entropy_bytes:,} bytes of image data, too few for the"
            f" {layout.width}×{layout.height} its header claims (at least {layout.least_entropy_bytes:,}):"
            " it is truncated or its header is wrong",
        )
    return layout


def decode(
    data: bytes,
    *,
    size: int,
    max_pixels: int,
    max_decode_bytes: int | None = None,
    thumbnail: int = 0,
    keypoints: bool = True,
) -> DecodedImage:
    """Decode, orient, flatten and resize to ``size``×``size``; blocking, so call it in a worker.
    ``max_decode_bytes``: refuse images whose decoding would allocate more (see _decode_cost)."""
    if not data:
        raise DecodeError(Code.EMPTY_IMAGE, "the image is empty (0 bytes)")
    kind = sniff_format(data)
    if kind is None:
        raise DecodeError(
            Code.UNSUPPORTED_FORMAT,
            f"not an image format we read (supported: {', '.join(SUPPORTED_FORMATS)})",
        )
    layout = _jpeg_layout(data) if kind == "JPEG" else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise DecodeError(
                    Code.TOO_MANY_PIXELS,
                    f"the image is {width}×{height} = {width * height:,} pixels; the limit is {max_pixels:,}",
                )
            stored_size = image.size
            jpeg_quality = quality.jpeg_quality(image)
            if image.format == "JPEG":
                # Decode at 1/2, 1/4 or 1/8 scale when that still covers the model input and the
                # keypoints' image: most of a large photo's decode time is spent on pixels we
                # would throw away.
                image.draft("RGB", _draft_box(image.size, size, keypoints))
            cost = _decode_cost(image, stored_size, layout)  # after draft: what decoding this image really allocates
            if max_decode_bytes is not None and cost > max_decode_bytes:
                raise DecodeError(
                    Code.TOO_MANY_PIXELS,
                    f"decoding this {width}×{height} {image.mode} image needs {cost / MB:,.0f} MB;"
                    f" the limit is {max_decode_bytes / MB:,.0f} MB (DUPDETECT_MAX_DECODE_BYTES)",
                )
            exif = image.getexif()  # after the cost check: for a PNG this decodes the image
            camera = _camera(exif)
            if exif.get(0x0112, 1) in _ORIENTATION_SWAPS:
                width, height = height, width
            image.load()
            stored_grey = None
            if image.size != stored_size:  # reduced: an upscale shows only at the stored size
                stored_grey = Image.open(io.BytesIO(data))
                stored_grey.draft("L", stored_size)
                stored_grey.load()
            ImageOps.exif_transpose(image, in_place=True)
            rgb, drawn = _flatten(image)
    except DecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise DecodeError(Code.TOO_MANY_PIXELS, str(exc)) from exc
    except MemoryError as exc:
        raise DecodeError(Code.TOO_MANY_PIXELS, "the image needs more memory than is available") from exc
    except Exception as exc:  # the decoders' own texts name Python objects and C functions: not for users
        raise DecodeError(Code.CORRUPT_IMAGE, f"the {kind} data is truncated or corrupt") from exc
    content = _content(rgb, drawn)
    resized = content.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    grey = content.convert("L")  # once, for the hash and the keypoints
    scale = width / rgb.width  # the draft's reduction, if any
    from_camera = bool(camera.get("camera_make") or camera.get("camera_model"))
    held = quality.assess(kind, rgb, content, grey=grey if stored_grey is None else stored_grey, from_camera=from_camera)
    return DecodedImage(
        sha256=hashlib.sha256(data).hexdigest(),
        byte_size=len(data),
        pixels=np.asarray(resized),
        phash=phash(grey),
        keypoints=geometry.extract(grey) if keypoints else None,
        thumbnail=_thumbnail(rgb, thumbnail),
        format=kind,
        width=width,
        height=height,
        content_width=min(width, round(held.width * scale)),
        content_height=min(height, round(held.height * scale)),
        jpeg_quality=jpeg_quality,
        detail_scale=held.upscale,
        artefacts=tuple(held.artefacts),
        **camera,
    )
