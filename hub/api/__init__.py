"""The HTTP interface, one module a job.

- ``responses``: JSON answers and errors, CORS, the one way ``InvalidInput`` becomes an answer;
- ``subscribe``: the event-stream handlers;
- ``publish``: the publish handlers and the checks on what they are sent;
- ``introspect``: /channels, /healthz, /readyz, /metrics, /timezones.

Handlers are bound to the hub when the routes are added (``add_*_routes(app, hub)``), so no
handler looks anything up per request; the app keys live in ``hub.app``.
"""
