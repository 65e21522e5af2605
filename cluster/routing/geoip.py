"""Where a client is: a MaxMind GeoIP2/GeoLite2 City database, read with ``geoip2``.

The database file (``geoip.db``) is checked for changes at most once a second
and reloaded in place when it changes, so a monthly update needs no restart; a
replacement that cannot be read is logged and the previous database kept. A
missing or unreadable file at start-up stops the node with an error naming
``geoip.db``. Private, loopback and unknown addresses have no location: the
caller then treats the client as being in the receiving node's region.

A lookup decodes a whole record (names in every language), tens of
microseconds, so answers are cached per address until the next reload.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import threading
import time
from pathlib import Path

import geoip2.database
import geoip2.errors
import maxminddb

from cluster.errors import ConfigError
from cluster.types import Location

logger = logging.getLogger(__name__)

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
CHECK_EVERY_S = 1.0
CACHE_SIZE = 65_536


def _signature(path: Path) -> tuple[int, int, int]:
    stat = os.stat(path)
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _open(path: Path) -> geoip2.database.Reader:
    """The reader, or ConfigError naming geoip.db and saying what is wrong with the file."""
    try:
        reader = geoip2.database.Reader(str(path))
    except FileNotFoundError:
        raise ConfigError("geoip.db", f"{path} does not exist") from None
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as error:
        raise ConfigError("geoip.db", f"{path} is not a MaxMind database: {error}") from None
    kind = reader.metadata().database_type
    if "City" not in kind:
        reader.close()
        raise ConfigError("geoip.db", f"{path} is a {kind} database; a City database is needed")
    return reader


class GeoIp:
    """One City database, reloaded when its file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._seen = _signature(path)
        except OSError:
            raise ConfigError("geoip.db", f"{path} does not exist or cannot be read") from None
        self._reader = _open(path)
        self._checked_at = time.monotonic()
        self._lock = threading.Lock()
        self._cached = functools.lru_cache(maxsize=CACHE_SIZE)(self._lookup)
        logger.info("GeoIP database %s (%s)", path, self._reader.metadata().database_type)

    def locate(self, address: IpAddress) -> Location | None:
        """The client's location; None for private, loopback or unknown addresses."""
        if not address.is_global:
            return None
        self._reload_if_changed()
        return self._cached(address)

    def _lookup(self, address: IpAddress) -> Location | None:
        try:
            city = self._reader.city(address)
        except (geoip2.errors.AddressNotFoundError, ValueError):
            return None
        return Location(
            country=city.country.iso_code,
            continent=city.continent.code,
            latitude=city.location.latitude,
            longitude=city.location.longitude,
        )

    def _reload_if_changed(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < CHECK_EVERY_S or not self._lock.acquire(blocking=False):
            return
        try:
            self._checked_at = now
            try:
                signature = _signature(self.path)
            except OSError as error:
                if self._seen != (0, 0, 0):
                    logger.error("GeoIP database %s is gone (%s); keeping the loaded one",
                                 self.path, error.strerror)  # fmt: skip
                self._seen = (0, 0, 0)
                return
            if signature == self._seen:
                return
            self._seen = signature
            try:
                reader = _open(self.path)
            except ConfigError as error:
                logger.error("GeoIP database not reloaded, keeping the loaded one: %s", error)
                return
            old, self._reader = self._reader, reader
            self._cached.cache_clear()
            old.close()
            logger.info("GeoIP database %s reloaded", self.path)
        finally:
            self._lock.release()

    def close(self) -> None:
        self._reader.close()
