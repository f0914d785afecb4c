"""Model-based tests: Hypothesis drives the system model and a live kernel in lockstep.

- :mod:`.adapter`: the kernel under test (``KernelAdapter``; ``ReferenceKernel``).
- :mod:`.harness`: one environment action applied to both, compared at quiescence.
- :mod:`.machine`: the Hypothesis ``RuleBasedStateMachine`` over the harness.
"""
