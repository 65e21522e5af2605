"""REST bodies and every path and query parameter, fuzzed against the real node process.

The operations and their parameters come from the node's own ``/openapi.json``,
so a route added later is fuzzed without a change here. Every request gets a
success or a 4xx with a message; a settings change the fuzzing made is undone
at once, and the settings are the same at the end as at the start.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import LIVE_STREAM
from tests.support.fuzz import (
    HOSTILE_TEXT,
    JSON,
    NUMBERS,
    assert_clean_log,
    assert_clear_reply,
    budget,
    dumps,
)
from tests.support.nodes import ADMIN_TOKEN, NodeProcess

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WRITABLE = ("nodeGroup", "logLevel", "cpuLimit")
SETTINGS_VALUES = st.one_of(
    JSON,
    NUMBERS,
    HOSTILE_TEXT,
    st.sampled_from(["eu", "us", " eu ", "DEBUG", "INFO", "WARN", "ERROR", "info", "10", "100"]),
    st.integers(-1000, 1000),
)


def settings_bodies(current: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """Change requests as Ant Media's panel and a hostile client send them, and raw bytes."""
    fields = st.sampled_from([*current, "unknown", ""])
    objects = st.dictionaries(fields, SETTINGS_VALUES, max_size=5)
    resent = st.builds(lambda extra: {**current, **extra}, objects)
    return st.one_of(
        objects.map(dumps).map(str.encode),
        resent.map(dumps).map(str.encode),
        JSON.map(dumps).map(str.encode),
        st.binary(max_size=200),
    )


def test_settings_changes_are_applied_or_refused_clearly(
    fuzz_node: NodeProcess, http: httpx.Client
) -> None:
    before = http.get("/rest/v2/server-settings").json()
    writable = {field: before[field] for field in WRITABLE}

    @budget(60)
    @given(
        settings_bodies(before),
        st.sampled_from(["/rest/changeServerSettings", "/rest/v2/server-settings"]),
        st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain"]),
    )
    def check(body: bytes, path: str, content_type: str) -> None:
        headers = ADMIN | {"Content-Type": content_type}
        reply = http.post(path, content=body, headers=headers)
        assert_clear_reply(reply, f"POST {path} {body[:200]!r}")
        if reply.status_code == 200 and reply.json()["message"].startswith("changed"):
            undone = http.post(path, json=writable, headers=ADMIN)
            assert undone.status_code == 200, undone.text

    check()
    assert http.get("/rest/v2/server-settings").json() == before
    assert_clean_log(fuzz_node)


def operations(document: dict[str, Any]) -> list[tuple[str, str, list[str], list[str]]]:
    """(method, path template, path parameters, query parameters) of every operation with
    parameters, but the dashboard's feed (an event stream never ends: nothing to wait for)."""
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if "text/event-stream" in operation["responses"].get("200", {}).get("content", {}):
                continue
            declared = [
                document["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]]
                if "$ref" in p
                else p
                for p in operation.get("parameters", [])
            ]
            query = [p["name"] for p in declared if p["in"] == "query"]
            in_path = re.findall(r"{(\w+)}", path)
            if in_path or query:
                found.append((method.upper(), path, in_path, query))
    return found


SEGMENTS = st.one_of(
    st.sampled_from(["LiveApp", LIVE_STREAM, "whip", "whep", "0", "10", "1000", "x" * 129]),
    st.sampled_from(["", ".", "..", "%", "%00", "a b", "é", "\x00", "-", "_"]),
    NUMBERS,
    HOSTILE_TEXT,
)
BODIES = {
    "POST": (b"v=0\r\n", "application/sdp"),
    "PATCH": (b"a=end-of-candidates\r\n", "application/trickle-ice-sdpfrag"),
    "PUT": (b"{}", "application/json"),
}


def test_every_path_and_query_parameter_is_checked(
    fuzz_node: NodeProcess, http: httpx.Client, live: object
) -> None:
    document = http.get("/openapi.json").json()
    choices = operations(document)
    assert len(choices) >= 12, "the document lists the parameterised operations"

    @budget(80)
    @given(st.sampled_from(choices), st.data())
    def check(operation: tuple[str, str, list[str], list[str]], data: st.DataObject) -> None:
        method, template, in_path, query = operation
        path = template
        for name in in_path:
            path = path.replace("{" + name + "}", quote(data.draw(SEGMENTS, name), safe=""))
        params = {name: data.draw(SEGMENTS, name) for name in query}
        body, content_type = BODIES.get(method, (b"", "application/json"))
        if method == "POST" and "server-settings" in path:
            body, content_type = b"{}", "application/json"
        reply = http.request(
            method,
            fuzz_node.url + path,  # absolute: a relative path may not start with "//"
            params=params,
            content=body or None,
            headers=ADMIN | {"Content-Type": content_type},
        )
        assert_clear_reply(reply, f"{method} {path} {params}")
        assert reply.status_code != 201, f"{method} {path}: an offer of a bare v=0 accepted"

    check()
    assert_clean_log(fuzz_node)
