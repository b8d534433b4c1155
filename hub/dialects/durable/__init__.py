"""Durable Streams (ElectricSQL's open protocol for resumable streams over HTTP) at
``/v1/stream/{path}``: a Durable Stream is a channel.

Its messages are the channel's events (``codec``: the frame a native ``EventSource`` sees is
the storage), so ``/channels/<path>/events`` reads a stream's appends and resumes with
``Last-Event-ID``, and a Durable Streams client reads what the hub's own API published. What a
channel lacks (content type, TTL or expiry, closure, ``Stream-Seq``, idempotent producers) is
kept by the backplane's optional ``Streams`` (``hub.backplane.streams``), atomically with the
events. Parts, one job each: ``routes`` (the handlers and their shared checks), ``context``
(what they are given, auth, limits, answers), ``writes`` (PUT, POST, DELETE), ``reads`` (HEAD,
catch-up GET), ``live`` (SSE and long-poll through ``Hub.stream``), ``wire`` (their
``Format``s), ``offsets`` (offsets, cursors and the protocol's headers), ``codec`` (payloads
as frames and back). Forks and the reserved subscription API are not served.
"""

from hub.dialects.durable.routes import DURABLE_PATH, add_durable_routes

__all__ = ["DURABLE_PATH", "add_durable_routes"]
