"""The protocol core of the reference implementation: state and policy, no I/O."""
