"""Whether a backplane's store answers: one ``Link`` per backplane, fed by independent witnesses.

Shared by the Redis and NATS backplanes, so both tell an outage, its end and its cause the same
way (one warning when it starts, one line when it ends, the causes in ``/healthz``). A witness
is one path to the store (publishes and history reads, the reader's connection, ...); it is
cleared only by its own success: a read that works does not prove that writes do, so a
successful history read alone never declares the link healthy while writes answer errors.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from hub.backplane import BackplaneState, BackplaneUnavailable

__all__ = ["Link", "describe"]

log = logging.getLogger("hub.backplane")


def describe(problem: BaseException) -> str:
    return f"{type(problem).__name__}: {problem}" if str(problem) else type(problem).__name__


class Link:
    """``kind``: the ``/healthz`` kind; ``name``: the store in log lines and refusals;
    ``error_reply``: the store's exception for an error *answer* (as opposed to no answer)."""

    def __init__(self, kind: str, name: str, error_reply: type[BaseException]) -> None:
        self._kind = kind
        self._name = name
        self._error_reply = error_reply
        self._failing: dict[str, str] = {}  # witness -> its last error
        self._lost_at: float | None = None

    @property
    def connected(self) -> bool:
        return not self._failing

    def lost(self, witness: str, problem: BaseException | str) -> None:
        was = self.connected
        self._failing[witness] = problem if isinstance(problem, str) else describe(problem)
        if was:
            self._lost_at = time.time()
            log.warning("backplane lost: %s does not answer normally (%s)", self._name,
                        self._failing[witness], extra={"event": "backplane-lost"})  # fmt: skip

    def regained(self, witness: str) -> None:
        if self._failing.pop(witness, None) is not None and self.connected:
            down = time.time() - (self._lost_at or time.time())
            log.info("backplane regained: %s answers again after %.1fs", self._name, down,
                     extra={"event": "backplane-regained"})  # fmt: skip
            self._lost_at = None

    def unavailable(self, witness: str, problem: BaseException) -> BackplaneUnavailable:
        """Note the failure and build the exception the hub turns into a 503."""
        self.lost(witness, problem)
        if isinstance(problem, self._error_reply):
            return BackplaneUnavailable(
                f"{self._name} answered with an error ({describe(problem)})"
            )
        return BackplaneUnavailable(f"{self._name} did not answer ({describe(problem)})")

    def state(self, detail: dict[str, Any]) -> BackplaneState:
        if self._failing:
            detail["error"] = "; ".join(sorted(set(self._failing.values())))
            detail["down_since"] = self._lost_at
        return BackplaneState(kind=self._kind, connected=self.connected, detail=detail)
