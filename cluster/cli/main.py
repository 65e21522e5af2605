"""The ``tierstream`` command: one subcommand per job a person runs.

Start-up errors (a bad configuration key, an unreachable registry, a refused
offer) end the command with one plain line naming the problem and exit status
2, not a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import ssl
import sys
from pathlib import Path

import httpx
from rich.console import Console

from cluster.cli import client_commands, demo, geodns
from cluster.errors import ClusterError, ConfigError
from cluster.logs import configure_logging
from cluster.properties import apply_rendered, read_secrets
from cluster.registry.migrate import migrate
from cluster.server import run_node
from cluster.settings import Settings, load_settings
from cluster.tls import refusal, registry_ssl, tls_failure
from media.contrib.synthetic import VideoSettings

logger = logging.getLogger("tierstream")

DEFAULT_CONFIG = Path("conf/red5.properties")


def _picture_size(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT``, even numbers from 16 to 1920 (what the encoders take)."""
    width, _, height = text.lower().partition("x")
    try:
        size = (int(width), int(height))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 320x180") from None
    if not all(16 <= side <= 1920 and side % 2 == 0 for side in size):
        raise argparse.ArgumentTypeError(f"{text!r}: each side an even number from 16 to 1920")
    return size


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tierstream", description="Multi-level origin/edge WebRTC live-streaming cluster."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("node", "run one node"), ("migrate", "apply the registry's migrations")):
        command = commands.add_parser(name, help=text)
        command.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="properties file")

    apply = commands.add_parser(
        "apply-config",
        help="bring a node's properties file to a deployment's rendering, keeping runtime changes",
    )
    apply.add_argument("--from", dest="rendered", type=Path, required=True, help="rendered file")
    apply.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="the node's file")
    apply.add_argument(
        "--secrets", type=Path, help="a directory of key-named files (a mounted Secret) to add"
    )

    demo.add_arguments(commands.add_parser("demo", help="a local multi-region cluster to watch"))
    geodns.add_arguments(
        commands.add_parser("geodns", help="write a GeoDNS configuration for the cluster")
    )
    publish = commands.add_parser("publish", help="publish the synthetic test stream over WHIP")
    publish.add_argument("--whip", required=True, help="e.g. http://127.0.0.1:5080/LiveApp/whip/s1")
    publish.add_argument("--codec", choices=sorted(client_commands.CODECS), default="vp8")
    publish.add_argument("--keyframe-interval", type=float, default=2.0, help="seconds")
    publish.add_argument("--size", type=_picture_size, default=(640, 360), help="WIDTHxHEIGHT")
    publish.add_argument("--fps", type=int, choices=range(1, 61), default=30, metavar="1-60")
    play = commands.add_parser("play", help="play a stream over WHEP and print what arrives")
    play.add_argument("--whep", required=True, help="e.g. http://127.0.0.1:5080/LiveApp/whep/s1")
    for command in (publish, play):
        command.add_argument("--seconds", type=float, help="stop after this long")
        command.add_argument("--token", help="bearer token for the endpoint")
        command.add_argument(
            "--candidate",
            action="append",
            default=None,
            help="IP address to offer as ICE candidate (repeatable; default 127.0.0.1)",
        )
        command.add_argument(
            "--ca",
            type=Path,
            help="PEM CA certificate to verify an https node with (a cluster's private CA, "
            "its server.tlsCA); default: the system's CAs",
        )
    return parser


def _verify(ca: Path | None) -> ssl.SSLContext | bool:
    """What ``publish``/``play`` verify the node with; a CA file that does not load exits 2."""
    if ca is None:
        return True
    try:
        return ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as error:
        print(f"tierstream: --ca {ca}: {error.strerror or error}", file=sys.stderr)
        sys.exit(2)


def _settings(config: Path) -> Settings:
    try:
        return load_settings(config, os.environ)
    except ConfigError as error:
        print(f"tierstream: configuration error: {error}", file=sys.stderr)
        sys.exit(2)


def _apply_config(rendered: Path, config: Path, secrets: Path | None) -> None:
    """The Helm chart's init step: the rendering of this release over the pod's own file."""
    try:
        kept = apply_rendered(rendered, config, read_secrets(secrets) if secrets else None)
    except OSError as error:
        print(f"tierstream: cannot apply {rendered} to {config}: {error}", file=sys.stderr)
        sys.exit(2)
    for key, value in kept.items():
        logger.info("%s: kept the runtime value %s=%s", config, key, value)
    logger.info("%s: brought to %s (%d runtime values kept)", config, rendered, len(kept))


def _demo(args: argparse.Namespace) -> None:
    """Run a demo, or (with an action) ask the running one to act; a bad option exits 2."""
    try:
        if args.action:
            ok, message = asyncio.run(demo.act(args.port, args.action))
            print(message)
            sys.exit(0 if ok else 1)
        asyncio.run(demo.run_demo(demo.options_from(args), Console()))
    except ValueError as error:
        print(f"tierstream demo: {error}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        if args.command == "apply-config":
            configure_logging("INFO")
            _apply_config(args.rendered, args.config, args.secrets)
        elif args.command in ("node", "migrate"):
            settings = _settings(args.config)
            configure_logging(settings.log_level)
            if args.command == "node":
                asyncio.run(run_node(settings))
            else:
                if settings.embedded_registry:
                    settings.data_dir.mkdir(parents=True, exist_ok=True)
                asyncio.run(migrate(settings.registry_url, tls=registry_ssl(settings)))
        elif args.command == "demo":
            configure_logging("WARN")
            _demo(args)
        elif args.command == "geodns":
            settings = _settings(args.config)
            configure_logging("INFO")
            options = geodns.options_from(args, settings.geoip_db, settings.tls_ca)
            count = asyncio.run(geodns.write_from_registry(settings, options, args.out))
            logger.info("wrote a gdnsd configuration for %d nodes to %s", count, args.out)
        else:
            configure_logging("WARN")
            candidates = tuple(args.candidate or ("127.0.0.1",))
            verify = _verify(args.ca)
            if args.command == "publish":
                width, height = args.size
                video = VideoSettings(
                    mime_type=client_commands.CODECS[args.codec],
                    keyframe_interval_s=args.keyframe_interval,
                ).scaled(width, height, args.fps)
                asyncio.run(
                    client_commands.publish(
                        args.whip, video, args.seconds, args.token, candidates, verify
                    )
                )
            else:
                asyncio.run(
                    client_commands.play(args.whep, args.seconds, args.token, candidates, verify)
                )
    except ClusterError as error:
        logger.error("%s", error)
        sys.exit(2)
    except httpx.HTTPError as error:
        failure = tls_failure(error)
        reason = refusal(failure) if failure is not None else str(error) or type(error).__name__
        logger.error(
            "cannot reach %s: %s", args.whip if args.command == "publish" else args.whep, reason
        )
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
