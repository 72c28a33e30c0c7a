"""Nothing personal or secret in any output: keys are scrubbed however they are
encoded, and response bodies never reach an error, its text, or a log line."""

from __future__ import annotations

import io
import json
import logging
import re
from urllib.parse import unquote

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from retention.api.errors import ApiError, RetriesExhausted
from retention.log import (
    REDACTED,
    configure,
    get_logger,
    redact_processor,
    register_secret,
    scrub_text,
)
from tests.api.scripted import KEY, Answer, Scripted, in_process

KEY_TAIL = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-",
    min_size=8,
    max_size=40,
)
ENCODINGS = ("raw", "json", "JSON", "percent", "PERCENT", "html")


def encode(char: str, how: str) -> str:
    """One character written one way; an independent encoder for the tests."""
    code = ord(char)
    return {
        "raw": char,
        "json": f"\\u{code:04x}",
        "JSON": f"\\u{code:04X}",
        "percent": f"%{code:02x}",
        "PERCENT": f"%{code:02X}",
        "html": f"&#{code};",
    }[how]


def fully_decoded(text: str) -> str:
    """Every escape of `encode` undone, repeatedly: what a reader could recover."""
    for _ in range(5):
        text = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)
        text = re.sub(r"&#([0-9]+);", lambda m: chr(int(m.group(1))), text)
        text = unquote(text)
    return text


@st.composite
def encoded_keys(draw: st.DrawFn) -> tuple[str, str]:
    key = "sk_car_" + draw(KEY_TAIL)
    ways = draw(st.lists(st.sampled_from(ENCODINGS), min_size=len(key), max_size=len(key)))
    return key, "".join(encode(ch, how) for ch, how in zip(key, ways, strict=True))


CONTEXT = st.sampled_from(
    ["{}", '{{"detail": "{}"}}', "key={}&x=1", "Authorization: {}", "a {} b", "'{}'", "x{}y"]
)


@given(encoded_keys(), CONTEXT)
def test_a_key_in_any_per_character_encoding_is_not_recoverable(
    key_and_form: tuple[str, str], context: str
) -> None:
    key, form = key_and_form
    scrubbed = scrub_text(context.format(form))
    assert key[7:] not in fully_decoded(scrubbed)
    assert REDACTED in scrubbed


@given(encoded_keys())
def test_the_redaction_processor_scrubs_encoded_keys_in_every_value(
    key_and_form: tuple[str, str],
) -> None:
    key, form = key_and_form
    event = {"event": f"saw {form}", "nested": {"deep": [f"x {form}"]}, "error": ValueError(form)}
    rendered = json.dumps(redact_processor(None, "info", event), default=str)
    assert key[7:] not in fully_decoded(rendered)


@given(KEY_TAIL)
def test_a_registered_key_of_any_shape_is_scrubbed_encoded_too(tail: str) -> None:
    secret = "custom-" + tail
    register_secret(secret)
    form = "".join(encode(ch, "percent") for ch in secret)
    assert tail not in fully_decoded(scrub_text(f"key {secret} and {form}"))


def test_plain_text_is_left_alone() -> None:
    for text in ("GET /agents: HTTP 503", "100% done", r"C:\path\file", "a & b; &#no;"):
        assert scrub_text(text) == text


# Long, distinctive values: a short one (say "4111") turns up inside timestamps.
PERSONAL = "Jane Doe +15551234567 said her card is 4111-1111-1111-1111"
HOSTILE_BODY = json.dumps(
    {
        "error_code": "server_error",
        "request_id": "req_abc123",
        "message": PERSONAL,
        "echo": {"authorization": f"Bearer {KEY}", "transcript": PERSONAL},
    }
).encode()


@pytest.mark.anyio
@pytest.mark.parametrize("status", [400, 404, 409, 500, 503, 301])
async def test_an_error_body_never_reaches_an_error_or_a_log_line(status: int) -> None:
    app = Scripted(lambda _request: Answer(status, HOSTILE_BODY))
    stream = io.StringIO()
    configure(json_lines=True, level=logging.DEBUG, stream=stream)
    try:
        with pytest.raises(ApiError) as caught:
            async with in_process(app) as client:
                await client.delete_call("call_1")
        err = caught.value
        get_logger("test").error("delete.failed", error=err, text=str(err))
    finally:
        structlog.reset_defaults()
    cause = err.cause if isinstance(err, RetriesExhausted) else err
    assert cause.status == status
    assert (err.error_code, err.request_id) == ("server_error", "req_abc123")
    assert "request_id=req_abc123" in str(err)
    for text in (str(err), repr(err), repr(vars(err)), stream.getvalue()):
        for secret in ("Jane", "15551234567", "4111-1111", KEY, "Bearer"):
            assert secret not in text
