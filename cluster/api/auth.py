"""Who may change a node: the admin token, from an allowed network.

Both checks are Ant Media's: ``server.allowed_dashboard_CIDR`` filters by client
address first (403), then the bearer token is compared in constant time (401).
An empty ``server.adminToken`` disables state-changing calls instead of leaving
them open.
"""

from __future__ import annotations

import hmac
import ipaddress

from starlette.requests import Request

from cluster.errors import Forbidden, Unauthorized
from cluster.settings import Settings


def require_admin(request: Request, settings: Settings) -> None:
    """Raise ``Forbidden`` or ``Unauthorized`` unless the request may change the node."""
    client = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        raise Forbidden("the client address is unknown") from None
    if not any(address in network for network in settings.allowed_dashboard_cidr):
        raise Forbidden(f"{address} is not inside server.allowed_dashboard_CIDR")
    if not settings.admin_token:
        raise Forbidden("server.adminToken is not set: state-changing calls are disabled")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing 'Authorization: Bearer <admin token>' header")
    if not hmac.compare_digest(token.strip().encode(), settings.admin_token.encode()):
        raise Unauthorized("the admin token is wrong")
