"""Logging set-up: plain-word lines on stderr, one level for the whole node.

Info lines say what happened in words an operator can act on; debug lines carry
session and stream ids. The level is one of the settings changeable at runtime.
"""

from __future__ import annotations

import logging

from cluster.settings import LogLevel

_PYTHON_LEVELS: dict[LogLevel, int] = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "ERROR": logging.ERROR,
}

# Libraries that speak at info about every packet or request; they join in at DEBUG only.
_CHATTY = ("aioice", "aiortc", "httpx", "uvicorn.access", "sqlalchemy.engine", "alembic.runtime")


def configure_logging(level: LogLevel) -> None:
    logging.basicConfig(
        format="%(asctime)s %(levelname)-5s %(name)s: %(message)s",
        level=_PYTHON_LEVELS[level],
        force=True,
    )
    apply_log_level(level)


def apply_log_level(level: LogLevel) -> None:
    """Set the node's level now; chatty libraries stay at WARNING unless the level is DEBUG."""
    python_level = _PYTHON_LEVELS[level]
    logging.getLogger().setLevel(python_level)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(python_level if level == "DEBUG" else logging.WARNING)
