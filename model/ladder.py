"""The ladder of bounds ``commspec check`` proves by default.

Rules:
- One bound cannot exercise every rule: the reconcile races need a reconnect, the
  per-peer rules two frontends, the request rules two requests. Each rung is a
  small bound chosen for the rules it reaches; together they are the default.
- Rungs run cheapest first, so a rule broken at a small bound is reported early;
  the first rung that fails ends the run, with its shortest counterexample.
"""

from __future__ import annotations

from typing import NamedTuple

from .system import Bounds

__all__ = ["LADDER", "Rung"]


class Rung(NamedTuple):
    name: str
    bounds: Bounds
    #: the rules this rung reaches that a smaller one does not
    reaches: str


LADDER: tuple[Rung, ...] = (
    Rung("reconnect",
         Bounds(frontends=1, comms=1, requests=1, reconnects=1, faults=1, relinks=1),
         "reconciling: stale comms, comm_info_reply against comm_close, held kernel "
         "requests; a dropped connection libzmq re-establishes by itself"),
    Rung("two comms", Bounds(frontends=1, comms=2, requests=1, reconnects=0, faults=1),
         "a persistent and a default comm side by side, each under its policy; two "
         "persistent ones past the bound of one detached comm"),
    Rung("two frontends", Bounds(frontends=2, comms=1, requests=1, reconnects=0, faults=1),
         "per-peer presence: one frontend leaves, the other stays"),
    Rung("two stock frontends",
         Bounds(frontends=2, comms=1, requests=1, reconnects=0, faults=1, stock=2),
         "frontends with no peer topic (jupyter_client): what they get, stdin per "
         "connection, everything else when the last leaves"),
    Rung("adoption",
         Bounds(frontends=2, comms=1, requests=0, reconnects=0, faults=1, adoptions=1),
         "a new session adopts the comm a departed one left detached"),
    Rung("two requests, reconnect",
         Bounds(frontends=1, comms=1, requests=2, reconnects=1, faults=1),
         "requests in both directions across a reconnect, stdin beside comm RPCs"),
    Rung("two frontends, reconnect",
         Bounds(frontends=2, comms=1, requests=1, reconnects=1, faults=1),
         "a frontend reconciling while another stays, comms adopted"),
)
