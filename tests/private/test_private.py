"""Private channels through HTTP: grants (header, cookie; HS256, RS256, ES256), one-time tickets,
scoped publish tokens, /channels hiding, and deleting a channel; on every backplane.

Cross-process behaviour (a ticket spent on another process, a deletion reaching every process)
is in tests/private/test_private_cluster.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.conftest import HubServer, MakeHub
from tests.support.helpers import assert_next_is_marker, publish_batch

SECRET = "a-subscribe-secret-of-at-least-32-bytes!"
TOKEN = "publish-token-0123456789"
SCOPED = "scoped-token-0123456789"
PRIVATE = ["private/*", "user/*"]


def grant(channels: Any = ("user/42",), key: Any = SECRET, algorithm: str = "HS256",
          **claims: Any) -> str:  # fmt: skip
    payload: dict[str, Any] = {"exp": int(time.time()) + 300, "sub": "user-42"}
    if channels is not None:
        payload["channels"] = channels if isinstance(channels, str) else list(channels)
    payload |= claims
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, key, algorithm=algorithm)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


AUTH = bearer(TOKEN)


@pytest.fixture
async def private(make_hub: MakeHub) -> HubServer:
    return await make_hub(
        private_channels=PRIVATE,
        subscribe_jwt_secret=SECRET,
        publish_tokens=[TOKEN, {"token": SCOPED, "channels": ["jobs/*", "user/*"]}],
        history_ttl=60,
    )


async def refusal(hub: HubServer, path: str, headers: dict[str, str] | None = None,
                  cookies: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:  # fmt: skip
    """A subscribe that must not open: its status and JSON body."""
    async with hub.session.get(
        f"{hub.url}{path}", headers={"Accept": "text/event-stream", **(headers or {})},
        cookies=cookies,
    ) as response:  # fmt: skip
        assert response.content_type == "application/json", await response.text()
        return response.status, await response.json()


async def ticket(hub: HubServer, channels: list[str], token: str = TOKEN, **body: Any) -> str:
    async with hub.session.post(
        f"{hub.url}/tickets", json={"channels": channels, **body}, headers=bearer(token)
    ) as response:
        answer = await response.json()
        assert response.status == 201, answer
        assert answer["expires_in"] == body.get("ttl", 30)
        assert response.headers["Cache-Control"] == "no-store"
        return str(answer["ticket"])


# -- grants ------------------------------------------------------------------------------------


@pytest.mark.any_backplane("grants are checked by the route; nothing stored")
async def test_public_channels_stay_public(private: HubServer) -> None:
    """A channel outside private_channels needs nothing, as before."""
    stream = await private.subscribe("/channels/news/events")
    await private.publish("news", "hi", headers=AUTH)
    assert (await stream.next()).data == "hi"


@pytest.mark.any_backplane("a refusal by the route, before any backplane call")
async def test_no_grant_is_401(private: HubServer) -> None:
    """A private channel without any grant: 401 naming the channel and the ways in."""
    for path in ("/channels/user/42/events", "/events?channel=news&channel=private/x"):
        status, answer = await refusal(private, path)
        assert status == 401
        assert "is private" in answer["error"] and "ticket" in answer["error"]


@pytest.mark.any_backplane("grants are checked by the route; nothing stored")
async def test_grant_in_header_and_cookie(private: HubServer) -> None:
    """A covering grant opens the stream, sent as a bearer header or in ssehub_grant."""
    token = grant(["user/*"])
    by_header = await private.subscribe("/channels/user/42/events", bearer(token))
    by_cookie = await private.subscribe(
        "/channels/user/42/events", {"Cookie": f"ssehub_grant={token}"}
    )
    await private.publish("user/42", "yours", headers=AUTH)
    assert (await by_header.next()).data == "yours"
    assert (await by_cookie.next()).data == "yours"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (lambda: grant(exp=int(time.time()) - 120), "expired"),
        (lambda: grant(nbf=int(time.time()) + 600), "not valid yet"),
        (lambda: grant(key="another-secret-of-at-least-32-bytes!!"), "signature"),
        (lambda: grant(key=SECRET * 2, algorithm="HS512"), "'HS512' is not accepted"),
        (
            lambda: jwt.encode({"exp": 2**40, "channels": ["*"]}, None, algorithm="none"),
            "'none' is not accepted",
        ),
        (lambda: grant(exp=None), "'exp' claim"),
        (lambda: grant(channels=None), "'channels' claim"),
        (lambda: grant(["user/4*3", "private/*"]), "does not cover channel 'user/42'"),
        (lambda: grant("user/42"), "list of"),
        (lambda: "not.a.jwt", "not a JWT"),
    ],
    ids=[
        "expired",
        "nbf",
        "bad-signature",
        "hs512",
        "alg-none",
        "no-exp",
        "no-channels",
        "not-covering",
        "channels-not-list",
        "garbage",
    ],
)
@pytest.mark.any_backplane("a refusal by the route, before any backplane call")
async def test_invalid_grants_are_403(private: HubServer, token: Any, reason: str) -> None:
    """Every way a grant can be wrong is a 403 whose JSON names the reason, never the token."""
    text = token()
    for headers, cookies in ((bearer(text), None), (None, {"ssehub_grant": text})):
        status, answer = await refusal(private, "/channels/user/42/events", headers, cookies)
        assert status == 403, answer
        assert reason in answer["error"]
        assert text not in answer["error"]


@pytest.mark.any_backplane("grants are checked by the route; nothing stored")
async def test_patterns_star_and_literals(private: HubServer) -> None:
    """``*`` spans slashes; ``?`` and ``[`` are literal characters, not globs."""
    assert await private.subscribe("/channels/user/42/a/b/events", bearer(grant(["user/*"])))
    status, _ = await refusal(private, "/channels/user/42/events", bearer(grant(["user/4?"])))
    assert status == 403
    status, _ = await refusal(private, "/channels/user/42/events", bearer(grant(["user/[4]2"])))
    assert status == 403


@pytest.mark.any_backplane("grants are checked by the route; nothing stored")
async def test_several_channels_need_every_private_one(private: HubServer) -> None:
    """A multi-channel stream needs a grant covering each of its private channels."""
    path = "/events?channel=news&channel=user/42&channel=private/x"
    status, answer = await refusal(private, path, bearer(grant(["user/42"])))
    assert status == 403 and "'private/x'" in answer["error"]
    stream = await private.subscribe(path, bearer(grant(["user/42", "private/*"])))
    await private.publish("private/x", "p", headers=AUTH)
    await private.publish("news", "n", headers=AUTH)
    assert [m.data for m in await stream.take(2)] == ["p", "n"]


def _pem(key: Any, tmp_path: Path, name: str) -> tuple[str, bytes]:
    path = tmp_path / name
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path.write_bytes(pem)
    return str(path), pem


@pytest.mark.parametrize("kind", ["RS256", "ES256"])
@pytest.mark.any_backplane("grants are checked by the route; nothing stored")
async def test_public_key_grants(make_hub: MakeHub, tmp_path: Path, kind: str) -> None:
    """RS256/ES256 with a PEM public key (keys made here); HS256 signed with that public key
    (algorithm confusion) and the other asymmetric algorithm are refused."""
    if kind == "RS256":
        key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        other = ec.generate_private_key(ec.SECP256R1())
        other_alg = "ES256"
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        other_alg = "RS256"
    pem, pem_bytes = _pem(key, tmp_path, "grant.pem")
    hub = await make_hub(private_channels=PRIVATE, subscribe_jwt_public_key=pem)
    stream = await hub.subscribe("/channels/user/42/events", bearer(grant(key=key, algorithm=kind)))
    await hub.publish("user/42", "signed")
    assert (await stream.next()).data == "signed"
    # PyJWT refuses to sign HS256 with a PEM key itself: the forgery is made by hand
    forged = _hmac_token(pem_bytes)
    for bad, reason in (
        (grant(key=other, algorithm=other_alg), f"{other_alg!r} is not accepted"),
        (forged, "'HS256' is not accepted"),
    ):
        status, answer = await refusal(hub, "/channels/user/42/events", bearer(bad))
        assert status == 403 and reason in answer["error"], answer


def _hmac_token(secret: bytes) -> str:
    """HS256 keyed with the PEM public key: the classic algorithm-confusion forgery."""
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"exp": 2**40, "channels": ["*"]}).encode())
    signature = b64(hmac.new(secret, head + b"." + body, hashlib.sha256).digest())
    return (head + b"." + body + b"." + signature).decode()


# -- tickets -----------------------------------------------------------------------------------


async def test_ticket_opens_one_stream_once(private: HubServer, backplane: str) -> None:
    """A ticket opens one stream of the channels it names; spent, it is refused."""
    opaque = await ticket(private, ["user/42", "private/x"])
    path = f"/events?channel=user/42&channel=private/x&channel=news&ticket={opaque}"
    stream = await private.subscribe(path)
    await private.publish("user/42", "one", headers=AUTH)
    assert (await stream.next()).data == "one"
    status, answer = await refusal(private, path)
    assert status == 403 and "spent, expired or unknown" in answer["error"]
    status, answer = await refusal(private, "/channels/user/42/events?ticket=made-up-ticket")
    assert status == 403 and "spent, expired or unknown" in answer["error"]


async def test_ticket_covers_only_its_channels(private: HubServer, backplane: str) -> None:
    opaque = await ticket(private, ["user/42"])
    status, answer = await refusal(private, f"/channels/user/7/events?ticket={opaque}")
    assert status == 403 and "does not cover channel 'user/7'" in answer["error"]


async def test_ticket_expires(private: HubServer, backplane: str) -> None:
    """A ticket unspent past its ttl is refused as a spent one is; one spent in time opens."""
    in_time = await ticket(private, ["user/42"], ttl=1)
    late = await ticket(private, ["user/42"], ttl=1)
    stream = await private.subscribe(f"/channels/user/42/events?ticket={in_time}")
    assert not stream.ended
    await asyncio.sleep(1.3)
    status, answer = await refusal(private, f"/channels/user/42/events?ticket={late}")
    assert status == 403 and "the ticket is spent, expired or unknown" in answer["error"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"channels": ["user/42"], "ttl": 301}, 400, "ttl must be whole seconds from 1 to 300"),
        ({"channels": ["user/42"], "ttl": 0}, 400, "ttl must be"),
        ({"channels": ["user/42"], "ttl": True}, 400, "ttl must be"),
        ({"channels": []}, 400, "channels is required"),
        ({"channels": [7]}, 400, "channels[0] must be a string"),
        ({"channels": ["bad name"]}, 400, "channel"),
        ({"channels": ["x"], "who": 1}, 400, "unknown field 'who'"),
        (["user/42"], 400, "JSON object"),
    ],
)
@pytest.mark.any_backplane("a refusal by the route, before any backplane call")
async def test_ticket_requests_are_checked(
    private: HubServer, body: Any, status: int, message: str
) -> None:
    async with private.session.post(f"{private.url}/tickets", json=body, headers=AUTH) as r:
        answer = await r.json()
        assert r.status == status and message in answer["error"], answer


@pytest.mark.any_backplane
async def test_tickets_need_publish_auth(private: HubServer) -> None:
    async with private.session.post(f"{private.url}/tickets", json={"channels": ["a"]}) as r:
        assert r.status == 401
    async with private.session.post(
        f"{private.url}/tickets", json={"channels": ["private/x"]}, headers=bearer(SCOPED)
    ) as r:
        answer = await r.json()
        assert r.status == 403 and "'private/x'" in answer["error"]
    assert await ticket(private, ["user/1"], token=SCOPED)


# -- scoped publish tokens and /channels -------------------------------------------------------


@pytest.mark.any_backplane("token scopes are checked by the route")
async def test_scoped_token_publishes_inside_only(private: HubServer) -> None:
    """Inside its patterns it publishes; outside: 403 naming the channel; a batch with one
    such item publishes nothing."""
    watcher = await private.subscribe("/events?channel=jobs/1&channel=news")
    await private.publish("jobs/1", "ok", headers=bearer(SCOPED))
    assert (await watcher.next()).data == "ok"
    answer = await private.publish("news", "no", status=403, headers=bearer(SCOPED))
    assert "may not publish to channel 'news'" in answer["error"]
    answer = await publish_batch(
        private, [{"channel": "jobs/1", "data": 1}, {"channel": "news", "data": 2}],
        status=403, headers=bearer(SCOPED),
    )  # fmt: skip
    assert "events[1]: this token may not publish to channel 'news'" in answer["error"]
    await assert_next_is_marker(private, "news", watcher, headers=AUTH)


@pytest.mark.any_backplane
async def test_scoped_token_config_is_checked(make_hub: MakeHub) -> None:
    from hub.config import ConfigError

    for bad in ({"token": SCOPED}, {"token": "short", "channels": ["a"]},
                {"token": SCOPED, "channels": []}, 7):  # fmt: skip
        with pytest.raises(ConfigError, match="publish_tokens"):
            await make_hub(publish_tokens=[bad])
    with pytest.raises(ConfigError, match="subscribe_jwt_secret"):
        await make_hub(subscribe_jwt_secret="too short")


async def test_channel_list_hides_private_channels(private: HubServer, backplane: str) -> None:
    await private.publish("user/42", "x", headers=AUTH)
    await private.publish("news", "x", headers=AUTH)

    async def names(headers: dict[str, str] | None) -> list[str]:
        async with private.session.get(f"{private.url}/channels", headers=headers) as response:
            return [c["name"] for c in await response.json()]

    assert "user/42" not in await names(None)
    assert "news" in await names(None)
    assert {"user/42", "news"} <= set(await names(AUTH))


# -- deleting a channel ------------------------------------------------------------------------


async def test_delete_closes_streams(private: HubServer, backplane: str) -> None:
    """DELETE: every stream gets event: close; one on that channel alone ends, one on several
    channels goes on with the others."""
    alone = await private.subscribe("/channels/jobs/9/events")
    several = await private.subscribe("/events?channel=jobs/9&channel=news")
    await private.publish("jobs/9", "last", headers=AUTH)
    async with private.session.delete(f"{private.url}/channels/jobs/9", headers=AUTH) as r:
        assert r.status == 200
        assert await r.json() == {"channel": "jobs/9", "closed": 2}
    for stream in (alone, several):
        first, close = await stream.take(2)
        assert first.data == "last"
        assert (close.event, close.data) == ("close", '{"channel":"jobs/9"}')
    assert await alone.until_end() == []
    await assert_next_is_marker(private, "news", several, headers=AUTH)


async def test_deleted_channel_afterwards(private: HubServer, backplane: str) -> None:
    """For history_ttl: subscribe to it alone → 204; with live channels → close at once, then
    the live ones; publish → 410; DELETE again → 410; its history is gone."""
    await private.publish("jobs/9", "old", headers=AUTH)
    async with private.session.delete(f"{private.url}/channels/jobs/9", headers=AUTH) as r:
        assert r.status == 200 and (await r.json())["closed"] == 0
    async with private.session.get(f"{private.url}/channels/jobs/9/events?from=start") as r:
        assert r.status == 204
    mixed = await private.subscribe("/events?channel=jobs/9&channel=news&from=start")
    close = await mixed.next()
    assert (close.event, close.data) == ("close", '{"channel":"jobs/9"}')
    await assert_next_is_marker(private, "news", mixed, headers=AUTH)
    answer = await private.publish("jobs/9", "again", status=410, headers=AUTH)
    assert "'jobs/9' was deleted" in answer["error"]
    async with private.session.delete(f"{private.url}/channels/jobs/9", headers=AUTH) as r:
        assert r.status == 410 and "deleted already" in (await r.json())["error"]
    async with private.session.get(f"{private.url}/channels", headers=AUTH) as r:
        assert "jobs/9" not in [c["name"] for c in await r.json()]


async def test_delete_refusals(private: HubServer, backplane: str) -> None:
    async with private.session.delete(f"{private.url}/channels/never/was", headers=AUTH) as r:
        assert r.status == 404 and "no channel 'never/was'" in (await r.json())["error"]
    async with private.session.delete(f"{private.url}/channels/news") as r:
        assert r.status == 401
    async with private.session.delete(f"{private.url}/channels/news", headers=bearer(SCOPED)) as r:
        assert r.status == 403 and "'news'" in (await r.json())["error"]


async def test_delete_a_channel_with_subscribers_but_no_history(
    private: HubServer, backplane: str
) -> None:
    """Subscribers make a channel exist, even before its first event."""
    stream = await private.subscribe("/channels/jobs/new/events")
    async with private.session.delete(f"{private.url}/channels/jobs/new", headers=AUTH) as r:
        assert r.status == 200
    assert (await stream.next()).event == "close"


# -- nothing secret in logs --------------------------------------------------------------------


async def test_no_secret_in_logs(
    private: HubServer, backplane: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Grants, tickets and tokens used and refused; none of them appears in any log line."""
    caplog.set_level(logging.DEBUG)
    good, bad = grant(["user/*"]), grant(["private/*"])
    opaque = await ticket(private, ["user/42"])
    await private.subscribe(f"/channels/user/42/events?ticket={opaque}")
    await refusal(private, f"/channels/user/42/events?ticket={opaque}")
    await private.subscribe("/channels/user/42/events", bearer(good))
    await refusal(private, "/channels/user/42/events", bearer(bad))
    await private.publish("user/42", "x", headers=bearer(SCOPED))
    await private.publish("news", "x", status=403, headers=bearer(SCOPED))
    assert "user-42" in caplog.text  # the identity is logged...
    assert "ticket=***" in caplog.text  # (the test server's access log is on: redacted there)
    for secret in (SECRET, TOKEN, SCOPED, good, bad, opaque):
        assert secret not in caplog.text  # ...never a secret


def test_private_settings_from_the_environment(tmp_path: Path) -> None:
    """HUB_PRIVATE_CHANNELS is comma-separated; a missing PEM file or a bad cookie name stops
    start-up naming the key."""
    import os

    from hub.config import ConfigError, load

    env = {"HUB_PRIVATE_CHANNELS": "private/*, user/*", "HUB_SUBSCRIBE_JWT_SECRET": SECRET}
    config = load(path=os.devnull, env=env)
    assert config.private_channels == ("private/*", "user/*")
    with pytest.raises(ConfigError, match="subscribe_jwt_public_key"):
        load(path=os.devnull, env={"HUB_SUBSCRIBE_JWT_PUBLIC_KEY": str(tmp_path / "nope.pem")})
    with pytest.raises(ConfigError, match="subscribe_cookie"):
        load(path=os.devnull, env={"HUB_SUBSCRIBE_COOKIE": "bad name"})
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(ConfigError, match=r"subscribe_jwt_public_key.*not a PEM public key"):
        load(path=os.devnull, env={"HUB_SUBSCRIBE_JWT_PUBLIC_KEY": str(tmp_path / "junk.pem")})


async def test_deleting_a_running_demo_jobs_channel(
    make_hub: MakeHub, backplane: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A demo job whose channel is deleted under it stops quietly: its watcher got close, the
    job logs why, and nothing is logged as an error."""
    caplog.set_level(logging.INFO)
    hub = await make_hub(demo_jobs=True, demo_job_seconds=3)
    async with hub.session.post(f"{hub.url}/demo/jobs") as response:
        channel = (await response.json())["channel"]
    watcher = await hub.subscribe(f"/channels/{channel}/events?from=start")
    assert (await watcher.next()).event == "started"
    async with hub.session.delete(f"{hub.url}/channels/{channel}") as response:
        assert response.status == 200
    seen = [m.event for m in await watcher.until_end()]
    assert seen[-1] == "close" and "done" not in seen

    async def stopped() -> bool:
        return "stopped: its channel was deleted" in caplog.text

    from tests.support.helpers import eventually

    await eventually(stopped, timeout=5, what="the job stopping")
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
