"""Who may publish or play a stream: Ant Media's stream security, the same on every entry point.

WHIP, WHEP and the WebSocket all call ``StreamAccess.check`` before any media
or registry claim, with the token the client gave (``Authorization: Bearer``,
``?token=`` or the message's ``token`` field). Per app (``cluster.app_settings``):

- JWT control: the token is an HS256 JWT ``{streamId, type, exp}`` signed with
  ``jwtStreamSecretKey`` (``cluster.tokens.verify_stream_token``);
- token control: the token is a one-time token from
  ``GET /{app}/rest/v2/broadcasts/{id}/token``, spent in the registry in one
  statement, so it opens one session once, on whichever node it reaches first;
- with both enabled, a token shaped like a JWT is checked as one, any other as a
  one-time token;
- ``webhookAuthenticateURL``: after the token, a publish is POSTed to the
  operator's URL and allowed only on 200 within the timeout.

A cluster token (pulls between nodes) never passes here, and a stream token never
opens the internal pull path (``cluster.tokens``).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from cluster.app_settings import AppSettings
from cluster.errors import BadRequest, Forbidden, Unauthorized
from cluster.registry import Registry
from cluster.settings import Settings
from cluster.tokens import verify_stream_token
from cluster.types import AppName, SessionKind, StreamId

logger = logging.getLogger(__name__)

OPEN = AppSettings()
MAX_TOKEN_CHARS = 4096


class StreamAccess:
    """Checks stream tokens and asks the publish webhook; makes one-time tokens."""

    def __init__(self, registry: Registry, settings: Callable[[], Settings]) -> None:
        self._registry = registry
        self._settings = settings

    def _app(self, app: str) -> AppSettings:
        return self._settings().apps.get(app, OPEN)

    async def check(
        self, app: str, stream_id: str, kind: SessionKind, token: str, client: str
    ) -> None:
        """Raise ``Unauthorized``/``Forbidden`` (naming why) unless the client may go ahead."""
        settings = self._app(app)
        jwt_control = (
            settings.publish_jwt_control if kind == "publish" else settings.play_jwt_control
        )
        one_time = (
            settings.publish_token_control if kind == "publish" else settings.play_token_control
        )
        token = token.strip()
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthorized(f"the token is longer than {MAX_TOKEN_CHARS} characters")
        if jwt_control or one_time:
            if not token:
                raise Unauthorized(f"{app} needs a token to {kind} {stream_id}")
            if jwt_control and (token.count(".") == 2 or not one_time):
                verify_stream_token(settings.jwt_stream_secret_key, token, stream_id, kind)
            elif not await self._registry.spend_stream_token(
                token, StreamId(stream_id), AppName(app), kind
            ):
                raise Unauthorized(
                    f"the one-time token is unknown, already used, expired, or not for "
                    f"{kind} of {stream_id} in {app}"
                )
        if kind == "publish" and settings.webhook_authenticate_url:
            await self._ask_webhook(settings, app, stream_id, token, client)

    async def _ask_webhook(
        self, settings: AppSettings, app: str, stream_id: str, token: str, client: str
    ) -> None:
        url = settings.webhook_authenticate_url
        body = {
            "streamId": stream_id,
            "appName": app,
            "clientIp": client,
            "token": token,
            "mode": "publish",
        }
        try:
            async with httpx.AsyncClient(timeout=settings.webhook_timeout_s) as client_:
                reply = await client_.post(url, json=body)
        except httpx.TimeoutException:
            logger.warning("publish webhook %s did not answer for %s in time", url, stream_id)
            raise Forbidden(
                f"the publish webhook did not answer within {settings.webhook_timeout_s:g} s"
            ) from None
        except httpx.HTTPError as error:
            logger.warning("publish webhook %s failed for %s: %s", url, stream_id, error)
            raise Forbidden(f"the publish webhook could not be reached: {error}") from None
        if reply.status_code != 200:
            logger.info("publish webhook refused %s (%d)", stream_id, reply.status_code)
            raise Forbidden(f"the publish webhook refused the stream ({reply.status_code})")

    async def one_time_token(
        self, app: str, stream_id: str, kind: str, expire_date: str
    ) -> dict[str, object]:
        """Make a one-time token (Ant Media's Token object); ``expireDate`` in Unix seconds."""
        if kind not in ("publish", "play"):
            raise BadRequest("type must be publish or play")
        try:
            expires = int(expire_date)
            expires_at = datetime.fromtimestamp(expires, UTC)
        except (ValueError, OverflowError, OSError):
            raise BadRequest("expireDate must be a Unix time in seconds") from None
        if expires_at <= await self._registry.now():
            raise BadRequest("expireDate is in the past")
        token = secrets.token_urlsafe(24)
        await self._registry.create_stream_token(
            token, StreamId(stream_id), AppName(app), kind, expires_at
        )
        logger.info(
            "one-time %s token for %s in %s, valid until %s",
            kind,
            stream_id,
            app,
            expires_at.isoformat(),
        )
        return {
            "tokenId": token,
            "streamId": stream_id,
            "expireDate": expires,
            "type": kind,
            "roomId": "",
        }
