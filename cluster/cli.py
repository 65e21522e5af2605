"""The ``tierstream`` command: one subcommand per job a person runs.

Start-up errors (a bad configuration key, an unreachable registry) end the
command with one plain line naming the problem and exit status 2, not a
traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from cluster.errors import ClusterError, ConfigError
from cluster.logs import configure_logging
from cluster.migrate import migrate
from cluster.server import run_node
from cluster.settings import load_settings

logger = logging.getLogger("tierstream")

DEFAULT_CONFIG = Path("conf/red5.properties")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tierstream", description="Multi-level origin/edge WebRTC live-streaming cluster."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    node = commands.add_parser("node", help="run one node")
    node.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="properties file")
    mig = commands.add_parser("migrate", help="apply the registry's schema migrations")
    mig.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="properties file")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config, os.environ)
    except ConfigError as error:
        print(f"tierstream: configuration error: {error}", file=sys.stderr)
        sys.exit(2)
    configure_logging(settings.log_level)
    try:
        if args.command == "node":
            asyncio.run(run_node(settings))
        elif args.command == "migrate":
            if settings.embedded_registry:
                settings.data_dir.mkdir(parents=True, exist_ok=True)
            asyncio.run(migrate(settings.registry_url))
    except ClusterError as error:
        logger.error("%s", error)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
