"""The registry's clock: times come from the database and read back as UTC instants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import sqlite

from cluster.registry.database import open_engine
from cluster.registry.schema import RegistryTime, db_now


async def test_db_now_reads_back_as_utc_and_applies_its_offset(registry_url: str) -> None:
    engine = open_engine(registry_url)
    try:
        async with engine.connect() as connection:
            row = (await connection.execute(select(db_now(-1.5), db_now(), db_now(2.25)))).one()
            earlier_first = (await connection.execute(select(db_now(-0.01) < db_now()))).scalar()
    finally:
        await engine.dispose()
    before, now, after = row

    assert {t.tzinfo for t in row} == {UTC}
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)
    assert abs((now - before) - timedelta(seconds=1.5)) < timedelta(milliseconds=50)
    assert abs((after - now) - timedelta(seconds=2.25)) < timedelta(milliseconds=50)
    assert earlier_first


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 1, 2, 3, 4, 5, 678_901, tzinfo=UTC), "2026-01-02 03:04:05.678"),
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02 03:04:05.000"),
        (
            datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2))),
            "2026-01-02 03:04:05.000",
        ),
    ],
    ids=["milliseconds kept", "whole second padded", "converted to UTC"],
)
def test_sqlite_stores_fixed_width_utc_text(moment: datetime, text: str) -> None:
    stored = RegistryTime().process_bind_param(moment, sqlite.dialect())

    assert stored == text
    assert RegistryTime().process_result_value(stored, sqlite.dialect()) == moment.replace(
        microsecond=moment.microsecond // 1000 * 1000
    )


def test_sqlite_text_order_is_time_order() -> None:
    start = datetime(2026, 12, 31, 23, 59, 58, 990_000, tzinfo=UTC)
    moments = [start + timedelta(milliseconds=5 * i) for i in range(600)]

    texts = [RegistryTime().process_bind_param(m, sqlite.dialect()) for m in moments]

    assert texts == sorted(texts)
    assert len(set(texts)) == len(texts)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        RegistryTime().process_bind_param(datetime(2026, 1, 1), sqlite.dialect())
