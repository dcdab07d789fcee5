"""API docs that work on a network without internet: /schema is rendered here, as plain
HTML with no script or CDN asset; /schema/openapi.json is the machine-readable document."""

from __future__ import annotations

from html import escape
from typing import Any

from litestar import Request
from litestar.openapi.plugins import OpenAPIRenderPlugin

_STYLE = (
    "body{font:15px/1.5 system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#1a202c}"
    "h2{margin-top:2em;border-bottom:1px solid #ddd}code{background:#f1f3f7;padding:1px 4px;border-radius:3px}"
    ".op{margin:1.2em 0;padding:.6em 1em;border-left:4px solid #3867d6;background:#fafbfd}"
    ".method{font-weight:700;text-transform:uppercase;margin-right:.5em}td,th{padding:2px 10px 2px 0;text-align:left}"
)


def _parameters(operation: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}</td>"
        f"<td>{'required' if p.get('required') else ''}</td><td>{escape(p.get('description', ''))}</td></tr>"
        for p in operation.get("parameters", [])
    )
    return f"<table><tr><th>parameter</th><th>in</th><th></th><th></th></tr>{rows}</table>" if rows else ""


def _operation(path: str, method: str, operation: dict[str, Any]) -> str:
    body = operation.get("requestBody", {}).get("content", {})
    responses = "".join(
        f"<li><code>{escape(status)}</code> {escape(answer.get('description', ''))}</li>"
        for status, answer in operation.get("responses", {}).items()
    )
    return (
        f"<div class=op><p><span class=method>{escape(method)}</span><code>{escape(path)}</code> — "
        f"{escape(operation.get('summary', ''))}</p>"
        f"<p>{escape(operation.get('description', ''))}</p>{_parameters(operation)}"
        + (f"<p>Body: {', '.join(f'<code>{escape(kind)}</code>' for kind in body)}</p>" if body else "")
        + f"<ul>{responses}</ul></div>"
    )


class OfflineDocs(OpenAPIRenderPlugin):
    def __init__(self) -> None:
        super().__init__(path="/")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        info = openapi_schema.get("info", {})
        by_tag: dict[str, list[str]] = {}
        for path, methods in openapi_schema.get("paths", {}).items():
            for method, operation in methods.items():
                if isinstance(operation, dict) and "responses" in operation:
                    tag = (operation.get("tags") or ["other"])[0]
                    by_tag.setdefault(tag, []).append(_operation(path, method, operation))
        sections = "".join(f"<h2>{escape(tag)}</h2>{''.join(ops)}" for tag, ops in by_tag.items())
        return (
            f"<!doctype html><html><head><meta charset=utf-8><title>{escape(info.get('title', 'API'))}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{escape(info.get('title', ''))} "
            f"{escape(info.get('version', ''))}</h1><p>{escape(info.get('description', ''))}</p>"
            f"<p>Machine-readable: <a href='{escape(self.get_openapi_json_route(request))}'>OpenAPI JSON</a>."
            " Authentication, when on: <code>Authorization: Bearer KEY</code> or <code>X-API-Key: KEY</code>.</p>"
            f"{sections}</body></html>"
        ).encode()
