"""A storm of refused joins is told in a line a second, not a line each."""

from __future__ import annotations

import logging

import pytest

from media.refusals import Refusals


def test_refusals_within_a_second_fold_into_the_next_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    refusals = Refusals(logging.getLogger("test.refusals"), clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.refusals"):
        for _ in range(5):
            refusals.refused("player", "s1", "the node is busy")
            now[0] += 0.1
        now[0] += 0.6
        refusals.refused("downstream", "s2", "no turn came")

    assert caplog.messages == [
        "refused a player for s1: the node is busy",
        "refused a downstream for s2: no turn came (4 more refused since the last such line)",
    ]
