"""NATS backplane: a Durable Stream's state record, and the checks an append makes against it.

The record is the body of the last message on the stream's ``P_dstream.<token>`` subject
(``hub.backplane.nats_streams`` says why it is atomic with the channel's events): the shape, the
creation time, the last access (for a sliding TTL), the last ``Stream-Seq``, every producer's
``(epoch, seq)``, the producer tuple that closed the stream, and whether it was deleted. It is
JSON, small, and pure data here: no NATS call in this module, so the checks are plain functions
of a record and an append.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from hub.backplane.streams import Outcome, Producer, Shape, media_type

__all__ = ["MAX_PRODUCERS", "Record", "Verdict", "decode", "encode", "judge"]

#: Idempotent producers remembered per stream: every append rewrites the record, so it stays
#: small (the least recently seen producer is forgotten first, then treated as new, as the
#: protocol allows; the memory backplane keeps 10,000).
MAX_PRODUCERS = 1000


@dataclass(frozen=True, slots=True)
class Record:
    shape: Shape
    created_at: float
    touched: float  # the last read or append known to the cluster (a sliding TTL's start)
    start: int = 0  # the create marker's sequence (stored as -k: k places before the record)
    at: int = 0  # the stream's tail (a sequence) when it was written: tails never go down
    closed: bool = False
    closer: tuple[str, int, int] | None = None  # the producer tuple of the closing append
    stream_seq: str | None = None
    producers: dict[str, tuple[int, int]] = field(default_factory=dict)
    gone: bool = False  # deleted (or expired): a create may start the stream again

    def expired(self, now: float, touched: float = 0.0) -> bool:
        """By its absolute expiry, or its sliding TTL counted from the last access (this
        process's own, ``touched``, when newer than the record's)."""
        shape = self.shape
        if shape.expires_at is not None and now >= shape.expires_at:
            return True
        return shape.ttl is not None and now >= max(self.touched, touched) + shape.ttl


def encode(record: Record) -> bytes:
    shape = record.shape
    return orjson.dumps(
        {
            "ct": shape.content_type,
            "ttl": shape.ttl,
            "exp": shape.expires_at,
            "c": record.created_at,
            "t": record.touched,
            "s": record.start,
            "at": record.at,
            "x": record.closed,
            "by": list(record.closer) if record.closer else None,
            "ss": record.stream_seq,
            "p": {name: list(state) for name, state in record.producers.items()},
            "g": record.gone,
        }
    )


def decode(body: bytes, seq: int) -> Record | None:
    """The record stored at ``seq``, or None for a body that is not one."""
    try:
        kept: dict[str, Any] = orjson.loads(body)
        by = kept.get("by")
        return Record(
            shape=Shape(str(kept["ct"]), kept.get("ttl"), kept.get("exp")),
            created_at=float(kept["c"]),
            touched=float(kept["t"]),
            start=seq + start if (start := int(kept["s"])) < 0 else start,
            at=int(kept.get("at") or 0),
            closed=bool(kept.get("x")),
            closer=(str(by[0]), int(by[1]), int(by[2])) if by else None,
            stream_seq=kept.get("ss"),
            producers={str(k): (int(v[0]), int(v[1])) for k, v in (kept.get("p") or {}).items()},
            gone=bool(kept.get("g")),
        )
    except (ValueError, KeyError, TypeError, IndexError):
        return None


@dataclass(frozen=True, slots=True)
class Verdict:
    """An append refused or a duplicate (``outcome``), or accepted (``record`` to store)."""

    outcome: Outcome | None = None
    record: Record | None = None
    epoch: int | None = None
    expected_seq: int | None = None
    last_seq: int | None = None


def judge(
    record: Record,
    closed: bool,
    content_type: str | None,
    producer: Producer | None,
    stream_seq: str | None,
    close: bool,
    now: float,
) -> Verdict:
    """The checks of ``hub.backplane.streams``' contract, in its order; ``closed``: the channel
    was closed (its close marker, or the record's flag)."""
    if closed:
        if producer is not None and record.closer == (producer.id, producer.epoch, producer.seq):
            return Verdict(Outcome.DUPLICATE, last_seq=producer.seq)
        return Verdict(Outcome.CLOSED)
    if content_type is not None and content_type != media_type(record.shape.content_type):
        return Verdict(Outcome.MISMATCH)
    producers = record.producers
    if producer is not None:
        known = producers.get(producer.id)
        if known is None:
            if producer.seq != 0:
                return Verdict(Outcome.GAP, expected_seq=0)
        elif producer.epoch < known[0]:
            return Verdict(Outcome.STALE_EPOCH, epoch=known[0])
        elif producer.epoch > known[0]:
            if producer.seq != 0:
                return Verdict(Outcome.BAD_SEQ)
        elif producer.seq <= known[1]:
            return Verdict(Outcome.DUPLICATE, last_seq=known[1])
        elif producer.seq != known[1] + 1:
            return Verdict(Outcome.GAP, expected_seq=known[1] + 1)
        producers = {k: v for k, v in producers.items() if k != producer.id}
        producers[producer.id] = (producer.epoch, producer.seq)  # last: the most recently seen
        if len(producers) > MAX_PRODUCERS:  # the least recently seen is forgotten (then new)
            del producers[next(iter(producers))]
    if stream_seq is not None and record.stream_seq is not None and stream_seq <= record.stream_seq:
        return Verdict(Outcome.SEQ_REGRESSION)
    closer = (producer.id, producer.epoch, producer.seq) if close and producer else None
    return Verdict(
        record=replace(
            record,
            touched=now,
            closed=close,
            closer=closer,
            stream_seq=stream_seq if stream_seq is not None else record.stream_seq,
            producers=producers,
        )
    )
