"""Error texts: method, route, status and the API's error_code/request_id; no body."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from retention.api.errors import (
    ApiError,
    InvalidId,
    Rejected,
    RetriesExhausted,
    Unavailable,
    error_identity,
    plain_token,
)


def test_message_has_method_route_status_and_the_apis_ids() -> None:
    err = Rejected(
        409,
        method="DELETE",
        route="/agents/calls/{call_id}",
        error_code="call_not_terminal",
        request_id="req_01H:abc.9-x",
    )
    assert str(err) == (
        "DELETE /agents/calls/{call_id}: HTTP 409 "
        "(error_code=call_not_terminal, request_id=req_01H:abc.9-x)"
    )
    assert isinstance(err, ApiError) and err.status == 409
    assert not hasattr(err, "body")


def test_an_error_body_gives_only_its_error_code_and_request_id() -> None:
    body = {
        "error_code": "concurrency_limited",
        "request_id": "req_123abc",
        "message": "call with +15551234567 about Jane Doe",
        "detail": {"transcript": "secret words"},
    }
    assert error_identity(json.dumps(body).encode()) == ("concurrency_limited", "req_123abc")


def test_bodies_without_plain_ids_give_nothing() -> None:
    for body in (
        b"",
        b"not json at all +15551234567",
        b"[1, 2]",
        b'"just a string"',
        b'{"error": "conflict", "message": "Jane Doe"}',
        b'{"error_code": 5, "request_id": ["req_1"]}',
        b'{"error_code": "has space", "request_id": "15551234567"}',
        b'{"error_code": "sk_car_LeakedKey123", "request_id": "x/y"}',
        b'{"error_code": "' + b"a" * 65 + b'"}',
        b"\xff\xfe",
    ):
        assert error_identity(body) == (None, None)


@given(st.text(max_size=80))
def test_a_token_is_kept_only_when_short_plain_and_not_a_number_or_key(value: str) -> None:
    kept = plain_token(value)
    plain = (
        0 < len(value) <= 64
        and all(ch.isascii() and (ch.isalnum() or ch in "_.:-") for ch in value)
        and any(ch.isascii() and ch.isalpha() for ch in value)
        and "sk_car" not in value.lower()
    )
    assert kept == (value if plain else None)


def test_ids_given_to_an_error_are_vetted_too() -> None:
    err = ApiError(500, method="GET", route="/agents", error_code="+1 555 123", request_id="ok_1")
    assert err.error_code is None and err.request_id == "ok_1"
    assert "555" not in str(err)


def test_retries_exhausted_keeps_the_last_cause_and_its_ids() -> None:
    cause = Unavailable(503, method="GET", route="/agents", request_id="req_9", resent=True)
    err = RetriesExhausted(cause, attempts=5)
    assert err.cause is cause and err.status == 503 and err.attempts == 5
    assert err.request_id == "req_9" and err.may_have_taken_effect
    assert str(err) == (
        "GET /agents: HTTP 503 (gave up after 5 attempts, last Unavailable, request_id=req_9)"
    )
    spent = RetriesExhausted(cause, attempts=2, budget_spent=True)
    assert spent.budget_spent and "time budget spent" in str(spent)


def test_may_have_taken_effect_includes_earlier_attempts() -> None:
    assert not ApiError(404).may_have_taken_effect
    assert ApiError(404, resent=True).may_have_taken_effect
    assert ApiError(500, may_have_taken_effect=True).may_have_taken_effect


def test_an_invalid_id_error_names_the_problem_not_the_id() -> None:
    err = InvalidId("contains characters that are not allowed", method="GET", route="/x/{id}")
    assert err.attempts == 0 and not err.may_have_taken_effect and err.status is None
    assert (
        str(err) == "GET /x/{id}: not sent (invalid id: contains characters that are not allowed)"
    )
