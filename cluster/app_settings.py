"""Per-app stream security, with Ant Media's setting names, as one section per app.

Ant Media keeps these in each app's ``red5-web.properties``; tierstream keeps one
file per node, so an app's settings are the keys ``app.<AppName>.<setting>`` of
``conf/red5.properties``::

    app.LiveApp.publishJwtControlEnabled=true
    app.LiveApp.jwtStreamSecretKey=<at least 32 characters>
    app.LiveApp.playTokenControlEnabled=true
    app.LiveApp.webhookAuthenticateURL=https://auth.example.com/publish

An app without a section is open, as in Ant Media. A setting name not listed
here, an app name that is not a valid app, or a value its parser refuses stops
start-up naming the key, like every other key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from cluster.errors import ConfigError
from cluster.types import parse_app_name

APP_KEY = re.compile(r"app\.([^.]+)\.(.+)")


def _boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f"{raw.strip()!r} is not true or false")
    return value == "true"


def _secret(raw: str) -> str:
    value = raw.strip()
    if value and len(value) < 32:
        raise ValueError(f"must be at least 32 characters to sign with HS256 (has {len(value)})")
    return value


def _url(raw: str) -> str:
    value = raw.strip()
    if value and not re.fullmatch(r"https?://\S+", value):
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value


def _timeout_ms(raw: str) -> float:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError(f"{raw.strip()!r} is not a whole number") from None
    if not 100 <= value <= 60_000:
        raise ValueError(f"{value} is outside 100..60000")
    return value / 1000.0


@dataclass(frozen=True, slots=True)
class AppSettings:
    """One app's stream security. The defaults leave the app open."""

    publish_jwt_control: bool = False
    """publishJwtControlEnabled: publishing needs a JWT stream token (HS256)."""
    play_jwt_control: bool = False
    """playJwtControlEnabled: playing needs a JWT stream token."""
    jwt_stream_secret_key: str = ""
    """jwtStreamSecretKey: the HS256 key of the app's JWT stream tokens (32+ characters)."""
    publish_token_control: bool = False
    """publishTokenControlEnabled: publishing needs a one-time token (REST ``.../token``)."""
    play_token_control: bool = False
    """playTokenControlEnabled: playing needs a one-time token."""
    webhook_authenticate_url: str = ""
    """webhookAuthenticateURL: a publish is allowed only when this URL answers 200."""
    webhook_timeout_s: float = 2.0
    """webhookAuthenticateTimeoutMs (ours): no answer within this time refuses the publish."""


SETTINGS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "publishJwtControlEnabled": ("publish_jwt_control", _boolean),
    "playJwtControlEnabled": ("play_jwt_control", _boolean),
    "jwtStreamSecretKey": ("jwt_stream_secret_key", _secret),
    "publishTokenControlEnabled": ("publish_token_control", _boolean),
    "playTokenControlEnabled": ("play_token_control", _boolean),
    "webhookAuthenticateURL": ("webhook_authenticate_url", _url),
    "webhookAuthenticateTimeoutMs": ("webhook_timeout_s", _timeout_ms),
}
"""Ant Media's setting name → the ``AppSettings`` field and its parser."""

assert {field for field, _ in SETTINGS.values()} == {f.name for f in fields(AppSettings)}


def is_app_key(name: str) -> bool:
    return APP_KEY.fullmatch(name) is not None


def app_settings(written: Mapping[str, str]) -> dict[str, AppSettings]:
    """Every app section of the file; ``ConfigError`` naming the first bad key."""
    values: dict[str, dict[str, Any]] = {}
    for name, raw in written.items():
        match = APP_KEY.fullmatch(name)
        if match is None:
            continue
        app, setting = match.groups()
        try:
            parse_app_name(app)
        except ValueError as error:
            raise ConfigError(name, f"{app!r}: {error}") from None
        if setting not in SETTINGS:
            raise ConfigError(name, f"unknown app setting; known: {', '.join(SETTINGS)}")
        field, parse = SETTINGS[setting]
        try:
            values.setdefault(app, {})[field] = parse(raw)
        except ValueError as error:
            raise ConfigError(name, str(error)) from None
    apps = {app: AppSettings(**fields_) for app, fields_ in values.items()}
    for app, settings in apps.items():
        jwt = settings.publish_jwt_control or settings.play_jwt_control
        if jwt and not settings.jwt_stream_secret_key:
            raise ConfigError(
                f"app.{app}.jwtStreamSecretKey", "is required when JWT control is enabled"
            )
    return apps
