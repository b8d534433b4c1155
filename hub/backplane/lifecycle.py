"""Retrying and closing, as the Redis and NATS backplanes both do them.

``retry_forever`` runs a backplane's background work (its reader, its presence exchange) until
cancelled: a failure of the store (in ``errors``: never anything else, which would be a bug to
see) logs one warning per outage, marks the link's witness lost and tries again after a
backoff; the first success marks it regained. ``close_bounded`` stops the tasks and runs the
closing steps each under a time limit, so a store that hangs cannot hold up the hub's shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from hub.backplane.link import Link, describe

__all__ = ["CLOSE_STEP_TIMEOUT", "close_bounded", "retry_forever"]

log = logging.getLogger("hub.backplane")

#: Seconds each step of closing may take before it is given up.
CLOSE_STEP_TIMEOUT = 2.0


async def retry_forever(
    step: Callable[[], Awaitable[None]],
    *,
    name: str,
    link: Link,
    witness: str,
    errors: tuple[type[BaseException], ...],
    backoff: Callable[[int], float],
    every: float = 0.0,
    failed: Callable[[BaseException], None] | None = None,
) -> None:
    """Await ``step`` again and again; ``every``: seconds between two successful rounds;
    ``backoff(n)``: seconds after the n-th failure in a row; ``failed``: what a failure leaves
    to redo (called before the backoff)."""
    failures = 0
    while True:
        try:
            await step()
        except errors as problem:
            if failures == 0:
                log.warning("%s: %s; retrying", name, describe(problem))
            failures += 1
            link.lost(witness, problem)
            if failed is not None:
                failed(problem)
            await asyncio.sleep(backoff(failures))
            continue
        failures = 0
        link.regained(witness)
        if every:
            await asyncio.sleep(every)


async def close_bounded(
    name: str,
    tasks: Sequence[asyncio.Task[None]],
    steps: Sequence[tuple[str, Callable[[], Awaitable[None]]]],
) -> None:
    """Cancel ``tasks`` and wait for them, then run ``steps`` (what, how), each bounded."""
    for task in tasks:
        task.cancel()

    async def stop() -> None:
        await asyncio.gather(*tasks, return_exceptions=True)

    for what, step in [("stopping the tasks", stop), *steps]:
        try:
            async with asyncio.timeout(CLOSE_STEP_TIMEOUT):
                await step()
        except TimeoutError:
            log.warning("%s backplane: %s took over %ss; going on", name, what, CLOSE_STEP_TIMEOUT)
