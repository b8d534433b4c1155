"""nats-py internals, in one place: taking a timed-out publish back out of the outgoing buffer.

Why (``hub.backplane.nats`` point 6: a publish answered 503 is never stored later): nats-py
queues every command in ``Client._pending`` (a list of bytes, with its size in
``_pending_data_size``) and its flusher task writes the list out. A publish whose request times
out while the flusher is stuck (a link that stalls: the socket takes nothing, ``drain()`` waits)
is still in that list; when the link moves again or the client reconnects, nats-py sends it,
and JetStream stores an event the hub already answered 503 for: a client that retried has it
twice, and one that gave up sees it appear later. nats-py has no public way to take a command
back (``pending_data_size`` is public, read-only). Measured with the real nats-server
(``tests/backplane/test_compat_nats.py``: a link held while a publish waits behind ~12 MB the
socket cannot take, then released): withdrawn, the event was never stored; without the withdrawal
(``FALLBACK``) it was stored after the release, in each of the 6 runs made (nats-py 2.16.0).
What the socket already took cannot be taken back by anyone: only the client's own buffer is.

The fallback, when a nats-py release renames or retypes the list (``WITHDRAWS`` is then False,
and the test that pins these attributes fails first): nothing is withdrawn, a warning says the
timed-out publish may still be stored, and the 503 stays the honest "cannot tell" answer; a
publish with an Idempotency-Key is still stored once. The buffer has had this shape through
nats-py's 2.x releases (``_pending: List[bytes]``, ``_pending_data_size: int``), so the pin in
pyproject.toml is ``<3`` rather than a minor: the test, not the pin, notices a change.
"""

from __future__ import annotations

import logging

from nats.aio.client import Client

__all__ = ["FALLBACK", "WITHDRAWS", "withdraw"]

log = logging.getLogger("hub.backplane")


def _has_buffer() -> bool:
    """Whether this nats-py keeps its outgoing commands where ``withdraw`` looks for them."""
    client = Client()
    return isinstance(getattr(client, "_pending", None), list) and isinstance(
        getattr(client, "_pending_data_size", None), int
    )


#: Whether ``withdraw`` can take commands back with the installed nats-py.
WITHDRAWS = _has_buffer()
#: Tests set this to measure what the public API alone gives (nothing is withdrawn).
FALLBACK = False


def withdraw(nc: Client | None, token: bytes) -> bool:
    """Take the commands carrying ``token`` out of ``nc``'s outgoing buffer; whether any was
    still there (and so will never be sent)."""
    if nc is None:
        return False
    if not WITHDRAWS or FALLBACK:
        if nc.pending_data_size:
            log.warning("NATS: a publish that timed out may still be sent and stored later")
        return False
    pending: list[bytes] = nc._pending
    kept = [command for command in pending if token not in command]
    if len(kept) == len(pending):
        return False
    nc._pending = kept
    nc._pending_data_size = sum(len(command) for command in kept)
    log.warning("NATS: a publish that timed out was withdrawn before it was sent")
    return True
