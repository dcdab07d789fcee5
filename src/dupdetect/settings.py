"""The one place that reads the environment: typed settings from ``DUPDETECT_*`` variables.

Every field of every group below is set by the variable ``DUPDETECT_<FIELD NAME>``; field
names are unique across groups so that the flat variable names stay short. A variable that
is unknown, or whose value does not fit its field, stops start-up with a message naming it.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints

import msgspec
from msgspec import Meta

from dupdetect.errors import OperatorError

PREFIX = "DUPDETECT_"

ModelName = Literal["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "efficientnet_lite0"]
Positive = Annotated[int, Meta(ge=1)]
Port = Annotated[int, Meta(ge=0, le=65535)]
Similarity = Annotated[float, Meta(gt=0.0, le=1.0)]
Seconds = Annotated[float, Meta(gt=0.0)]

MB = 1024 * 1024


def _default_data_dir() -> Path:
    """Per-user data directory (XDG), so a plain ``dupdetect serve`` keeps its data between runs."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "dupdetect"


class SettingsError(OperatorError, ValueError):
    """A setting is unknown or malformed; the message names the variable."""


class ServerSettings(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: Port = 8000
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    auth: Literal["auto", "on", "off"] = "auto"
    """API keys required: ``auto`` means on unless the service listens on loopback only."""
    allowed_hosts: tuple[str, ...] = ()
    """Host header values answered (``*.example.com`` allowed); empty: the loopback names when
    listening on loopback, any otherwise."""
    rate_limit: Annotated[int, Meta(ge=0)] = 1200
    """Requests per minute per API key, counted once the key is verified (per client address
    when auth is off), per process; 0: none."""
    auth_failure_limit: Annotated[int, Meta(ge=0)] = 60
    """Requests with a missing or invalid key per minute per client address; past it, that
    address gets 429 without a key look-up until the minute ends. 0: no limit."""
    metrics_public: bool = False
    """Serve /metrics without a key when auth is on (for scrapers that cannot send one)."""
    shutdown_grace: Seconds = 10.0
    """On SIGTERM, how long requests in flight may run on; those still running then are answered
    503 ``shutting_down``."""

    @property
    def auth_required(self) -> bool:
        if self.auth != "auto":
            return self.auth == "on"
        if self.host == "localhost":
            return False
        try:
            return not ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # a host name: it may resolve to anything
            return True


class DatabaseSettings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str | None = None
    """Any Postgres with pgvector; unset means an embedded server under ``data_dir``."""
    data_dir: Path = msgspec.field(default_factory=_default_data_dir)
    migrate_on_start: bool = True
    migration_lock_timeout: Seconds = 120.0
    """Seconds to wait for another session's migration lock (another instance migrating) before
    start-up or ``dupdetect migrate`` fails, naming the session that holds it."""
    pool_min_size: Annotated[int, Meta(ge=0)] = 1
    pool_max_size: Positive = 10
    query_timeout: Seconds = 10.0
    """Seconds a query may run, and a new connection take to open, before the request gets 503
    ``store_unavailable`` (a frozen or overloaded database); index builds and group rebuilds
    have no such limit."""


class ModelSettings(msgspec.Struct, frozen=True, kw_only=True):
    model: ModelName = "resnet50"
    weights_file: Path | None = None
    """A state dict for ``model``; first in the weights resolution order."""
    weights_download: bool = True
    """Last in the resolution order: fetch torchvision's weights at start-up if not cached."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """``auto`` uses bf16 where the hardware runs it natively (AVX-512 BF16/AMX, CUDA)."""
    runtime: Literal["auto", "torch", "onnx"] = "auto"
    """``auto`` runs fp32 on the CPU through ONNX Runtime (1.15–2.8× faster than fp32 torch, the
    same vectors), except where bf16 autocast outruns it (ResNets on CPUs with native bf16), and
    CUDA through torch."""
    image_size: Annotated[int, Meta(ge=64, le=1024)] = 224
    """Side of the square network input; the whole image is resized to it, no centre crop."""
    batch_size: Annotated[int, Meta(ge=1, le=256)] = 16
    """On CPU, bf16 batches of 8–16 run faster per image than 32 (bench/embed.py); raise it on GPUs."""
    batch_wait_ms: Annotated[float, Meta(ge=0.0)] = 10.0
    queue_size: Positive = 512
    """Images of admitted requests not embedded yet; a request that does not fit is refused at
    once (503 with Retry-After), before any of it is decoded."""
    decode_workers: Annotated[int, Meta(ge=0)] = 0
    """Processes decoding images (decode, resize, pHash, thumbnail) beside the model, each with
    its own GIL; 0 means one per CPU core."""
    thumbnail_size: Annotated[int, Meta(ge=0, le=1024)] = 256
    """Longer side of the JPEG thumbnail kept per image for review (0: keep none)."""
    threads: Annotated[int, Meta(ge=0)] = 0
    """Torch intra-op threads; 0 means one per CPU core."""
    allow_model_change: bool = False
    """Start even if stored vectors come from another model (they are ignored until re-embedded)."""


class LimitSettings(msgspec.Struct, frozen=True, kw_only=True):
    max_image_bytes: Positive = 10 * MB
    max_images_per_request: Positive = 100
    max_request_bytes: Positive = 256 * MB
    max_pixels: Positive = 64_000_000
    """Larger images are refused as decompression bombs."""
    max_decode_bytes: Positive = 256 * MB
    """Memory one image may take to decode: estimated from its header before decoding (the
    raster after JPEG's reduced-size decoding and every copy made of it; a small PNG of many
    RGBA pixels costs seconds and hundreds of MB), and enforced on each decode worker's memory
    (this much above what the worker holds idle, plus 64 MB)."""
    decode_timeout: Seconds = 15.0
    """Wall-clock seconds one image may take to decode; then its worker is killed and replaced,
    and the item gets ``decode_timeout`` (photos take 20–300 ms)."""
    max_json_bytes: Positive = 48 * MB
    """A JSON body is read whole before parsing (base64 is a third larger than the image):
    larger batches go as multipart, which is streamed."""
    header_read_timeout: Annotated[float, Meta(gt=0.0)] = 10.0
    """Seconds a connection may take to send a request's headers (``dupdetect serve``)."""
    body_read_timeout: Annotated[float, Meta(gt=0.0)] = 30.0
    """Seconds a client may pause while sending a body before the request is dropped (408)."""
    min_body_rate: Positive = 8192
    """Bytes per second a body must average once it has taken ``body_read_timeout`` seconds
    (408 otherwise): one byte every few seconds would hold a connection for ever."""
    max_requests_per_client: Positive = 64
    """Requests one client address may have in flight at once (429 beyond): slow clients cannot
    hold every connection."""


class FetchSettings(msgspec.Struct, frozen=True, kw_only=True):
    fetch_connect_timeout: Seconds = 5.0
    fetch_read_timeout: Seconds = 20.0
    fetch_max_redirects: Annotated[int, Meta(ge=0, le=20)] = 3
    fetch_concurrency: Annotated[int, Meta(ge=1, le=32)] = 8
    """URLs of one request fetched at once (of 32 connections shared by all requests, at most 16 of
    them for one collection's requests together)."""
    fetch_allow_networks: tuple[str, ...] = ()
    """CIDR networks that URL fetches may reach although they are private (e.g. ``10.0.0.0/8``)."""


class DuplicateSettings(msgspec.Struct, frozen=True, kw_only=True):
    near_threshold: Similarity = 0.50
    """Descriptor similarity every non-exact pair needs (a request's ``threshold`` replaces
    it). Low, because a geometric check decides (bench/quality.py: rotated and heavily cropped
    copies reach 0.45–0.6, and no false pair passes the check)."""
    near_exact_distance: Annotated[int, Meta(ge=0, le=16)] = 10
    """Largest Hamming distance between 64-bit perceptual hashes that counts as near-exact;
    distances up to 7 are found through the hash index, larger ones among the CNN candidates.
    Chosen by bench/quality.py: mild edits move at most 10 of 64 bits."""
    near_exact_similarity: Similarity = 0.60
    """Descriptor similarity a hash match needs as well: two different pictures can share a
    hash (a logo and wood planks, 10 bits apart at similarity 0.31); mild edits keep ≥ 0.56."""
    trusted_similarity: Similarity = 0.95
    """A hash match within 2 bits at or above this similarity needs no agreeing keypoints (about
    half of all mild edits), only none that show the images differ (screenshots of one app)."""
    geometric_check: bool = True
    """Keep keypoints per image and check candidate pairs geometrically. Off: about 1.6× the
    ingest throughput on two cores, pairs judged on descriptor and hash alone (documents and
    screenshots of one application pair again); see the README's "Detection quality"."""
    unverified_threshold: Similarity = 0.85
    """Similarity a ``near`` pair needs when it cannot be checked geometrically (images stored
    without keypoints: the Pinecone store, rows from before version 0009)."""
    top_k: Annotated[int, Meta(ge=1, le=1000)] = 10
    ef_search: Annotated[int, Meta(ge=1, le=1000)] = 128
    """HNSW's candidate list: at least the shortlist the store ranks by cosine (2 × 64
    neighbours), so one pass of the graph returns it (bench/store.py)."""
    originals_dir: Path | None = None
    """A folder whose files were ingested with ``dupdetect ingest --root`` of it (or scanned from
    it): the review page's side-by-side view then shows them at full size. Only files under it
    whose bytes still match what was stored (SHA-256) are served."""


class StoreSettings(msgspec.Struct, frozen=True, kw_only=True):
    store: Literal["pgvector", "pinecone"] = "pgvector"
    pinecone_api_key: str | None = None
    pinecone_index: str = "dupdetect"
    """Created (serverless, cosine, the model's dimension) if it does not exist."""
    pinecone_host: str | None = None
    """The index's data-plane URL; skips the control-plane lookup (and creation)."""
    pinecone_cloud: str = "aws"
    pinecone_region: str = "us-east-1"
    pinecone_namespace: str = ""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    database: DatabaseSettings = msgspec.field(default_factory=DatabaseSettings)
    model: ModelSettings = msgspec.field(default_factory=ModelSettings)
    limits: LimitSettings = msgspec.field(default_factory=LimitSettings)
    fetch: FetchSettings = msgspec.field(default_factory=FetchSettings)
    duplicates: DuplicateSettings = msgspec.field(default_factory=DuplicateSettings)
    store: StoreSettings = msgspec.field(default_factory=StoreSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        return load_settings(os.environ if environ is None else environ)


def _groups() -> dict[str, type[msgspec.Struct]]:
    return {name: hint for name, hint in get_type_hints(Settings).items()}


def _fields() -> dict[str, tuple[str, str, Any]]:
    """Variable name -> (group, field, type) for every setting."""
    table: dict[str, tuple[str, str, Any]] = {}
    for group, group_type in _groups().items():
        for field, hint in get_type_hints(group_type, include_extras=True).items():
            table[PREFIX + field.upper()] = (group, field, hint)
    return table


def _is_sequence(hint: Any) -> bool:
    return get_origin(hint) is tuple


def _decode_path(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str) and value:
        return Path(value).expanduser()
    raise NotImplementedError


def _parse(variable: str, raw: str, hint: Any) -> Any:
    value: Any = raw
    if _is_sequence(hint):
        value = [part.strip() for part in raw.split(",") if part.strip()]
    elif raw == "" and type(None) in get_args(hint):
        value = None
    try:
        return msgspec.convert(value, hint, strict=False, dec_hook=_decode_path)
    except msgspec.ValidationError as exc:
        reason = str(exc).split(" - at ")[0]
        choices = get_args(hint) if get_origin(hint) is Literal else ()
        if choices:
            reason = f"choose one of {', '.join(map(str, choices))}"
        raise SettingsError(f"{variable}={raw!r} is not valid: {reason}") from None


def _unknown(name: str, known: list[str]) -> str:
    """One line that names the setting meant, when one is close, and where the list is."""
    suffixes = {variable.removeprefix(PREFIX): variable for variable in known}
    close = difflib.get_close_matches(name.removeprefix(PREFIX), list(suffixes), n=1, cutoff=0.75)
    hint = f"did you mean {suffixes[close[0]]}?" if close else "the README's Configuration section lists every setting"
    return f"unknown setting {name}: {hint}"


def load_settings(environ: Mapping[str, str]) -> Settings:
    table = _fields()
    unknown = sorted(name for name in environ if name.startswith(PREFIX) and name not in table)
    if unknown:
        raise SettingsError("; ".join(_unknown(name, sorted(table)) for name in unknown))
    values: dict[str, dict[str, Any]] = {group: {} for group in _groups()}
    for variable, (group, field, hint) in table.items():
        if variable in environ:
            values[group][field] = _parse(variable, environ[variable], hint)
    groups = {name: group_type(**values[name]) for name, group_type in _groups().items()}
    settings = Settings(**groups)  # type: ignore[arg-type]  # each name gets its own group's type (_groups)
    if settings.store.store == "pinecone" and not settings.store.pinecone_api_key:
        raise SettingsError("DUPDETECT_STORE=pinecone needs DUPDETECT_PINECONE_API_KEY")
    if settings.model.queue_size < settings.limits.max_images_per_request:
        raise SettingsError("DUPDETECT_QUEUE_SIZE must be at least DUPDETECT_MAX_IMAGES_PER_REQUEST: a request is admitted whole")
    if settings.model.runtime == "onnx" and (settings.model.precision == "bf16" or settings.model.device == "cuda"):
        raise SettingsError(
            "DUPDETECT_RUNTIME=onnx runs fp32 on the CPU: it takes neither DUPDETECT_PRECISION=bf16 nor DUPDETECT_DEVICE=cuda"
        )
    if settings.database.pool_min_size > settings.database.pool_max_size:
        raise SettingsError("DUPDETECT_POOL_MIN_SIZE must not exceed DUPDETECT_POOL_MAX_SIZE")
    return settings
