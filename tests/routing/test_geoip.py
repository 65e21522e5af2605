"""GeoIP over MaxMind's test database: known cities, unknown and private addresses, bad files."""

from __future__ import annotations

import ipaddress
import os
import shutil
import time
from pathlib import Path

import pytest

from cluster.errors import ConfigError
from cluster.routing import geoip
from cluster.routing.geoip import GeoIp
from tests.support import REPO

TEST_DB = REPO.parent / "shared" / "geoip" / "GeoLite2-City-Test.mmdb"


@pytest.fixture
def db() -> GeoIp:
    return GeoIp(TEST_DB)


@pytest.mark.parametrize(
    ("address", "country", "continent"),
    [("81.2.69.142", "GB", "EU"), ("216.160.83.56", "US", "NA"), ("175.16.199.1", "CN", "AS")],
    ids=["London", "Milton", "Changchun"],
)
def test_known_cities(db: GeoIp, address: str, country: str, continent: str) -> None:
    location = db.locate(ipaddress.ip_address(address))
    assert location is not None
    assert (location.country, location.continent) == (country, continent)
    assert location.latitude is not None and location.longitude is not None


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.0.1", "::1", "8.8.8.8"])
def test_private_loopback_and_unknown_addresses_have_no_location(db: GeoIp, address: str) -> None:
    assert db.locate(ipaddress.ip_address(address)) is None


def test_missing_file_is_a_start_up_error_naming_geoip_db(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        GeoIp(tmp_path / "nothing.mmdb")
    assert error.value.key == "geoip.db"
    assert "does not exist" in str(error.value)


def test_corrupt_file_is_a_start_up_error_naming_geoip_db(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.mmdb"
    corrupt.write_bytes(b"this is not a MaxMind database" * 100)
    with pytest.raises(ConfigError) as error:
        GeoIp(corrupt)
    assert error.value.key == "geoip.db"
    assert "not a MaxMind database" in str(error.value)


def test_a_changed_file_is_reloaded_and_a_broken_one_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(geoip, "CHECK_EVERY_S", 0.0)
    path = tmp_path / "city.mmdb"
    path.write_bytes(b"\0" * 10)
    shutil.copyfile(TEST_DB, path)
    db = GeoIp(path)
    london = ipaddress.ip_address("81.2.69.142")
    assert db.locate(london) is not None
    path.write_bytes(b"broken")  # a half-copied update: the loaded database stays
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert db.locate(london) is not None
    shutil.copyfile(TEST_DB, path)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2_000_000))
    assert db.locate(london) is not None
    db.close()
