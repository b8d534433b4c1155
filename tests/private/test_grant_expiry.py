"""A private stream ends when its grant does (issue 20 hole 2), through HTTP.

A grant valid until ``exp`` (+ ``LEEWAY`` of clock skew) opened a stream that kept receiving
for as long as the connection lasted. Now the stream ends at ``exp`` + leeway with a clean end
of its response (as Mercure does): the browser reconnects, with a fresh grant or ticket, and
resumes with ``Last-Event-ID``. The grants here expired ``LEEWAY - 2`` seconds ago, so they are
still accepted and their streams end about two seconds later.
"""

from __future__ import annotations

import time

import pytest

from hub.grants import LEEWAY
from tests.conftest import HubServer
from tests.private.test_private import AUTH, bearer, grant, private, refusal

__all__ = ["private"]  # the fixture, shared with tests/private/test_private.py

PATH = "/channels/user/42/events"


def _short_grant() -> str:
    return grant(["user/*"], exp=int(time.time()) - LEEWAY + 2)


@pytest.mark.any_backplane  # the deadline is the core's, whatever carries the events
async def test_stream_ends_cleanly_when_its_grant_expires(private: HubServer) -> None:
    token = _short_grant()
    short = await private.subscribe(PATH, bearer(token))
    long = await private.subscribe(PATH, bearer(grant(["user/*"])))
    public = await private.subscribe("/channels/news/events")
    before = await private.publish("user/42", "before", headers=AUTH)
    assert (await short.next()).data == "before"
    assert (await long.next()).data == "before"
    # the short grant's stream reaches the end of its response: no error, nothing more
    assert await short.until_end(timeout=10) == []
    after = await private.publish("user/42", "after", headers=AUTH)
    news = await private.publish("news", "still here", headers=AUTH)
    # the others carry on: a longer grant, and a public stream (no deadline at all)
    assert (await long.next()).id == after["id"]
    assert (await public.next()).id == news["id"]
    # the browser reconnects: the expired grant is refused, a fresh one resumes exactly
    status, body = await refusal(private, PATH, bearer(token))
    assert status == 403 and "expired" in body["error"], body
    resumed = await private.subscribe(
        PATH, {**bearer(grant(["user/*"])), "Last-Event-ID": before["id"]}
    )
    assert (await resumed.next()).id == after["id"]


@pytest.mark.any_backplane
async def test_streams_end_in_the_order_of_their_grants(private: HubServer) -> None:
    """One timer serves every deadline: a later grant's stream outlives an earlier one's,
    which may have been opened after it."""
    later = await private.subscribe(PATH, bearer(grant(["user/*"], exp=int(time.time()) - 25)))
    sooner = await private.subscribe(PATH, bearer(_short_grant()))
    assert await sooner.until_end(timeout=10) == []
    receipt = await private.publish("user/42", "later is still open", headers=AUTH)
    assert (await later.next()).id == receipt["id"]
    assert await later.until_end(timeout=10) == []
