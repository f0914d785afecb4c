"""The printed tables: figures, ratios, and each target with whether it is met."""

from __future__ import annotations

from collections.abc import Sequence

from commspec.impl.core.comms import DEFAULT_MAX_DETACHED

from .at_once import AtOnce
from .churn import Sample
from .codec import CodecCost
from .common import percentile
from .departure import DepartureCost
from .disconnect import HEARTBEAT, Latencies
from .fail_pending import FailCost
from .oversize import OversizeCost
from .rpc import Rates


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


#: the stacks ours is compared with, and how the ratio rows name them
RATIO_LABELS = {
    "ipykernel": "ipykernel",
    "wire": "Jupyter wire floor",
    "codec": "codec wire floor",
    "floor": "raw four-message floor",
    "raw": "raw",
}


def rpc_table(rates: dict[str, Rates]) -> str:
    rows = [[r.name, f"{r.by_window[1]:,.0f}", f"{r.by_window[64]:,.0f}"] for r in rates.values()]
    ours = rates["ours"].by_window
    for other, label in RATIO_LABELS.items():
        theirs = rates[other].by_window
        rows.append([f"ratio ours / {label}", f"{ours[1] / theirs[1]:.2f}x",
                     f"{ours[64] / theirs[64]:.2f}x"])
    return table(["RPC echo, round trips/s", "1 in flight", "64 in flight"], rows)


def codec_table(costs: list[CodecCost]) -> str:
    rows = [[c.what, f"{c.ours:.1f}", f"{c.session:.1f}", f"{c.session / c.ours:.2f}x"]
            for c in costs]
    return table(["codec: comm_msg, CPU us per message", "ours", "Session", "Session / ours"],
                 rows)


def cpu_table(rates: dict[str, Rates]) -> str:
    rows = [
        [r.name, *(f"{r.cpu[w][side]:,.0f}" for w in (1, 64) for side in (0, 1))]
        for r in rates.values()
    ]
    return table(["CPU us per round trip", "1: client", "1: server", "64: client",
                  "64: server"], rows)


def disconnect_table(latencies: list[Latencies]) -> str:
    rows = [
        [lat.how, str(len(lat.ours)), _ms(percentile(lat.ours, 50)), _ms(percentile(lat.ours, 99)),
         _ms(percentile(lat.raw, 50)), _ms(percentile(lat.raw, 99))]
        for lat in latencies
    ]
    return table(["disconnect (ms)", "trials", "ours p50", "ours p99", "raw unsub p50",
                  "raw unsub p99"], rows)


def fail_table(costs: list[FailCost]) -> str:
    rows = [
        [f"{c.n:,}", _ms(c.fail_all), f"{c.ns_per_request(c.fail_all):,.0f}",
         _ms(c.fail_comm), f"{c.ns_per_request(c.fail_comm):,.0f}",
         f"{c.ns_per_request(c.floor):,.0f}", f"{c.ns_per_request(c.future_only):,.0f}"]
        for c in costs
    ]
    return table(["fail N pending", "fail_all ms", "fail_all ns/req", "fail_comm ms",
                  "fail_comm ns/req", "floor ns/req", "future only ns/req"], rows)


def targets_table(
    rates: dict[str, Rates], latencies: list[Latencies], costs: list[FailCost]
) -> str:
    ours, ipk, floor = (rates[k].by_window for k in ("ours", "ipykernel", "floor"))
    rows: list[list[str]] = []

    def check(name: str, measured: str, met: bool) -> None:
        rows.append([name, measured, "met" if met else "NOT met"])

    check("1 in flight >= 8x ipykernel", f"{ours[1] / ipk[1]:.2f}x", ours[1] >= 8 * ipk[1])
    check("1 in flight >= 0.6x raw four-message floor", f"{ours[1] / floor[1]:.2f}x",
          ours[1] >= 0.6 * floor[1])
    check("64 in flight >= 15x ipykernel", f"{ours[64] / ipk[64]:.2f}x",
          ours[64] >= 15 * ipk[64])
    for lat in latencies:
        ours_p99 = percentile(lat.ours, 99)
        if lat.how == "stop":
            bound = HEARTBEAT.timeout + HEARTBEAT.interval
            check("stop: p99 <= hb timeout + interval", f"{_ms(ours_p99)} ms <= {_ms(bound)} ms",
                  ours_p99 <= bound)
        else:
            gap = ours_p99 - percentile(lat.raw, 99)
            check(f"{lat.how}: p99 within 1 ms of raw unsubscribe p99",
                  f"{gap * 1e3:+.3f} ms", gap <= 1e-3)
    largest = max(costs, key=lambda c: c.n)
    if largest.n >= 100_000:
        worst = max(largest.fail_all, largest.fail_comm)
        check("fail 100,000 pending < 200 ms", f"{_ms(worst)} ms", worst < 0.2)
    per = [c.ns_per_request(max(c.fail_all, c.fail_comm)) for c in costs]
    spread = max(per) / min(per)
    check("linear in N (ns/req spread across N < 2x)", f"{spread:.2f}x", spread < 2)
    return table(["target", "measured", "verdict"], rows)


#: how much the kernel's resident memory may grow between two samples and count as flat
CHURN_RSS_SLACK_KIB = 8 * 1024


def churn_table(samples: list[Sample], max_detached: int = DEFAULT_MAX_DETACHED) -> str:
    """The kernel's fds, threads, VmRSS and comms after each count of churn cycles, and
    whether they stayed flat (from the second sample on) and bounded."""
    rows = [[f"churn: after {s.cycles} cycles", str(s.resources.fds), str(s.resources.threads),
             f"{s.resources.rss_kib / 1024:.1f}", str(s.default_comms), str(s.persistent_comms)]
            for s in samples]
    figures = table(["churn (commspec kernel process)", "fds", "threads", "VmRSS MiB",
                     "default comms", "persistent comms"], rows)
    warm, last = samples[1], samples[-1]
    checks: list[list[str]] = []

    def check(name: str, measured: str, met: bool) -> None:
        checks.append([name, measured, "met" if met else "NOT met"])

    check(f"fds flat from {warm.cycles} to {last.cycles} cycles",
          f"{warm.resources.fds} -> {last.resources.fds}",
          last.resources.fds <= warm.resources.fds)
    check(f"threads flat from {warm.cycles} to {last.cycles} cycles",
          f"{warm.resources.threads} -> {last.resources.threads}",
          last.resources.threads <= warm.resources.threads)
    growth = last.resources.rss_kib - warm.resources.rss_kib
    check(f"VmRSS flat from {warm.cycles} to {last.cycles} cycles (< {CHURN_RSS_SLACK_KIB // 1024} "
          "MiB)", f"{growth / 1024:+.1f} MiB", growth < CHURN_RSS_SLACK_KIB)
    expected = min(last.cycles, max_detached)
    check(f"persistent comms = min(cycles, max_detached {max_detached}), no default",
          f"{last.persistent_comms} persistent, {last.default_comms} default",
          last.persistent_comms == expected and last.default_comms == 0)
    return figures + "\n\n" + table(["churn target", "measured", "verdict"], checks)


#: the most an oversize frame may add to the kernel's peak memory (libzmq refuses it unread)
OVERSIZE_PEAK_SLACK_MIB = 16


def load_tables(burst: AtOnce, oversize: OversizeCost) -> str:
    """Requests fired at once and what became of each; an oversize frame's cost to the
    kernel; and the targets: every request its result, the frame refused unread."""
    otherwise = ", ".join(f"{count:,} {name}" for name, count in burst.otherwise.most_common())
    before, after = (kib / 1024 for kib in burst.kernel_peak_kib)
    fired = table(["echo requests fired at once, one comm (ours)", "ended in their result",
                   "ended otherwise", "never ended", "s", "kernel VmHWM MiB"],
                  [[f"{burst.n:,} at once", f"{burst.results:,}", otherwise or "none",
                    f"{burst.never_ended:,}", f"{burst.seconds:.2f}",
                    f"{before:.1f} -> {after:.1f}"]])
    frame = table(["oversize unsigned frame on shell (commspec kernel process)",
                   "VmHWM before MiB", "VmHWM after MiB", "connection cut",
                   "answers again after s"],
                  [[f"{oversize.frame_mib} MiB frame, 64 MiB limit",
                    f"{oversize.peak_before_kib / 1024:.1f}",
                    f"{oversize.peak_after_kib / 1024:.1f}",
                    "yes" if oversize.connection_cut else "no", f"{oversize.seconds:.2f}"]])
    checks = [
        [f"{burst.n:,} at once: every one ends in its result",
         f"{burst.results:,} of {burst.n:,}", _verdict(burst.results == burst.n)],
        [f"oversize frame: refused unread (VmHWM +< {OVERSIZE_PEAK_SLACK_MIB} MiB, cut)",
         f"{oversize.growth_mib:+.1f} MiB, {'cut' if oversize.connection_cut else 'not cut'}",
         _verdict(oversize.growth_mib < OVERSIZE_PEAK_SLACK_MIB and oversize.connection_cut)],
    ]
    return "\n\n".join([fired, frame, table(["load target", "measured", "verdict"], checks)])


#: "within the same few milliseconds": another frontend's worst round trip across the
#: departure may exceed its worst one before by at most this much
DEPARTURE_SLACK_MS = 5.0


def departure_table(costs: list[DepartureCost]) -> str:
    """Another frontend's kernel_info round trips before and across a departure that
    fails N pending requests, and the target: no worse by more than a few ms."""
    def ms(values: list[float]) -> str:
        return (f"{percentile(values, 50):.2f} / {percentile(values, 99):.2f} / "
                f"{max(values):.2f}")

    rows = [[f"{c.n:,} pending, {c.comm} comm", ms(c.before), ms(c.after), f"{len(c.after)}",
             f"{c.failed_all_ms:.1f}"] for c in costs]
    figures = table(["frontend A leaves with", "B's kernel_info ms before (p50 / p99 / max)",
                     "across the departure (p50 / p99 / max)", "probes across",
                     "all N failed after ms"], rows)
    checks = [[f"{c.n:,} pending, {c.comm}: max across <= max before + "
               f"{DEPARTURE_SLACK_MS:.0f} ms",
               f"{max(c.after):.2f} ms vs {max(c.before):.2f} ms",
               _verdict(max(c.after) <= max(c.before) + DEPARTURE_SLACK_MS)] for c in costs]
    return "\n\n".join([figures, table(["departure target", "measured", "verdict"], checks)])


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"
