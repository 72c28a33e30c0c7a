"""Where the API key, base URL and --now come from; messages never carry the key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from retention.errors import UserError
from retention.settings import DEFAULT_BASE_URL, parse_now, resolve_api_key, resolve_base_url


def test_key_file_is_stripped_and_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARTESIA_API_KEY", "sk_car_from_env")
    secret = tmp_path / "key"
    secret.write_text("  sk_car_from_file\n")
    assert resolve_api_key(secret) == "sk_car_from_file"
    assert resolve_api_key(None) == "sk_car_from_env"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read: No such file or directory"),
        ("  \n", "the file is empty"),
        (b"\xff\xfe", "not UTF-8 text"),
    ],
)
def test_bad_key_files_name_the_file(
    tmp_path: Path, content: str | bytes | None, message: str
) -> None:
    secret = tmp_path / "key"
    if isinstance(content, bytes):
        secret.write_bytes(content)
    elif content is not None:
        secret.write_text(content)
    with pytest.raises(UserError) as caught:
        resolve_api_key(secret)
    assert str(caught.value) == f"--api-key-file {secret}: {message}"
    assert caught.value.exit_code == 2


def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTESIA_API_KEY", "   ")
    with pytest.raises(UserError, match="set CARTESIA_API_KEY or pass --api-key-file"):
        resolve_api_key(None)


def test_base_url_from_flag_then_environment_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARTESIA_BASE_URL", raising=False)
    assert resolve_base_url(None) == DEFAULT_BASE_URL == "https://api.cartesia.ai"
    monkeypatch.setenv("CARTESIA_BASE_URL", "http://127.0.0.1:8765")
    assert resolve_base_url(None) == "http://127.0.0.1:8765"
    assert resolve_base_url("https://example.test") == "https://example.test"


def test_now_is_rfc_3339() -> None:
    assert parse_now("2026-03-01T00:00:00Z") == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_now("2026-03-01T02:00:00+02:00") == datetime(
        2026, 3, 1, 2, tzinfo=timezone(timedelta(hours=2))
    )
    assert parse_now("2026-03-01T00:00:00").tzinfo == UTC
    with pytest.raises(UserError, match="--now: `yesterday` is not an RFC 3339 time"):
        parse_now("yesterday")
