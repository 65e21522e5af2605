"""Rewriting red5.properties keeps what people wrote in it."""

from __future__ import annotations

from pathlib import Path

from cluster.properties import read_properties, update_properties

ORIGINAL = """\
# Header comment
#   indented second line

# The region
nodeGroup=default
! a bang comment
http.port = 5080
server.name:
"""


def test_update_keeps_comments_order_and_untouched_lines(tmp_path: Path) -> None:
    path = tmp_path / "red5.properties"
    path.write_text(ORIGINAL, encoding="utf-8")
    path.chmod(0o640)
    update_properties(path, {"nodeGroup": "us", "server.log_level": "DEBUG"})
    assert (
        path.read_text(encoding="utf-8")
        == ORIGINAL.replace("nodeGroup=default", "nodeGroup=us") + "server.log_level=DEBUG\n"
    )
    assert path.stat().st_mode & 0o777 == 0o640
    assert read_properties(path)["nodeGroup"] == "us"
    assert [p.name for p in tmp_path.iterdir()] == ["red5.properties"]
