"""``python -m hub close CHANNEL``: ``POST /channels/{name}/close`` from the command line, with the
token of ``--token`` or ``$SSEHUB_TOKEN``, against a real ``python -m hub serve``."""

from __future__ import annotations

import sys
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.support.processes import HubProcess, clean_env, run_to_end
from tests.support.sse_client import open_stream

TOKEN = "cli-close-token-0123456789"

pytestmark = pytest.mark.any_backplane  # the CLI's own behaviour; closing is tested elsewhere


async def _cli(*args: str, **env: str) -> tuple[int, str, str]:
    return await run_to_end(sys.executable, "-m", "hub", *args, env=clean_env(**env))


async def test_close_ends_the_channels_streams_and_its_publishes(tmp_path: Path) -> None:
    """Without a token: 401, exit 1. With it: the JSON answer, exit 0; a live stream on the
    channel gets ``event: close`` and ends; a publish after it is refused (409, exit 1); a
    second close says ``already_closed``."""
    hub = await HubProcess.spawn(
        "--port", "0", env={"HUB_HOST": "127.0.0.1", "HUB_PUBLISH_TOKENS": TOKEN}, cwd=tmp_path
    )
    try:
        await hub.started()
        async with aiohttp.ClientSession() as session:
            stream = await open_stream(session, f"{hub.url}/channels/jobs/7/events")
            code, _, err = await _cli("close", "jobs/7", "--url", hub.url)
            assert code == 1 and "401" in err, err
            code, out, err = await _cli("close", "jobs/7", "--url", hub.url, "--token", TOKEN)
            assert code == 0, err
            assert orjson.loads(out) == {
                "channel": "jobs/7",
                "already_closed": False,
                "subscribers": 1,
            }
            ended = await stream.until_end(timeout=5)
            assert [m.event for m in ended] == ["close"]
            await stream.close()
        code, _, err = await _cli("publish", "jobs/7", "x", "--url", hub.url, "--token", TOKEN)
        assert code == 1 and "409" in err, err
        code, out, _ = await _cli("close", "jobs/7", "--url", hub.url, SSEHUB_TOKEN=TOKEN)
        assert code == 0 and orjson.loads(out)["already_closed"] is True
    finally:
        await hub.stop()


async def test_close_names_the_hub_it_cannot_reach() -> None:
    """No hub there: exit 1 and a line saying so (the URL's password, if any, as ``***``)."""
    code, _, err = await _cli("close", "c", "--url", "http://me:pw-123@127.0.0.1:9")
    assert code == 1
    assert "cannot reach http://***@127.0.0.1:9" in err and "pw-123" not in err
