"""``tierstream demo`` as a newcomer runs it: real nodes, a stream, players, and a clean exit.

One bounded run (``--duration``) carries the main checks, as the demo's own
start-up does them too: every node healthy, the stream live, players in every
region receiving, one secondary origin per region without the main origin,
the control commands from another shell; then every process gone, by PID.
"""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from cluster.cli.demo_nodes import Credentials, NodeFailed, plan_nodes
from cluster.cli.main import main
from tests.support.demo import DemoProcess, cli, free_consecutive_ports

DURATION_S = 15.0


def test_bounded_run_serves_every_region_and_leaves_nothing(tmp_path: Path) -> None:
    demo = DemoProcess(tmp_path / "demo", "--duration", str(DURATION_S)).start()
    try:
        assert "players receiving 4/4 in every region (eu, us)" in demo.text()
        nodes = demo.state()["nodes"]
        assert [n["name"] for n in nodes] == ["eu-1", "eu-2", "us-1", "us-2"]
        assert [n["port"] for n in nodes] == [demo.port + i for i in range(4)]
        for node in nodes:
            assert httpx.get(f"{node['url']}/healthz", timeout=5).status_code == 200
            assert Path(node["config"]).read_text("utf-8").startswith("# demo node")
        topology = httpx.get(f"{nodes[0]['url']}/rest/v2/streams/demo/topology", timeout=5).json()
        assert topology["state"] == "live"
        assert topology["mainOrigin"] == {"node": "eu-1", "nodeGroup": "eu"}
        assert [o["nodeGroup"] for o in topology["secondaryOrigins"]] == ["us"]
        assert {
            region: counts["players"] >= 2 for region, counts in topology["regions"].items()
        } == {
            "eu": True,
            "us": True,
        }

        assert demo.wait(DURATION_S + 60) == 0, demo.text()
    finally:
        demo.stop()
    assert f"--duration {DURATION_S:g} s reached" in demo.text()
    assert demo.leftovers() == []
    assert not list((tmp_path / "demo").glob("*.sock"))


@pytest.mark.postgres
def test_on_postgres_another_shell_moves_kills_restarts_then_ctrl_c_stops_all(
    tmp_path: Path, postgres_url: str
) -> None:
    demo = DemoProcess(tmp_path / "demo", "--registry", postgres_url).start()
    nodes = demo.state()["nodes"]
    try:
        moved = cli("demo", "move", "eu-2", "us", "--port", str(demo.port))
        assert (moved.returncode, moved.stdout.strip()) == (0, "moved eu-2 to region us")
        assert "nodeGroup=us" in Path(nodes[1]["config"]).read_text("utf-8")
        killed = cli("demo", "kill", "us-1", "--port", str(demo.port))
        assert killed.returncode == 0, killed.stdout + killed.stderr
        assert killed.stdout.startswith(f"killed us-1 (SIGKILL to pid {nodes[2]['pid']})")
        unknown = cli("demo", "kill", "ap-1", "--port", str(demo.port))
        assert unknown.returncode == 1
        assert "the demo has no node 'ap-1'; its nodes are eu-1, eu-2, us-1, us-2" in unknown.stdout
        restarted = cli("demo", "restart", "us-1", "--port", str(demo.port))
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        assert restarted.stdout.startswith("restarted us-1 (pid ")
        assert httpx.get(f"{demo.node_url('us-1')}/healthz", timeout=5).status_code == 200
        demo.pids.append(next(n["pid"] for n in demo.state()["nodes"] if n["name"] == "us-1"))
    finally:
        status = demo.stop()
    assert status == 0, demo.text()
    assert "stopping: every node, the publisher and the players" in demo.text()
    assert demo.leftovers() == []


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The ``tierstream`` command in this process: its exit status, stdout and stderr."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def test_a_port_in_use_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = free_consecutive_ports(4)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", first + 2))
        taken.listen()
        status, _, errors = run_main(
            capsys, "demo", "--regions", "eu,us", "--port", str(first), "--workdir", str(tmp_path)
        )
    assert status == 2
    assert f"port {first + 2} (for node us-1) is already in use" in errors
    assert "Traceback" not in errors


async def test_a_node_that_cannot_start_is_named_with_its_port_and_log(tmp_path: Path) -> None:
    node = plan_nodes(["eu"], 1, free_consecutive_ports(1), tmp_path)[0]
    node.write_config("", tmp_path / "var", Credentials("token", "s" * 32))
    with node.config.open("a", encoding="utf-8") as config:
        config.write("cluster.heartbeatEvery=often\n")
    node.launch()
    async with httpx.AsyncClient() as http:
        with pytest.raises(NodeFailed) as failure:
            await node.wait_healthy(http, timeout_s=30)
    message = str(failure.value)
    assert message.startswith(f"node eu-1 (port {node.port}) exited with status 2 while starting")
    assert "cluster.heartbeatEvery" in message


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["fly", "us-1"], "the action must be one of kill, restart, move"),
        (["move", "us-1"], "usage: tierstream demo move NODE REGION"),
        (["--regions", "eu,eu"], "--regions must name one or more distinct regions"),
        (["--regions", "e u"], "--regions: 'e u' must be 1 to 64"),
        (["--stream", "a/b"], "--stream: a stream id is 1 to 128"),
        (["--port", "80"], "--port must leave room"),
    ],
    ids=[
        "unknown action",
        "move without a region",
        "a region twice",
        "bad region",
        "bad stream",
        "privileged port",
    ],
)
def test_bad_options_are_refused_by_name(
    words: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, errors = run_main(capsys, "demo", *words)
    assert status == 2
    assert expected in errors


def test_an_action_without_a_running_demo_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_consecutive_ports(1, first=41000)
    status, _, errors = run_main(capsys, "demo", "kill", "eu-1", "--port", str(port))
    assert status == 2
    assert f"no demo is running with first port {port}" in errors
