"""The container image, as far as this machine can check it without a container registry: the
Dockerfile passes hadolint, the build context holds what it copies, and the image's entrypoint
and command run a node, in the project's venv, that answers the image's HEALTHCHECK."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from cluster.settings import load_settings
from tests.support import REPO
from tests.support.postgres import free_port

DOCKERFILE = REPO / "Dockerfile"
HADOLINT = REPO / ".venv" / "bin" / "hadolint"
VENV_BIN = REPO / ".venv" / "bin"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions with their arguments, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    found: list[tuple[str, str]] = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def exec_form(instruction: str) -> list[str]:
    """The JSON (exec) form argument of the last ``instruction`` (e.g. ENTRYPOINT)."""
    (*_, rest) = [rest for word, rest in instructions() if word == instruction]
    if instruction == "HEALTHCHECK":
        rest = rest[rest.index("CMD") + len("CMD") :]
    form: list[str] = json.loads(rest)
    return form


def test_the_dockerfile_passes_hadolint() -> None:
    if not HADOLINT.exists():
        pytest.fail(f"{HADOLINT} is missing: bash .ci/install installs it", pytrace=False)
    result = subprocess.run(
        [str(HADOLINT), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_final_stage_runs_as_the_charts_non_root_user() -> None:
    froms = [i for i, (word, _) in enumerate(instructions()) if word == "FROM"]
    final = instructions()[froms[-1] :]
    users = [rest for word, rest in final if word == "USER"]
    assert users == ["10001:10001"]
    installs = " ".join(rest for word, rest in final if word == "RUN")
    assert not re.search(r"\b(gcc|g\+\+|clang|make|[a-z0-9.+-]+-dev)\b", installs), installs
    chart_values = (REPO / "helm" / "tierstream" / "values.yaml").read_text(encoding="utf-8")
    assert "runAsUser: 10001" in chart_values and "fsGroup: 10001" in chart_values


def test_the_build_context_holds_every_copied_source() -> None:
    ignore = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert "*" in ignore
    for word, rest in instructions():
        if word == "COPY" and not rest.startswith("--from"):
            *sources, _ = shlex.split(rest)
            for source in sources:
                assert f"!{source.rstrip('/')}{'/' if (REPO / source).is_dir() else ''}" in ignore
                assert (REPO / source).exists(), source


def image_default_config(directory: Path) -> Path:
    """The file the build stage writes: the repository's conf through the Dockerfile's sed."""
    (command,) = [rest for word, rest in instructions() if word == "RUN" and "sed " in rest]
    sed = re.search(r"sed ('[^']+') (\S+) > (\S+)", command)
    assert sed, command
    expression, source, _ = sed.groups()
    target = directory / "var" / "lib" / "tierstream" / "red5.properties"
    target.parent.mkdir(parents=True)
    result = subprocess.run(
        ["sed", shlex.split(expression)[0], str(REPO / source)],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    target.write_text(result.stdout, encoding="utf-8")
    return target


def test_the_images_command_runs_a_node_that_passes_the_healthcheck(tmp_path: Path) -> None:
    entrypoint, command = exec_form("ENTRYPOINT"), exec_form("CMD")
    config = image_default_config(tmp_path)
    assert load_settings(config, {}).http_host == "0.0.0.0"
    assert command[command.index("--config") + 1] == "/var/lib/tierstream/red5.properties"
    command[command.index("--config") + 1] = str(config)
    port = free_port()
    # Loopback only in tests: the image listens on every interface.
    env = {
        "PATH": f"{VENV_BIN}:/usr/bin:/bin",
        "TIERSTREAM_HTTP_HOST": "127.0.0.1",
        "TIERSTREAM_HTTP_PORT": str(port),
    }
    (entry,) = entrypoint
    assert (VENV_BIN / entry).exists(), f"{entry} is not a command of the project's venv"
    log = (tmp_path / "node.log").open("wb")
    node = subprocess.Popen(
        [str(VENV_BIN / entry), *command], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        healthcheck = exec_form("HEALTHCHECK")
        assert healthcheck[0] == "python"
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            check = subprocess.run(
                [str(VENV_BIN / "python"), *healthcheck[1:]],
                env=env,
                capture_output=True,
                timeout=10,
                check=False,
            )
            if check.returncode == 0:
                break
            assert node.poll() is None, (tmp_path / "node.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "node.log").read_text()
            time.sleep(0.2)
        os.kill(node.pid, signal.SIGTERM)
        assert node.wait(timeout=STOP_TIMEOUT_S) == 0
    finally:
        if node.poll() is None:
            node.kill()
            node.wait(timeout=STOP_TIMEOUT_S)
        log.close()
