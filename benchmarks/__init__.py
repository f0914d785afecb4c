"""Benchmarks of the reference implementation against stock ipykernel and raw pyzmq.

Run ``python -m benchmarks`` (``--quick`` for a short run); see BENCHMARKS.md.
Every figure a target speaks of is a ratio between figures measured in the same
run, because the machine is shared and noisy.
"""
