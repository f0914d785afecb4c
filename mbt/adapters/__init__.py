"""Adapters for kernels that do not implement commspec's white-box interface themselves.

- :mod:`.ipykernel`: stock ipykernel, through a shim it runs (grey box: it reads
  ipykernel's internals; the versions it is tested on are pinned there).
"""
