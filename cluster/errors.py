"""The control plane's errors, one type per failure a caller can act on.

Each carries the HTTP status it maps to; the app's exception handler is the
only place that turns them into responses.
"""

from __future__ import annotations


class ClusterError(Exception):
    """Base of every control-plane error; ``status`` is its HTTP status."""

    status: int = 500


class ConfigError(ClusterError):
    """A configuration key is unknown or its value is malformed; the message names the key."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


class BadRequest(ClusterError):
    """The request is malformed (bad JSON, unknown field, bad name)."""

    status = 400


class Unauthorized(ClusterError):
    """No credentials, or credentials that do not verify."""

    status = 401


class Forbidden(ClusterError):
    """Valid request from a client that may not make it (e.g. outside the allowed CIDR)."""

    status = 403


class NotFound(ClusterError):
    """The named node or stream is not known."""

    status = 404


class PayloadTooLarge(ClusterError):
    """The request body is over its limit."""

    status = 413


class UnsupportedMediaType(ClusterError):
    """The request body has the wrong content type."""

    status = 415


class StreamBusy(ClusterError):
    """The stream is live on another node: its main origin is taken."""

    status = 409


class RegistryUnavailable(ClusterError):
    """The registry cannot be reached or answered with an error."""

    status = 503


class SettingLocked(ClusterError):
    """A setting cannot be changed at runtime because the environment pins it."""

    status = 409


class Overloaded(ClusterError):
    """The node is at one of its limits and takes no more of this work."""

    status = 503


class PreconditionFailed(ClusterError):
    """The request's If-Match does not name the resource it addresses."""

    status = 412


class UpstreamFailed(ClusterError):
    """This node could not pull the stream from the node that carries it."""

    status = 502


class UpstreamTimeout(ClusterError):
    """This node could not start pulling the stream in time."""

    status = 504


class NoRoom(Overloaded):
    """No node in any region has room; clients are told to retry after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
