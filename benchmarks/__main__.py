"""``python -m benchmarks [--quick]``: every figure and ratio from one run, as tables."""

from __future__ import annotations

import argparse
import sys
import time

from . import at_once, churn, codec, departure, disconnect, fail_pending, oversize, report, rpc
from .common import load_average, machine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="a short run (a few seconds per section) for smoke tests")
    args = parser.parse_args(argv)
    sizes: tuple[int, ...]
    if args.quick:
        seconds, rounds = 0.3, 1
        trials = {"close": 3, "kill": 2, "stop": 1}
        sizes, repeats = (1_000, 10_000), 1
        codec_messages, codec_repeats = 2_000, 1
    else:
        seconds, rounds = 1.5, 3
        trials = {"close": 100, "kill": 20, "stop": 5}
        sizes, repeats = (1_000, 10_000, 100_000), 3
        codec_messages, codec_repeats = 20_000, 5

    started = time.perf_counter()
    info = machine()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), flush=True)
    rates = rpc.measure(seconds, rounds)
    print("\n" + report.rpc_table(rates), flush=True)
    print("\n" + report.cpu_table(rates), flush=True)
    codec_costs = codec.measure(codec_messages, codec_repeats)
    print("\n" + report.codec_table(codec_costs), flush=True)
    latencies = disconnect.measure(trials)
    print("\n" + report.disconnect_table(latencies), flush=True)
    costs = fail_pending.measure(sizes, repeats)
    print("\n" + report.fail_table(costs), flush=True)
    print("\n" + report.targets_table(rates, latencies, costs), flush=True)
    samples = churn.measure(churn.QUICK_SAMPLES if args.quick else churn.SAMPLES)
    print("\n" + report.churn_table(samples), flush=True)
    burst = at_once.measure(at_once.QUICK_N if args.quick else at_once.N)
    frame = oversize.measure(oversize.QUICK_FRAME_MIB if args.quick else oversize.FRAME_MIB)
    print("\n" + report.load_tables(burst, frame), flush=True)
    departures = (departure.measure(departure.QUICK_N, departure.QUICK_WINDOW) if args.quick
                  else departure.measure(departure.N))
    print("\n" + report.departure_table(departures), flush=True)
    print(f"\n(run took {time.perf_counter() - started:.0f} s; load average at the end "
          f"{load_average()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
