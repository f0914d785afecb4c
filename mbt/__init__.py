"""Model-based tests: Hypothesis drives the system model and a system under test in lockstep.

- :mod:`.harness`: the lockstep: one environment action applied to the model and to
  any :class:`~.harness.System`, compared at quiescence.
- :mod:`.live`: the live system (``LiveSystem``): a kernel under test and reference
  frontends, each in a process of its own.
- :mod:`.machine`: the Hypothesis ``RuleBasedStateMachine``, one rule per action type.
- :mod:`.race`: the reply/departure race, a test action with four orders.
- :mod:`.projection`: what both sides can show (``Observation``, ``project``).
- :mod:`.recorder`: the live trace (``Recorder``) and transition coverage.
- :mod:`.adapter`: the kernel under test (``KernelAdapter``; ``ReferenceKernel``).
- :mod:`.external`: any kernel in a process of its own, through its trace file and its
  control socket (``ExternalKernel``; SPEC.md, "A kernel in any language").
- :mod:`.scenarios`: the directed programs, each to a verdict; :mod:`.adapter_edges`:
  scenarios through the adapter alone; :mod:`.edges`, :mod:`.session_edges`: the
  reference-only ones.
- :mod:`.explain`: a mismatch in the spec's words (machine, row, property, section).
"""
