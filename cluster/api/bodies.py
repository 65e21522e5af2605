"""Bounded reading of request bodies.

A body is read in chunks and refused as soon as it passes its limit, so an
oversized or endless upload costs at most ``limit`` bytes of memory, whatever
its Content-Length claims.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from cluster.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

JSON_LIMIT = 64 * 1024


def content_type(request: Request) -> str:
    """The media type without parameters, lower case (``application/json; charset=utf-8`` → ...)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes is over the {limit} byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is over the {limit} byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_object(request: Request, limit: int = JSON_LIMIT) -> dict[str, Any]:
    """The body as a JSON object; 415 for another content type, 400 for anything but an object."""
    if content_type(request) != "application/json":
        raise UnsupportedMediaType("the body must be application/json")
    body = await read_body(request, limit)
    try:
        value = json.loads(body)
    except ValueError as error:  # bad UTF-8, bad JSON, or a number too long to read
        raise BadRequest(f"the body is not valid JSON: {_shown(error)}") from None
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object")
    return value


def _shown(error: Exception) -> str:
    """A parser's message, short: some quote the input back."""
    text = str(error)
    return text if len(text) <= 200 else text[:197] + "..."
