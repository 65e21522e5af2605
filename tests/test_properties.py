"""Rewriting red5.properties keeps what people wrote in it."""

from __future__ import annotations

from pathlib import Path

from cluster.properties import apply_rendered, read_properties, read_secrets, update_properties

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
    path.chmod(0o644)  # world-readable, as an editor may leave it
    update_properties(path, {"nodeGroup": "us", "server.log_level": "DEBUG"})
    assert (
        path.read_text(encoding="utf-8")
        == ORIGINAL.replace("nodeGroup=default", "nodeGroup=us") + "server.log_level=DEBUG\n"
    )
    assert path.stat().st_mode & 0o777 == 0o600, "it may hold secrets: owner only"
    assert read_properties(path)["nodeGroup"] == "us"
    assert [p.name for p in tmp_path.iterdir()] == ["red5.properties"]


RENDERED = """\
# Rendered by the chart
nodeGroup=eu
server.log_level=INFO
server.cpu_limit=75
"""


def _apply(
    tmp_path: Path, rendered_text: str, secrets: dict[str, str] | None = None
) -> tuple[Path, dict[str, str]]:
    rendered = tmp_path / "chart" / "red5.properties"
    rendered.parent.mkdir(exist_ok=True)
    rendered.write_text(rendered_text, encoding="utf-8")
    node_file = tmp_path / "red5.properties"
    return node_file, apply_rendered(rendered, node_file, secrets)


def test_apply_rendered_on_first_start_writes_the_rendering(tmp_path: Path) -> None:
    node_file, kept = _apply(tmp_path, RENDERED)
    assert kept == {}
    assert node_file.read_text(encoding="utf-8") == RENDERED
    assert read_properties(tmp_path / "red5.properties.applied") == read_properties(node_file)


def test_a_runtime_change_survives_a_restart_with_the_same_rendering(tmp_path: Path) -> None:
    node_file, _ = _apply(tmp_path, RENDERED)
    update_properties(node_file, {"nodeGroup": "us", "server.log_level": "DEBUG"})
    node_file, kept = _apply(tmp_path, RENDERED)
    assert kept == {"nodeGroup": "us", "server.log_level": "DEBUG"}
    assert read_properties(node_file) == {
        "nodeGroup": "us",
        "server.log_level": "DEBUG",
        "server.cpu_limit": "75",
    }
    assert node_file.read_text(encoding="utf-8").startswith("# Rendered by the chart\n")


def test_a_rendering_that_changed_a_key_wins_over_its_runtime_value(tmp_path: Path) -> None:
    node_file, _ = _apply(tmp_path, RENDERED)
    update_properties(node_file, {"nodeGroup": "us", "server.cpu_limit": "60"})
    node_file, kept = _apply(tmp_path, RENDERED.replace("nodeGroup=eu", "nodeGroup=ap"))
    assert kept == {"server.cpu_limit": "60"}
    assert read_properties(node_file)["nodeGroup"] == "ap"
    # The next restart keeps ap: it is what the rendering says and nothing changed it since.
    node_file, kept = _apply(tmp_path, RENDERED.replace("nodeGroup=eu", "nodeGroup=ap"))
    assert read_properties(node_file)["nodeGroup"] == "ap"


def test_keys_the_rendering_dropped_go_and_keys_only_the_node_wrote_stay(tmp_path: Path) -> None:
    node_file, _ = _apply(tmp_path, RENDERED)
    update_properties(node_file, {"server.maxViewers": "10"})
    node_file, kept = _apply(tmp_path, RENDERED.replace("server.cpu_limit=75\n", ""))
    assert kept == {"server.maxViewers": "10"}
    assert read_properties(node_file) == {
        "nodeGroup": "eu",
        "server.log_level": "INFO",
        "server.maxViewers": "10",
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "chart",
        "red5.properties",
        "red5.properties.applied",
    ]


def test_secrets_join_the_rendering_in_files_only_their_owner_reads(tmp_path: Path) -> None:
    secret = {"app.LiveApp.jwtStreamSecretKey": "k" * 32}
    node_file, _ = _apply(tmp_path, RENDERED, secret)
    assert read_properties(node_file)["app.LiveApp.jwtStreamSecretKey"] == "k" * 32
    for written in (node_file, tmp_path / "red5.properties.applied"):
        assert written.stat().st_mode & 0o777 == 0o600
    # A secret taken out of the Secret goes at the next start.
    node_file, _ = _apply(tmp_path, RENDERED, {})
    assert "app.LiveApp.jwtStreamSecretKey" not in read_properties(node_file)


def test_a_mounted_secret_reads_as_its_files(tmp_path: Path) -> None:
    # Kubernetes mounts a Secret as symlinks into a hidden ..data directory.
    data = tmp_path / "..2026_12_01"
    data.mkdir()
    (data / "app.LiveApp.jwtStreamSecretKey").write_text("s" * 32 + "\n", encoding="utf-8")
    (tmp_path / "..data").symlink_to(data.name)
    (tmp_path / "app.LiveApp.jwtStreamSecretKey").symlink_to(
        "..data/app.LiveApp.jwtStreamSecretKey"
    )
    assert read_secrets(tmp_path) == {"app.LiveApp.jwtStreamSecretKey": "s" * 32}
