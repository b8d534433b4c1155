"""Channel patterns (``hub.patterns``): right for adversarial inputs, and never backtracking.

The regex matcher they replace backtracked: ``private/*a*a*a*a*b`` against a 150-character name
took 1.3 s, and each further star multiplied it. The HTTP test below uses ten stars against a
200-character name, which that regex would not finish within the test timeout (the number of
ways to place nine runs of ``a`` in 190 characters is about 10^15); the linear matcher answers
at once. No time is measured here: a backtracking matcher fails by timeout.
"""

from __future__ import annotations

import functools
import time

import jwt
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from hub.patterns import Patterns, glob_match
from tests.conftest import MakeHub

SECRET = "a-subscribe-secret-of-at-least-32-bytes!"
TOKEN = "publish-token-0123456789"


def reference(pattern: str, name: str) -> bool:
    """The textbook dynamic programme: slow, obviously right."""

    @functools.cache
    def fits(p: int, n: int) -> bool:
        if p == len(pattern):
            return n == len(name)
        if pattern[p] == "*":
            return fits(p + 1, n) or (n < len(name) and fits(p, n + 1))
        return n < len(name) and pattern[p] == name[n] and fits(p + 1, n + 1)

    return fits(0, 0)


_alphabet = st.sampled_from("ab*/")


@given(st.text(_alphabet, max_size=12), st.text(st.sampled_from("ab/"), max_size=14))
@example("*", "")
@example("a*a", "a")
@example("a*b*a", "aba")
@example("**", "x")
@example("a*", "a")
@example("*ab*ab", "abab")
def test_glob_match_agrees_with_the_reference(pattern: str, name: str) -> None:
    assert glob_match(pattern, name) == reference(pattern, name)
    assert Patterns([pattern]).match(name) == reference(pattern, name)


@given(st.lists(st.text(_alphabet, min_size=1, max_size=8), min_size=1, max_size=5),
       st.text(st.sampled_from("ab/"), max_size=12))  # fmt: skip
def test_pattern_sets_match_if_any_matches(patterns: list[str], name: str) -> None:
    assert Patterns(patterns).match(name) == any(reference(p, name) for p in patterns)


def test_adversarial_patterns() -> None:
    name = "private/" + "a" * 190
    assert not glob_match("private/" + "*a" * 20 + "*b", name)
    assert glob_match("private/" + "*a" * 20 + "*", name)
    assert glob_match("private/" + "*a" * 20, name)
    assert not glob_match("private/" + "*a" * 191, name)
    assert glob_match("*" * 50 + "a", name)


@pytest.mark.any_backplane  # matching happens before any backplane is asked
async def test_a_pathological_grant_is_answered_at_once(make_hub: MakeHub) -> None:
    """A grant whose pattern makes a backtracking matcher run for ages gets its 403 now, and the
    same shape that does match opens the stream."""
    hub = await make_hub(private_channels=["private/*"], subscribe_jwt_secret=SECRET,
                         publish_tokens=[TOKEN])  # fmt: skip
    channel = "private/" + "a" * 190
    for pattern, status in (("private/" + "*a" * 10 + "*b", 403), ("private/" + "*a" * 10, 200)):
        claims = {"exp": int(time.time()) + 60, "channels": [pattern]}
        token = jwt.encode(claims, SECRET, algorithm="HS256")
        async with hub.session.get(
            f"{hub.url}/channels/{channel}/events",
            headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
        ) as response:
            assert response.status == status
            if status == 403:
                assert "does not cover" in (await response.json())["error"]
