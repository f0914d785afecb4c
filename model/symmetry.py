"""Frontend symmetry: the checker keeps one world per set of worlds that differ only in
how the frontends are numbered.

Rules:
- Frontends are interchangeable: no rule of the model reads a frontend's number (no
  message carries one, the drain reads the frontends' batches in every order, and
  every loop over frontends treats each alike). So a world and the same world with
  the frontends renumbered have the same futures, renumbered, and satisfy the same
  properties: exploring one of them is exploring both.
- :meth:`FrontendSymmetry.canonical` picks that one: the frontends sorted by what
  each is (its own state, whether the kernel counts it, the comms it owns, the
  requests it is party to), their numbers rewritten in comm owners and request
  parties.
- The late-reply counters are set to zero in the canonical world: no rule and no
  property of the model reads them (they are what the model-based tests compare with
  the implementation), so worlds that differ only in them have the same futures.
- The sort order of frontend states is the order in which this object first sees
  them: deterministic for a given exploration, so a check run twice explores, and
  reports, the same.
- A path of canonical worlds is not a run (each step may renumber); :func:`replay`
  turns it back into steps from the real initial world, so a counterexample names
  the frontend that really acts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .system import Step, SystemModel
from .world import Frontend, Kernel, KernelComm, Request, World

__all__ = ["FrontendSymmetry", "replay"]


class FrontendSymmetry:
    """The canonical representative of a world under renumbering of its frontends."""

    def __init__(self) -> None:
        #: each frontend state seen: its rank in the sort order (by first sight of its
        #: counter-free form), that form, and whether it is the state itself
        self._seen: dict[Frontend, tuple[int, Frontend, bool]] = {}
        self._ranks: dict[Frontend, int] = {}

    def _learn(self, fe: Frontend) -> tuple[int, Frontend, bool]:
        plain = fe._replace(late_replies=0) if fe.late_replies else fe
        rank = self._ranks.setdefault(plain, len(self._ranks))
        entry = self._seen[fe] = (rank, plain, plain is fe)
        return entry

    def _ranked(self, fes: tuple[Frontend, ...]) -> list[tuple[int, Frontend, bool]]:
        seen = self._seen
        return [seen.get(fe) or self._learn(fe) for fe in fes]

    def canonical(self, w: World, parent: World | None = None,
                  parent_ranked: list[tuple[int, Frontend, bool]] | None = None) -> World:
        """The canonical form of ``w``. ``parent`` and its ``ranked`` frontends, when
        given, spare looking up the frontends a step left as they were."""
        # The hottest call of the checker (once per step), so the common cases
        # (nothing to renumber; frontends told apart by their own states) are short,
        # and tuples are built directly rather than through _replace.
        k = w.kernel
        seen = self._seen
        fes = w.frontends
        if parent is None or parent_ranked is None:
            ranked = self._ranked(fes)
        elif len(fes) == 2:  # the ladder's case, worth its own lines
            f0, f1 = fes
            p0, p1 = parent.frontends
            a = parent_ranked[0] if f0 is p0 else (seen.get(f0) or self._learn(f0))
            b = parent_ranked[1] if f1 is p1 else (seen.get(f1) or self._learn(f1))
            if a[0] < b[0] and a[2] and b[2] and not k.late_replies:
                return w
            ranked = [a, b]
        else:
            ranked = [
                mine if fe is theirs else (seen.get(fe) or self._learn(fe))
                for fe, theirs, mine in zip(fes, parent.frontends, parent_ranked, strict=True)
            ]
        n = len(ranked)
        late = k.late_replies != 0 or not all(entry[2] for entry in ranked)
        keys: list[Any] = [entry[0] for entry in ranked]
        if len(set(keys)) < n:
            # frontends in the same state, told apart by what the kernel and the
            # requests say about them
            keys = [(
                keys[f],
                k.peers[f],
                tuple(c for c, kc in enumerate(k.comms) if kc.owner == f),
                tuple(s for s, req in enumerate(w.requests) if req is not None and req.party == f),
            ) for f in range(n)]
        order = sorted(range(n), key=keys.__getitem__)
        if order == list(range(n)):
            if not late:
                return w
            return World(Kernel(k.up, k.presence, k.peers, k.comms, k.owed, 0, k.detached),
                         tuple(entry[1] for entry in ranked), *w[2:])
        new = [0] * n
        for i, f in enumerate(order):
            new[f] = i
        kernel = Kernel(
            k.up,
            k.presence,
            tuple(k.peers[f] for f in order),
            tuple(kc if kc.owner < 0 else KernelComm(kc.state, new[kc.owner], kc.cause)
                  for kc in k.comms),
            k.owed,
            0,
            k.detached,
        )
        requests = tuple(
            req if req is None or req.party < 0
            else Request(req.kind, req.comm, new[req.party], req.state, req.delivered)
            for req in w.requests
        )
        return World(kernel, tuple(ranked[f][1] for f in order), requests, *w[3:])

    def edges(self, model: SystemModel) -> Callable[[World], Iterator[tuple[Step, World]]]:
        """The model's steps, each leading to the canonical form of its successor."""
        canonical = self.canonical

        def steps(w: World) -> Iterator[tuple[Step, World]]:
            ranked = self._ranked(w.frontends)
            for step, succ in model.successors(w):
                yield step, canonical(succ, w, ranked)

        return steps


def replay(
    model: SystemModel,
    canonical: Callable[[World], World],
    worlds: Sequence[World],
    prefer: Callable[[World, Step, World], bool] | None = None,
) -> list[Step]:
    """The steps of a real run from the initial world through worlds whose canonical
    forms are ``worlds`` (``worlds[0]`` the canonical initial world), in order.

    Where several real steps lead to the same canonical world, the first is taken,
    except on the last step, where one satisfying ``prefer`` (the step that breaks a
    step property) is taken if there is one."""
    real = model.initial()
    assert canonical(real) == worlds[0], "the path does not start at the initial world"
    steps: list[Step] = []
    for depth, target in enumerate(worlds[1:], start=1):
        picky = prefer is not None and depth == len(worlds) - 1
        chosen: tuple[Step, World] | None = None
        for step, succ in model.successors(real):
            if canonical(succ) != target:
                continue
            chosen = chosen or (step, succ)
            if not picky or prefer(real, step, succ):  # type: ignore[misc]
                chosen = (step, succ)
                break
        if chosen is None:  # pragma: no cover - the canonical path came from these steps
            raise AssertionError(f"no step from the world at depth {depth - 1} reaches the next")
        steps.append(chosen[0])
        real = chosen[1]
    return steps
