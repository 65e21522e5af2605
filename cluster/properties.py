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


def read_properties(path: Path) -> dict[str, str]:
    """Every key of the file with its value, as written (no defaults, no environment)."""
    with path.open(encoding="utf-8") as f:
        return dict(javaproperties.PropertiesFile.load(f))


def update_properties(path: Path, changes: Mapping[str, str]) -> None:
    """Set ``changes`` in the file, keeping comments and order; new keys go at the end.

    The new text is written to a temporary file beside the original, flushed
    to disk and renamed over it, so a crash leaves either the old file or the
    new one, never a torn one.
    """
    with path.open(encoding="utf-8") as f:
        document = javaproperties.PropertiesFile.load(f)
    for key, value in changes.items():
        document[key] = value
    mode = path.stat().st_mode & 0o777
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
