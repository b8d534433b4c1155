"""Channel patterns: ``*`` matches any run of characters (``/`` too); all else is literal.

One matcher for every pattern in the hub: ``private_channels``, a grant's ``channels`` claim and
a scoped publish token's ``channels``. A grant's patterns come from whoever signed it, and a
channel name from whoever subscribes, so the matcher must not backtrack: the regex it replaces
(``.*`` between literals) took 1.3 s for ``private/*a*a*a*a*b`` against a 150-character name,
and grew with every star.

``glob_match`` needs no backtracking because ``*`` is the only wildcard: the first literal run
must start the name and the last must end it; each run between stars is then placed at its
leftmost occurrence after the previous one. Leftmost is never worse than any later place (it
leaves the most room for the rest), so a failed ``find`` means no placement exists. The scan
only moves forward: one pass of ``str.find`` over the name, O(len(name) + len(pattern)) for
CPython's two-way search (O(len(name) * len(run)) at worst for short runs), whatever the
number of stars.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["Patterns", "glob_match"]


def glob_match(pattern: str, name: str) -> bool:
    """Whether ``name`` matches ``pattern`` (``*``: any run of characters), in one forward pass."""
    parts = pattern.split("*")
    if len(parts) == 1:
        return name == pattern
    return _match_parts(parts[0], parts[1:-1], parts[-1], name)


def _match_parts(first: str, middle: Sequence[str], last: str, name: str) -> bool:
    end = len(name) - len(last)
    if end < len(first) or not name.startswith(first) or not name.endswith(last):
        return False
    at = len(first)
    for part in middle:
        if part:
            found = name.find(part, at, end)
            if found < 0:
                return False
            at = found + len(part)
    return True


class Patterns:
    """A set of patterns; ``match`` is true when any of them matches.

    Sorted once by shape, as most are simple: exact names (a set lookup), ``prefix*`` (one
    ``startswith`` over all of them), and the rest through ``glob_match``'s forward pass.
    """

    __slots__ = ("_exact", "_general", "_prefixes", "patterns")

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(patterns)
        exact: set[str] = set()
        prefixes: list[str] = []
        general: list[tuple[str, tuple[str, ...], str]] = []
        for pattern in self.patterns:
            parts = pattern.split("*")
            if len(parts) == 1:
                exact.add(pattern)
            elif len(parts) == 2 and not parts[1]:
                prefixes.append(parts[0])
            else:
                general.append((parts[0], tuple(parts[1:-1]), parts[-1]))
        self._exact = frozenset(exact)
        self._prefixes = tuple(prefixes)
        self._general = tuple(general)

    def match(self, name: str) -> bool:
        # No generator when there are no general patterns (the usual case): it cost more than
        # the set and prefix checks, and this runs for each channel of each new stream.
        if name in self._exact or name.startswith(self._prefixes):
            return True
        general = self._general
        return bool(general) and any(_match_parts(*parts, name) for parts in general)
