"""Breadth-first search: the one exploration of the system model (and of a machine).

Rules:
- A search runs over *edges*: a function from a state to its ``(label, successor)``
  pairs. The system model's edges are its steps (``SystemModel.successors``), or its
  protocol steps only (:func:`protocol_steps`); a single machine's are its events.
- Every state is visited once, in breadth-first order, and numbered in that order.
  Each state keeps the edge that first reached it, so the path rebuilt from those
  parents is a shortest one.
- :meth:`Search.expansions` is a generator: a caller can judge each state's edges as
  they come and stop at the first it does not like (the checker, :func:`reach`), or
  run it to the end (:func:`reachable`, :func:`quiescent`).
- ``limit`` bounds the number of states a search may hold; past it,
  :class:`SearchLimit`. Errors the edges raise (an undeclared transition) propagate;
  :attr:`Search.current` says which state was being expanded.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Generic, TypeVar

from .errors import CommspecError
from .system import Step, StepKind, SystemModel
from .world import World

S = TypeVar("S", bound=Hashable)
L = TypeVar("L")

#: a state's outgoing edges: (label, successor) pairs
Edges = Callable[[S], Iterable[tuple[L, S]]]
#: one expanded edge: its label, the successor's number, whether this edge found it
Edge = tuple[L, int, bool]


class SearchLimit(CommspecError):
    """A search found more states than its limit allows."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"more than {limit:,} states")


class Search(Generic[S, L]):
    """States found breadth first from ``starts``, each with the edge that found it."""

    def __init__(
        self, starts: Iterable[S], edges: Edges[S, L], limit: int | None = None
    ) -> None:
        self._edges = edges
        self._limit = limit
        self.index: dict[S, int] = {}
        self.states: list[S] = []
        self.parent: list[int] = []
        self.via: list[L | None] = []
        self.depth: list[int] = []
        #: the state being expanded (or last expanded)
        self.current = -1
        for start in starts:
            if start not in self.index:
                self._add(start, -1, None)

    def _add(self, state: S, parent: int, label: L | None) -> int:
        i = len(self.states)
        if self._limit is not None and i >= self._limit:
            raise SearchLimit(self._limit)
        self.index[state] = i
        self.states.append(state)
        self.parent.append(parent)
        self.via.append(label)
        self.depth.append(0 if parent < 0 else self.depth[parent] + 1)
        return i

    def expansions(self) -> Iterator[tuple[int, list[Edge[L]]]]:
        """Each state's number, in breadth-first order, with its edges.

        Successors are numbered (added) when their predecessor is expanded, so when a
        state's edges are yielded every successor already has a number and a parent."""
        # Numbering in discovery order makes the list itself the FIFO queue.
        i = self.current + 1
        while i < len(self.states):
            self.current = i
            out: list[Edge[L]] = []
            index = self.index
            for label, succ in self._edges(self.states[i]):
                j = index.get(succ)
                if j is None:
                    out.append((label, self._add(succ, i, label), True))
                else:
                    out.append((label, j, False))
            yield i, out
            i += 1

    def run(self) -> Search[S, L]:
        """Expand every state there is."""
        for _ in self.expansions():
            pass
        return self

    def trail(self, i: int) -> list[int]:
        """The numbers of the states from a start to state ``i``."""
        trail = [i]
        while self.parent[i] >= 0:
            i = self.parent[i]
            trail.append(i)
        trail.reverse()
        return trail

    def path(self, i: int, last: L | None = None) -> list[L]:
        """The labels from a start to state ``i`` (then ``last``, if given)."""
        labels: list[L] = [] if last is None else [last]
        while self.parent[i] >= 0:
            label = self.via[i]
            assert label is not None
            labels.append(label)
            i = self.parent[i]
        labels.reverse()
        return labels


# =========================================================================
# the system model
# =========================================================================


def protocol_steps(model: SystemModel) -> Edges[World, Step]:
    """The model's edges that are protocol steps (what happens with no one acting)."""

    def steps(w: World) -> list[tuple[Step, World]]:
        return [
            (step, succ) for step, succ in model.successors(w)
            if step.kind is StepKind.PROTOCOL
        ]

    return steps


def reachable(model: SystemModel, start: World, limit: int | None = None) -> list[World]:
    """Every state protocol steps reach from ``start`` (``start`` included)."""
    return Search([start], protocol_steps(model), limit).run().states


def quiescent(
    model: SystemModel, starts: Iterable[World], limit: int | None = None
) -> list[World]:
    """The states protocol steps reach from ``starts`` in which no protocol step is
    enabled: where the system rests until someone acts."""
    search = Search(starts, protocol_steps(model), limit)
    return [search.states[i] for i, edges in search.expansions() if not edges]


StepPredicate = Callable[[World, Step, World], bool]


def reach(
    model: SystemModel, wanted: StepPredicate, limit: int = 2_000_000
) -> list[Step] | None:
    """The shortest path whose last step satisfies ``wanted(before, step, after)``, or
    None (also when more than ``limit`` states were searched).

    This is how the tests show a scenario is reachable at all (a property that holds
    only because its premise never happens proves nothing)."""
    search = Search([model.initial()], model.successors, limit)
    states = search.states
    try:
        for i, edges in search.expansions():
            before = states[i]
            for step, j, _ in edges:
                if wanted(before, step, states[j]):
                    return search.path(i, step)
    except SearchLimit:
        return None
    return None


__all__ = [
    "Edges",
    "Search",
    "SearchLimit",
    "StepPredicate",
    "protocol_steps",
    "quiescent",
    "reach",
    "reachable",
]
