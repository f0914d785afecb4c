"""Frontend symmetry: renumbering frontends changes nothing the checker can see, so it
may explore one world per renumbering; and a counterexample is still a real run.

The reduction is sound only if the model's steps commute with renumbering: the
successors of a renumbered world are the renumbered successors. That is checked on
every reachable world of small bounds, and shown to fail for a model whose drain
reads frontend 0's messages before frontend 1's (the order the model once had).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from commspec.model.broken import NoDrain
from commspec.model.checker import check
from commspec.model.explore import Search, SearchLimit
from commspec.model.invariants import step_violations
from commspec.model.symmetry import FrontendSymmetry, replay
from commspec.model.system import Bounds, Frontend, Step, SystemModel
from commspec.model.world import World


def renumber(w: World, order: tuple[int, ...]) -> World:
    """``w`` with frontend ``order[i]`` renamed ``i``."""
    new = {f: i for i, f in enumerate(order)}
    k = w.kernel
    return w._replace(
        kernel=k._replace(
            peers=tuple(k.peers[f] for f in order),
            comms=tuple(kc if kc.owner < 0 else kc._replace(owner=new[kc.owner])
                        for kc in k.comms),
        ),
        frontends=tuple(w.frontends[f] for f in order),
        requests=tuple(r if r is None or r.party < 0 else r._replace(party=new[r.party])
                       for r in w.requests),
    )


class IndexOrderDrain(SystemModel):
    """The drain as it was: frontend 0's received messages before frontend 1's."""

    def _kernel_subscription(self, w: World, f: int, fe: Frontend) -> Iterator[tuple[Step, World]]:
        for step, succ in super()._kernel_subscription(w, f, fe):
            order = getattr(step.action, "order", ())
            if list(order) == sorted(order):
                yield step, succ


def asymmetries(model: SystemModel, limit: int | None = None) -> list[str]:
    """Canonical worlds whose renumbered successors differ from the successors of the
    renumbered world (compared canonically). The canonical worlds stand for every
    reachable world, if the model is symmetric; and if it is not, the first world
    where it is not is a canonical one (its predecessors were symmetric)."""
    symmetry = FrontendSymmetry()
    canonical = symmetry.canonical
    search = Search([canonical(model.initial())], symmetry.edges(model), limit=limit)
    n = model.bounds.frontends
    expansions = search.expansions()
    while True:
        try:
            i, edges = next(expansions)
        except (StopIteration, SearchLimit):
            return []
        w = search.states[i]
        mine = {search.states[j] for _, j, _ in edges}
        for order in itertools.permutations(range(n)):
            other = renumber(w, order)
            assert canonical(other) == w, "one canonical form per renumbering"
            theirs = {canonical(s) for _, s in model.successors(other)}
            if theirs != mine:
                return [f"state {i}, renumbered {order}: {len(mine ^ theirs)} successors differ"]


TWO = Bounds(frontends=2, comms=1, requests=1, reconnects=0, faults=1)
#: two frontends sharing a comm, one of them leaving: enough for drains of two batches
SMALL = Bounds(frontends=2, comms=1, requests=0, reconnects=0, faults=1)


def test_the_model_commutes_with_renumbering_frontends() -> None:
    assert asymmetries(SystemModel(SMALL)) == []


def test_three_frontends_commute_too() -> None:
    # the first 10,000 worlds: every way three frontends can share one comm's messages
    assert asymmetries(SystemModel(Bounds(frontends=3, comms=1, requests=0, faults=1)),
                       limit=10_000) == []


def test_a_drain_in_frontend_order_breaks_the_symmetry() -> None:
    # a reply and a comm_close from two frontends, both received when one leaves: the
    # order decides whether the reply resolves its request or comes too late
    assert asymmetries(IndexOrderDrain(TWO)) != []


def test_symmetry_keeps_every_property_reachable_state_count_down() -> None:
    # The reduced exploration holds, and explores fewer states than the plain one.
    reduced = check(SystemModel(SMALL))
    plain = Search([SystemModel(SMALL).initial()], SystemModel(SMALL).successors).run()
    assert reduced.ok, reduced.violation
    assert reduced.stats.states < len(plain.states) / 1.8
    # Every plain state has its canonical form among the reduced ones (nothing lost).
    symmetry = FrontendSymmetry()
    canonical_plain = {symmetry.canonical(w) for w in plain.states}
    assert len(canonical_plain) == reduced.stats.states


def run(model: SystemModel, steps: list[Step]) -> tuple[World, World]:
    """Takes ``steps`` from the initial world, each one a step of the world it is
    taken in; the last two worlds."""
    w = before = model.initial()
    for n, step in enumerate(steps):
        successors = dict(model.successors(w))
        assert step in successors, f"step {n + 1} ({step.text}) is not a step of the run"
        before, w = w, successors[step]
    return before, w


def test_a_path_of_canonical_worlds_replays_as_a_real_run() -> None:
    model = SystemModel(SMALL)
    symmetry = FrontendSymmetry()
    search = Search([model.initial()], symmetry.edges(model)).run()
    # the first state whose canonical path, read naively, is not a run: some step on
    # it renumbered the frontends
    def naive_is_a_run(i: int) -> bool:
        try:
            _, w = run(model, search.path(i))
        except AssertionError:
            return False
        return symmetry.canonical(w) == search.states[i]

    i = next(i for i in range(len(search.states)) if not naive_is_a_run(i))
    steps = replay(model, symmetry.canonical, [search.states[x] for x in search.trail(i)])
    _, w = run(model, steps)
    assert symmetry.canonical(w) == search.states[i]


def test_a_counterexample_under_symmetry_is_a_real_run_that_breaks_the_property() -> None:
    model = NoDrain(TWO)
    violation = check(model).violation
    assert violation is not None and violation.property == "drained_reply_wins"
    before, after = run(model, violation.steps)
    names = [p for p, _ in step_violations(before, after, violation.steps[-1].drained)]
    assert violation.property in names
