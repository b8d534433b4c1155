"""Wire dialects beside the native one (``hub.api.subscribe``): each a package of its own that
plugs into the core as ``hub.hub`` describes (a ``Format``, one ``View``, a route making one
``Hub.stream`` call), wired in ``hub.app`` and imported by nothing else."""

__all__: list[str] = []
