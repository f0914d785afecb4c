"""How a commspec machine is declared, and how it moves.

Rules:
- A machine is data: named states and events (enums), an initial state, the
  terminal (absorbing) states, and a table of transitions, each with a one-line
  reason. Nothing else in the project invents a transition.
- A transition may carry a guard: one named boolean *fact* about the object
  (``persistent``, ``others_remain``...) that must hold, or must not hold, for the
  transition to apply. For every (state, event) the guards pick at most one row.
- A (state, event, facts) with no matching row is the error: ``step`` raises
  :class:`InvalidTransition` naming machine, state and event.
- ``step`` is a dict lookup on a table compiled from the declaration; the same
  declaration feeds ``transitions.Machine`` (``transitions_config``) for diagrams
  and for the cross-check in the tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Generic, TypeVar

from .errors import InvalidTransition, SpecError


class Name(Enum):
    """Base of every enum in the model: members are singletons compared by identity,
    so identity hashing is correct, and it is several times faster than Enum's own
    (the checker hashes millions of states made of these)."""

    __hash__ = object.__hash__


S = TypeVar("S", bound=Enum)
E = TypeVar("E", bound=Enum)

# Keys are a machine's fact enum members. Typed Any because Mapping is invariant in
# its key type: a dict[KernelCommFact, bool] is not a Mapping[Enum, bool].
Facts = Mapping[Any, bool]
NO_FACTS: Facts = {}


@dataclass(frozen=True)
class Transition(Generic[S, E]):
    """One row of a machine's table."""

    source: S
    event: E
    dest: S
    why: str
    #: the fact this row depends on, if any, and the value it needs
    guard: Enum | None = None
    guard_holds: bool = True

    def applies(self, facts: Facts) -> bool:
        if self.guard is None:
            return True
        if self.guard not in facts:
            raise SpecError(
                f"{self.event.value!r} from {self.source.value!r} needs the fact "
                f"{self.guard.value!r}, which the caller did not give"
            )
        return facts[self.guard] == self.guard_holds

    @property
    def guard_label(self) -> str:
        if self.guard is None:
            return ""
        return f"[{'' if self.guard_holds else '!'}{self.guard.value}]"


@dataclass(frozen=True)
class MachineSpec(Generic[S, E]):
    """A declared state machine: the single source of truth for one kind of object."""

    name: str
    title: str
    summary: str
    states: type[S]
    events: type[E]
    initial: S
    terminal: frozenset[S]
    transitions: tuple[Transition[S, E], ...]
    facts: tuple[Enum, ...] = ()
    _table: dict[tuple[S, E], tuple[Transition[S, E], ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        table: dict[tuple[S, E], list[Transition[S, E]]] = {}
        for t in self.transitions:
            if not isinstance(t.source, self.states) or not isinstance(t.dest, self.states):
                raise SpecError(f"{self.name}: {t} uses a state of another machine")
            if not isinstance(t.event, self.events):
                raise SpecError(f"{self.name}: {t} uses an event of another machine")
            if t.guard is not None and t.guard not in self.facts:
                raise SpecError(f"{self.name}: {t} is guarded by an undeclared fact")
            if t.source in self.terminal and t.dest != t.source:
                raise SpecError(f"{self.name}: terminal state {t.source.value!r} is left by {t}")
            table.setdefault((t.source, t.event), []).append(t)
        for (state, event), rows in table.items():
            guards = {r.guard for r in rows}
            unguarded = None in guards
            if len(rows) > 1 and (unguarded or len(guards) != 1 or len(rows) != 2):
                # Two rows are allowed only as the two sides of one fact.
                raise SpecError(
                    f"{self.name}: ({state.value}, {event.value}) has overlapping rows"
                )
        object.__setattr__(self, "_table", {k: tuple(v) for k, v in table.items()})

    # -- moving ------------------------------------------------------------

    def row(self, state: S, event: E, facts: Facts = NO_FACTS) -> Transition[S, E]:
        """The row that ``event`` takes from ``state`` given ``facts``, or the error."""
        for t in self._table.get((state, event), ()):
            if t.applies(facts):
                return t
        raise InvalidTransition(self.name, state.value, event.value)

    def step(self, state: S, event: E, facts: Facts = NO_FACTS) -> S:
        return self.row(state, event, facts).dest

    def allows(self, state: S, event: E) -> bool:
        """Whether some row starts at (state, event), whatever the facts."""
        return (state, event) in self._table

    # -- groups derived from the table ----------------------------------------
    # Code that needs "the states in which X may happen" asks the table, so a
    # row added to a machine changes every such group with it.

    def sources(self, event: E) -> frozenset[S]:
        """The states in which ``event`` has a row."""
        return frozenset(t.source for t in self.transitions if t.event == event)

    def dests(self, event: E) -> frozenset[S]:
        """The states ``event`` can lead to."""
        return frozenset(t.dest for t in self.transitions if t.event == event)

    def ending_events(self, source: S) -> frozenset[E]:
        """The events that take ``source`` into a terminal state: the ways it ends."""
        return frozenset(
            t.event for t in self.transitions
            if t.source == source and t.dest in self.terminal and t.dest != source
        )

    # -- reading -----------------------------------------------------------

    @property
    def rows_by_source(self) -> dict[S, tuple[Transition[S, E], ...]]:
        out: dict[S, tuple[Transition[S, E], ...]] = {}
        for s in self.states:
            out[s] = tuple(t for t in self.transitions if t.source == s)
        return out

    def transitions_config(self) -> dict[str, Any]:
        """Plain data that ``transitions.Machine(**cfg, auto_transitions=False)`` accepts."""
        rows: list[dict[str, Any]] = []
        for t in self.transitions:
            row: dict[str, Any] = {
                "trigger": t.event.value,
                "source": t.source.value,
                "dest": t.dest.value,
            }
            if t.guard is not None:
                row["conditions" if t.guard_holds else "unless"] = [t.guard.value]
            rows.append(row)
        return {
            "states": [s.value for s in self.states],
            "initial": self.initial.value,
            "transitions": rows,
        }
