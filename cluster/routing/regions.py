"""Which regions a client should be served from, nearest first: pure geometry over the config.

A region the client is mapped to explicitly (``region.<name>.countries`` or
``.continents``) comes first; the rest follow by great-circle distance from the
client, so a full region spills over to the next nearest. A client GeoIP cannot
place counts as being where the receiving node's region is. Regions without
coordinates come last, in name order: they are reached only when everything
nearer is full.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from cluster.types import Location, NodeGroup, Region

EARTH_RADIUS_KM = 6371.0


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance: exact enough for ranking regions, and cheap."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def region_order(
    location: Location | None,
    home: NodeGroup,
    regions: Mapping[NodeGroup, Region],
    present: Iterable[NodeGroup],
) -> list[NodeGroup]:
    """The regions in ``present`` (those with live nodes), best first for this client.

    ``regions`` holds the configured regions by name; a present region that is
    not configured has no coordinates.
    """
    names = sorted(set(present))
    mapped: list[NodeGroup] = []
    if location is not None:
        for code, attribute in (
            (location.country, "countries"),
            (location.continent, "continents"),
        ):
            if code is None:
                continue
            mapped += [
                n for n in names if n in regions and code in getattr(regions[n], attribute)
                and n not in mapped
            ]  # fmt: skip
    origin: tuple[float, float] | None = None
    if location is not None and location.latitude is not None and location.longitude is not None:
        origin = (location.latitude, location.longitude)
    else:
        own = regions.get(home)
        if own is not None and own.latitude is not None and own.longitude is not None:
            origin = (own.latitude, own.longitude)
        if home in names and home not in mapped:
            mapped.append(home)
    located: list[tuple[float, NodeGroup]] = []
    unlocated: list[NodeGroup] = []
    for name in names:
        if name in mapped:
            continue
        region = regions.get(name)
        if origin is None or region is None or region.latitude is None or region.longitude is None:
            unlocated.append(name)
        else:
            distance = great_circle_km(origin[0], origin[1], region.latitude, region.longitude)
            located.append((distance, name))
    return mapped + [name for _, name in sorted(located)] + unlocated
