"""A local stand-in for a Pinecone serverless index's data plane, for tests without internet.

Implements the documented REST endpoints the adapter uses (upsert, query with metadata
filter, fetch, list by prefix, delete, describe_index_stats), strict about what the docs
require: the Api-Key header, the index dimension, request limits (1,000 vectors and 2 MB per
upsert, 40 KB of metadata per vector, 512-character ids, 100 ids per list page, top_k up to
10,000), metadata value types (no nulls) and non-zero query vectors for cosine. Writes become
visible after ``lag`` seconds, like Pinecone's eventual consistency; ``down_with`` answers
every request with an error status, as an outage or a rate limit would.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web

MAX_UPSERT_VECTORS = 1000
MAX_UPSERT_BYTES = 2 * 1024 * 1024
MAX_METADATA_BYTES = 40 * 1024
MAX_ID_LENGTH = 512
MAX_TOP_K = 10_000
MAX_LIST_LIMIT = 100


@dataclass
class Record:
    values: np.ndarray
    metadata: dict[str, Any]
    visible_at: float


@dataclass
class FakeIndex:
    dimension: int
    api_key: str = "test-key"
    lag: float = 0.2
    namespaces: dict[str, dict[str, Record]] = field(default_factory=dict)
    tombstones: dict[str, dict[str, float]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    down_with: int | None = None
    """While set, every request is answered with this status (an outage, a rate limit)."""

    def visible(self, namespace: str) -> dict[str, Record]:
        now = time.monotonic()
        gone = self.tombstones.get(namespace, {})
        return {
            vid: rec
            for vid, rec in self.namespaces.get(namespace, {}).items()
            if rec.visible_at <= now and not (vid in gone and gone[vid] <= now)
        }

    def count(self) -> int:
        return sum(len(self.visible(ns)) for ns in self.namespaces)


class BadRequest(web.HTTPBadRequest):
    def __init__(self, message: str) -> None:
        super().__init__(text=json.dumps({"code": 3, "message": message}), content_type="application/json")


def _check_metadata(vid: str, metadata: Any) -> None:
    if not isinstance(metadata, dict):
        raise BadRequest(f"metadata of {vid} must be an object")
    for key, value in metadata.items():
        ok = isinstance(value, (str, bool, int, float)) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        if not ok:
            raise BadRequest(f"metadata field {key!r} of {vid} has an unsupported type (null, object or mixed list)")
    if len(json.dumps(metadata).encode()) > MAX_METADATA_BYTES:
        raise BadRequest(f"metadata of {vid} exceeds {MAX_METADATA_BYTES} bytes")


def _match(metadata: dict[str, Any], flt: dict[str, Any]) -> bool:
    for key, cond in flt.items():
        if key == "$and":
            if not all(_match(metadata, sub) for sub in cond):
                return False
            continue
        if key == "$or":
            if not any(_match(metadata, sub) for sub in cond):
                return False
            continue
        if not isinstance(cond, dict):
            cond = {"$eq": cond}
        value = metadata.get(key)
        values = value if isinstance(value, list) else [value]  # list fields match on any element
        for op, operand in cond.items():
            if op == "$eq" and operand not in values:
                return False
            if op == "$ne" and operand in values:
                return False
            if op == "$in" and not set(values) & set(operand):
                return False
            if op == "$nin" and set(values) & set(operand):
                return False
            if op not in ("$eq", "$ne", "$in", "$nin"):
                raise BadRequest(f"unsupported filter operator {op}")
    return True


def _vector(index: FakeIndex, values: Any, what: str) -> np.ndarray:
    if not isinstance(values, list) or len(values) != index.dimension:
        got = len(values) if isinstance(values, list) else type(values).__name__
        raise BadRequest(f"{what} dimension {got} does not match the dimension of the index {index.dimension}")
    return np.asarray(values, dtype=np.float32)


def make_app(index: FakeIndex) -> web.Application:
    @web.middleware
    async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
        index.requests.append(f"{request.method} {request.path}")
        if index.down_with is not None:
            return web.json_response({"code": 14, "message": "unavailable"}, status=index.down_with)
        if request.headers.get("Api-Key") != index.api_key:
            raise web.HTTPUnauthorized(text=json.dumps({"code": 16, "message": "Invalid API key"}))
        return await handler(request)

    async def upsert(request: web.Request) -> web.Response:
        raw = await request.read()
        if len(raw) > MAX_UPSERT_BYTES:
            raise BadRequest(f"request size {len(raw)} exceeds the {MAX_UPSERT_BYTES}-byte limit")
        body = json.loads(raw)
        vectors = body.get("vectors")
        if not isinstance(vectors, list) or not vectors:
            raise BadRequest("vectors must be a non-empty list")
        if len(vectors) > MAX_UPSERT_VECTORS:
            raise BadRequest(f"at most {MAX_UPSERT_VECTORS} vectors per upsert")
        store = index.namespaces.setdefault(body.get("namespace", ""), {})
        for item in vectors:
            vid = item.get("id")
            if not isinstance(vid, str) or not 0 < len(vid) <= MAX_ID_LENGTH:
                raise BadRequest(f"vector id must be 1-{MAX_ID_LENGTH} characters")
            values = _vector(index, item.get("values"), "Vector")
            metadata = item.get("metadata", {})
            _check_metadata(vid, metadata)
            store[vid] = Record(values, metadata, time.monotonic() + index.lag)
            index.tombstones.get(body.get("namespace", ""), {}).pop(vid, None)
        return web.json_response({"upsertedCount": len(vectors)})

    async def query(request: web.Request) -> web.Response:
        body = await request.json()
        top_k = body.get("topK")
        if not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise BadRequest(f"topK must be between 1 and {MAX_TOP_K}")
        if ("vector" in body) == ("id" in body):
            raise BadRequest("exactly one of vector or id is required")
        records = index.visible(body.get("namespace", ""))
        vector = _vector(index, body["vector"], "Query vector") if "vector" in body else records[body["id"]].values
        norm = float(np.linalg.norm(vector))
        if norm == 0:
            raise BadRequest("Dense vectors must contain at least one non-zero value for the cosine metric")
        flt = body.get("filter") or {}
        scored = [
            (float(rec.values @ vector / (np.linalg.norm(rec.values) * norm)), vid, rec)
            for vid, rec in records.items()
            if _match(rec.metadata, flt)
        ]
        scored.sort(key=lambda item: -item[0])
        matches = []
        for score, vid, rec in scored[:top_k]:
            match: dict[str, Any] = {"id": vid, "score": score}
            if body.get("includeMetadata"):
                match["metadata"] = rec.metadata
            if body.get("includeValues"):
                match["values"] = rec.values.tolist()
            matches.append(match)
        return web.json_response({"matches": matches, "namespace": body.get("namespace", ""), "usage": {"readUnits": 1}})

    async def fetch(request: web.Request) -> web.Response:
        ids = request.query.getall("ids", [])
        if not ids:
            raise BadRequest("ids are required")
        namespace = request.query.get("namespace", "")
        records = index.visible(namespace)
        vectors = {
            vid: {"id": vid, "values": records[vid].values.tolist(), "metadata": records[vid].metadata}
            for vid in ids
            if vid in records
        }
        return web.json_response({"vectors": vectors, "namespace": namespace, "usage": {"readUnits": 1}})

    async def list_ids(request: web.Request) -> web.Response:
        limit = int(request.query.get("limit", MAX_LIST_LIMIT))
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise BadRequest(f"limit must be between 1 and {MAX_LIST_LIMIT}")
        namespace = request.query.get("namespace", "")
        prefix = request.query.get("prefix", "")
        ids = sorted(vid for vid in index.visible(namespace) if vid.startswith(prefix))
        start = int(request.query.get("paginationToken", "0"))
        page = ids[start : start + limit]
        response: dict[str, Any] = {"vectors": [{"id": vid} for vid in page], "namespace": namespace}
        if start + limit < len(ids):
            response["pagination"] = {"next": str(start + limit)}
        return web.json_response(response)

    async def delete(request: web.Request) -> web.Response:
        body = await request.json()
        namespace = body.get("namespace", "")
        if body.get("deleteAll"):
            targets = list(index.namespaces.get(namespace, {}))
        elif "ids" in body:
            if len(body["ids"]) > 1000:
                raise BadRequest("at most 1000 ids per delete")
            targets = body["ids"]
        elif body.get("filter"):
            targets = [vid for vid, rec in index.visible(namespace).items() if _match(rec.metadata, body["filter"])]
        else:
            raise BadRequest("one of ids, deleteAll or filter is required")
        gone = index.tombstones.setdefault(namespace, {})
        for vid in targets:
            gone[vid] = time.monotonic() + index.lag
        return web.json_response({})

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "namespaces": {ns: {"vectorCount": len(index.visible(ns))} for ns in index.namespaces},
                "dimension": index.dimension,
                "indexFullness": 0.0,
                "totalVectorCount": index.count(),
                "metric": "cosine",
                "vectorType": "dense",
            }
        )

    app = web.Application(middlewares=[auth], client_max_size=MAX_UPSERT_BYTES * 2)
    app.router.add_post("/vectors/upsert", upsert)
    app.router.add_post("/query", query)
    app.router.add_get("/vectors/fetch", fetch)
    app.router.add_get("/vectors/list", list_ids)
    app.router.add_post("/vectors/delete", delete)
    app.router.add_post("/describe_index_stats", stats)
    return app
