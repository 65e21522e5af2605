"""schemathesis against the node's own ``/openapi.json``: every operation, valid and invalid input.

Each operation of the document gets a bounded number of generated requests
(with the admin token, so admin operations are reached past their auth), and
every response must hold to what the document says of it (``CHECKS``): no 5xx,
a documented status, content type, headers and body. A settings change the
generator made is undone at once. The dashboard's feed is left out: an event
stream never ends.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import given, note
from schemathesis import BaseSchema, Case, GenerationMode, SerializationContext
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Err
from schemathesis.openapi import from_url

from tests.support.fuzz import REPLY_TIMEOUT_S, assert_clean_log, budget
from tests.support.nodes import ADMIN_TOKEN, NodeProcess

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
"""What every response must hold to. Left out: whether input the document calls valid is
accepted (a schema cannot say "a time in the future", a one-time token's ``expireDate``) and
whether input it calls invalid is refused with one of schemathesis' statuses (the node ignores
query parameters it does not know, and answers a body over its limit 413)."""
SETTINGS_PATHS = ("/rest/changeServerSettings", "/rest/v2/server-settings")


@schemathesis.serializer("application/sdp", "application/trickle-ice-sdpfrag")
def _text(context: SerializationContext, value: Any) -> bytes:
    """SDP and trickle fragments are text; the generator makes strings for them."""
    return str(value).encode()


@pytest.fixture(scope="module")
def node_schema(fuzz_node: NodeProcess) -> BaseSchema:
    return from_url(fuzz_node.url + "/openapi.json")


@pytest.fixture(scope="module")
def writable(http: httpx.Client) -> dict[str, Any]:
    current = http.get("/rest/v2/server-settings").json()
    return {field: current[field] for field in ("nodeGroup", "logLevel", "cpuLimit")}


def test_every_operation_answers_as_its_document_says(
    node_schema: BaseSchema, http: httpx.Client, writable: dict[str, Any], fuzz_node: NodeProcess
) -> None:
    """Valid and invalid input for each operation (schemathesis' pytest plugin does not run on
    this pytest, so its strategies are driven by hypothesis here, one operation after another)."""
    checked = []
    for found in node_schema.get_all_operations():
        if isinstance(found, Err):
            pytest.fail(f"/openapi.json has an operation schemathesis cannot read: {found.err()}")
        operation = found.ok()
        if operation.path == "/dashboard/events":
            continue
        takes_input = any(operation.iter_parameters()) or bool(
            operation.get_request_payload_content_types()
        )
        modes = [GenerationMode.POSITIVE] + [GenerationMode.NEGATIVE] * takes_input
        for mode in modes:

            @budget(3)
            @given(operation.as_strategy(generation_mode=mode))
            def check(case: Case[Any]) -> None:
                response = case.call(headers=ADMIN, timeout=REPLY_TIMEOUT_S)
                changing = case.path in SETTINGS_PATHS and case.method in ("POST", "PUT")
                if changing and response.status_code == 200:
                    undone = http.post(case.path, json=writable, headers=ADMIN)
                    assert undone.status_code == 200, undone.text
                note(f"{case.method} {case.formatted_path} {case.query} {case.body!r:.300}")
                note(f"-> {response.status_code} {response.text[:300]}")
                case.validate_response(response, checks=CHECKS)

            check()
        checked.append(operation.label)
    assert len(checked) >= 20, checked
    assert_clean_log(fuzz_node)
