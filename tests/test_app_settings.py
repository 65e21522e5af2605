"""Per-app stream security settings: ``app.<AppName>.<setting>`` keys, checked at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.app_settings import AppSettings
from cluster.errors import ConfigError
from cluster.settings import load_settings

KEY = "x" * 32


def _load(tmp_path: Path, text: str) -> dict[str, AppSettings]:
    path = tmp_path / "red5.properties"
    path.write_text(text, encoding="utf-8")
    return dict(load_settings(path, {}).apps)


def test_each_app_section_becomes_its_settings_and_others_stay_open(tmp_path: Path) -> None:
    apps = _load(
        tmp_path,
        f"app.LiveApp.publishJwtControlEnabled=true\napp.LiveApp.jwtStreamSecretKey={KEY}\n"
        "app.Other.playTokenControlEnabled=TRUE\n"
        "app.Other.webhookAuthenticateURL=https://auth.example.com/hook\n"
        "app.Other.webhookAuthenticateTimeoutMs=750\n",
    )
    assert apps == {
        "LiveApp": AppSettings(publish_jwt_control=True, jwt_stream_secret_key=KEY),
        "Other": AppSettings(
            play_token_control=True,
            webhook_authenticate_url="https://auth.example.com/hook",
            webhook_timeout_s=0.75,
        ),
    }


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("app.LiveApp.playJwtControlEnabled=yes\n", "app.LiveApp.playJwtControlEnabled",
         "not true or false"),
        ("app.LiveApp.playJwtControlEnabled=true\n", "app.LiveApp.jwtStreamSecretKey",
         "required"),
        ("app.LiveApp.jwtStreamSecretKey=short\n", "app.LiveApp.jwtStreamSecretKey",
         "at least 32"),
        ("app.LiveApp.tokenControl=true\n", "app.LiveApp.tokenControl", "unknown app setting"),
        ("app.Bad!App.playTokenControlEnabled=true\n", "app.Bad!App.playTokenControlEnabled",
         "an app name is"),
        ("app.LiveApp.webhookAuthenticateURL=ftp://x\n", "app.LiveApp.webhookAuthenticateURL",
         "not an http(s) URL"),
        ("app.LiveApp.webhookAuthenticateTimeoutMs=0\n",
         "app.LiveApp.webhookAuthenticateTimeoutMs", "outside"),
    ],
    ids=[
        "a flag that is not true or false",
        "JWT control without its key",
        "a key too short for HS256",
        "a setting Ant Media does not have",
        "a section for an invalid app name",
        "a webhook that is not http(s)",
        "a webhook timeout out of range",
    ],
)  # fmt: skip
def test_a_bad_app_setting_stops_start_up_naming_the_key(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    assert caught.value.key == key
    assert reason in caught.value.reason
