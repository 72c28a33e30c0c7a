"""What the client refuses before it ever opens a connection: unsafe URLs and missing keys."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from retention.api.client import CartesiaClient
from retention.errors import ExitCode, InsecureBaseURL, MissingAPIKey, UserError
from retention.settings import check_base_url, is_loopback_host

KEY = "sk_car_configtestsecret123"


@pytest.mark.parametrize(
    "url",
    [
        "https://api.cartesia.ai",
        "https://proxy.example.com/cartesia",
        "http://127.0.0.1:8765",
        "http://127.9.9.9",
        "http://localhost:8000",
        "http://LOCALHOST",
        "http://[::1]:8765",
    ],
)
def test_https_anywhere_and_http_to_loopback_are_accepted(url: str) -> None:
    assert check_base_url(url).scheme in ("http", "https")


@pytest.mark.parametrize(
    "url",
    [
        "http://api.cartesia.ai",
        "http://10.0.0.8:8765",
        "http://0.0.0.0:8765",
        "http://[::2]",
        "http://localhost.example.com",
        "http://128.0.0.1",
    ],
)
def test_plain_http_to_any_other_host_is_refused(url: str) -> None:
    with pytest.raises(InsecureBaseURL, match="not loopback") as caught:
        CartesiaClient(base_url=url, api_key=KEY)
    assert isinstance(caught.value, UserError)
    assert caught.value.exit_code == ExitCode.BAD_INPUT


@pytest.mark.parametrize(
    "url",
    ["", "api.cartesia.ai", "ftp://api.cartesia.ai", "https://", "https://a b", "https://x/?q=1"],
)
def test_malformed_base_urls_are_refused(url: str) -> None:
    with pytest.raises(InsecureBaseURL):
        CartesiaClient(base_url=url, api_key=KEY)


def test_credentials_in_the_url_are_refused_and_not_echoed() -> None:
    with pytest.raises(InsecureBaseURL) as caught:
        check_base_url("https://user:hunter2@api.cartesia.ai")
    assert "hunter2" not in str(caught.value)


def test_loopback_hosts() -> None:
    assert is_loopback_host("127.0.0.1") and is_loopback_host("::1")
    assert is_loopback_host("localhost")
    assert not is_loopback_host("example.com") and not is_loopback_host("192.168.1.1")


@pytest.mark.parametrize("key", ["", "   ", "\n"])
def test_a_missing_or_blank_key_is_a_user_error(key: str) -> None:
    with pytest.raises(MissingAPIKey, match="no API key") as caught:
        CartesiaClient(base_url="https://api.cartesia.ai", api_key=key)
    assert caught.value.exit_code == ExitCode.BAD_INPUT


def test_a_key_with_inner_spaces_is_refused_without_echoing_it() -> None:
    with pytest.raises(MissingAPIKey) as caught:
        CartesiaClient(base_url="https://api.cartesia.ai", api_key="sk_car_abc def")
    assert "abc" not in str(caught.value)


def test_a_key_read_from_a_file_may_end_with_a_newline() -> None:
    client = CartesiaClient(base_url="https://api.cartesia.ai", api_key=KEY + "\n")
    assert KEY not in repr(client) and KEY not in str(vars(client).get("base_url"))


API = "https://api.cartesia.ai"
PROXY_CASES = [
    # (environment, base URL, the variable named in a warning, or None)
    (
        {"HTTPS_PROXY": "http://user:s3cret-pass@proxy.corp:3128"},
        "https://api.cartesia.ai",
        "HTTPS_PROXY",
    ),
    ({"https_proxy": "http://proxy.corp:3128"}, "https://api.cartesia.ai", "https_proxy"),
    ({"ALL_PROXY": "socks5://proxy.corp:1080"}, "https://api.cartesia.ai", "ALL_PROXY"),
    ({"HTTP_PROXY": "http://proxy.corp:3128"}, "https://api.cartesia.ai", None),  # not https's
    (
        {"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": "cartesia.ai"},
        "https://api.cartesia.ai",
        None,
    ),
    ({"HTTPS_PROXY": "http://proxy.corp:3128", "no_proxy": "*"}, "https://api.cartesia.ai", None),
    ({"HTTP_PROXY": "http://proxy.corp:3128"}, "http://127.0.0.1:8765", None),  # loopback
    ({}, "https://api.cartesia.ai", None),
]


@pytest.mark.parametrize(("environment", "base_url", "named"), PROXY_CASES)
def test_a_proxy_the_environment_sets_is_named_not_used(
    monkeypatch: pytest.MonkeyPatch,
    environment: dict[str, str],
    base_url: str,
    named: str | None,
) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with capture_logs() as logs:
        CartesiaClient(base_url=base_url, api_key="sk_car_test")
    warnings = [entry for entry in logs if entry["event"] == "api.proxy_ignored"]
    if named is None:
        assert warnings == []
    else:
        [warning] = warnings
        assert warning["variable"] == named and warning["log_level"] == "warning"
        # Only the name: a proxy URL may carry credentials.
        assert not any(value in repr(logs) for value in environment.values())
