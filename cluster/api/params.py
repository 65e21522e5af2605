"""Path parameters, validated once for every HTTP handler: a bad name is a 400 saying why."""

from __future__ import annotations

from starlette.requests import Request

from cluster.errors import BadRequest
from cluster.types import AppName, StreamId, parse_app_name, parse_stream_id


def stream_id(request: Request) -> StreamId:
    try:
        return parse_stream_id(request.path_params["stream"])
    except ValueError as error:
        raise BadRequest(str(error)) from None


def app_and_stream(request: Request) -> tuple[AppName, StreamId]:
    try:
        app = parse_app_name(request.path_params["app"])
    except ValueError as error:
        raise BadRequest(str(error)) from None
    return app, stream_id(request)
