"""What goes on the wire: the requests the client builds once per request, outside
httpx.AsyncClient, carry what the API expects and honour a base URL's path."""

from __future__ import annotations

import httpx
import pytest

from retention import __version__
from retention.api.client import CartesiaClient
from retention.api.models import API_VERSION
from tests.api.conftest import FAST_RETRY

KEY = "sk_car_requeststestkey42"


@pytest.mark.anyio
async def test_headers_path_prefix_and_query_are_those_the_api_expects() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/agents"):
            return httpx.Response(200, json={"summaries": []})
        return httpx.Response(200, json={"data": [], "next_page": None})

    async with CartesiaClient(
        base_url="https://proxy.example.com/cartesia/",
        api_key=KEY,
        retry=FAST_RETRY,
        transport=httpx.MockTransport(answer),
    ) as client:
        assert await client.list_agents() == []
        assert [c async for c in client.iter_calls("agent:a.b-1", page_size=7)] == []

    agents, listing = seen
    assert str(agents.url) == "https://proxy.example.com/cartesia/agents"
    assert listing.url.path == "/cartesia/agents/calls"
    assert dict(listing.url.params) == {"agent_id": "agent:a.b-1", "limit": "7"}
    for request in seen:
        assert request.method == "GET"
        assert request.headers["Host"] == "proxy.example.com"
        assert request.headers["Authorization"] == f"Bearer {KEY}"
        assert request.headers["Cartesia-Version"] == API_VERSION
        assert request.headers["Accept"] == "application/json"
        assert request.headers["User-Agent"] == f"cartesia-retention/{__version__}"
        assert "Cookie" not in request.headers
