"""Error texts: status, route and a short, scrubbed excerpt of the body; never a secret."""

from __future__ import annotations

from retention.api.errors import (
    BODY_EXCERPT_CHARS,
    ApiError,
    Rejected,
    RetriesExhausted,
    Unavailable,
    excerpt,
)


def test_message_has_method_route_status_and_body() -> None:
    err = Rejected(409, '{"error":"conflict"}', method="DELETE", route="/agents/calls/{call_id}")
    assert str(err) == 'DELETE /agents/calls/{call_id}: HTTP 409: {"error":"conflict"}'
    assert isinstance(err, ApiError) and err.status == 409


def test_long_bodies_are_trimmed_to_one_short_line() -> None:
    err = ApiError(500, "line\n" * 500)
    assert len(err.body) == BODY_EXCERPT_CHARS and "\n" not in str(err)


def test_key_like_text_in_a_body_is_blanked() -> None:
    body = '{"detail":"key sk_car_Leaked123 rejected","auth":"Bearer abc.def"}'
    err = ApiError(401, body)
    for text in (str(err), repr(err), err.body):
        assert "sk_car_Leaked123" not in text and "abc.def" not in text


def test_a_known_secret_is_blanked_whatever_its_shape() -> None:
    assert "hunter2" not in excerpt("your key hunter2 is wrong", secret="hunter2")


def test_retries_exhausted_keeps_the_last_cause() -> None:
    cause = Unavailable(503, "busy", method="GET", route="/agents")
    err = RetriesExhausted(cause, attempts=5)
    assert err.cause is cause and err.status == 503 and err.attempts == 5
    assert str(err).startswith("GET /agents: HTTP 503: gave up after 5 attempts")
