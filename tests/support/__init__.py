"""What the tests share: real nodes, peers, a private PostgreSQL, factories and bounded waits."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
"""The checkout's root: the working directory of every helper process a test starts."""
