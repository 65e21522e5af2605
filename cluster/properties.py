"""Reading and rewriting ``conf/red5.properties`` without losing what people wrote in it.

Operators document their settings with comments; a runtime change
(``changeServerSettings``) must keep those comments, the key order and every
other line as they were, and must never leave a half-written file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import javaproperties

PRIVATE_MODE = 0o600
"""The file may hold the cluster secret, the admin token and the registry password: only its
owner reads it, whatever mode it had before."""


def read_properties(path: Path) -> dict[str, str]:
    """Every key of the file with its value, as written (no defaults, no environment)."""
    return dict(_load(path))


def update_properties(path: Path, changes: Mapping[str, str]) -> None:
    """Set ``changes`` in the file, keeping comments and order; new keys go at the end.

    The new text is written to a temporary file beside the original, flushed
    to disk and renamed over it, so a crash leaves either the old file or the
    new one, never a torn one; the new file is readable by its owner only.
    """
    document = _load(path)
    for key, value in changes.items():
        document[key] = value
    _replace(path, document, PRIVATE_MODE)


APPLIED_SUFFIX = ".applied"


def apply_rendered(
    rendered: Path, path: Path, secrets: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Bring the node's file ``path`` to ``rendered``, keeping the runtime changes made since.

    A deployment (the Helm chart) renders the file anew at every upgrade, while
    the node rewrites its own copy at runtime (``changeServerSettings``); both
    must win where they are the newer word. The rendering as last applied is
    kept beside ``path`` (``<name>.applied``), and per key: a value the new
    rendering changed since then is taken (the operator's upgrade wins); an
    unchanged one keeps what ``path`` holds (a runtime change survives the
    restart); a key the rendering dropped goes; a key only the node wrote stays.
    ``secrets`` (keys no environment variable can carry, e.g. an app's
    ``jwtStreamSecretKey``, from a Secret volume) join the rendering, so both
    files are readable by their owner only. The result has the rendering's
    comments and order. Returns the runtime values kept that differ from the
    rendering, by key.
    """
    document = _load(rendered)
    for key, value in (secrets or {}).items():
        document[key] = value
    applied_path = path.with_name(path.name + APPLIED_SUFFIX)
    current = read_properties(path) if path.exists() else {}
    applied = read_properties(applied_path) if applied_path.exists() else {}
    kept: dict[str, str] = {}
    new_applied = javaproperties.PropertiesFile(document)
    for key, value in current.items():
        # Unchanged by the rendering since last applied, or written by the node alone.
        keep = document[key] == applied.get(key) if key in document else key not in applied
        if keep and document.get(key) != value:
            kept[key] = value
            document[key] = value
    _replace(path, document, PRIVATE_MODE)
    _replace(applied_path, new_applied, PRIVATE_MODE)
    return kept


def read_secrets(directory: Path) -> dict[str, str]:
    """A Secret mounted as a directory: each file is a key, its content the value."""
    return {
        entry.name: entry.read_text(encoding="utf-8").strip()
        for entry in sorted(directory.iterdir())
        if entry.is_file() and not entry.name.startswith(".")
    }


def _load(path: Path) -> javaproperties.PropertiesFile:
    with path.open(encoding="utf-8") as f:
        return javaproperties.PropertiesFile.load(f)


def _replace(path: Path, document: javaproperties.PropertiesFile, mode: int) -> None:
    """Write ``document`` over ``path`` atomically: temporary file, fsync, rename."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as tmp:
            document.dump(tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
