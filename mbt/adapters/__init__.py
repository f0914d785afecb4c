"""Adapters for kernels that do not implement commspec's white-box interface themselves.

- :mod:`.ipykernel`: stock ipykernel, through a shim it runs (grey box: it reads
  ipykernel's internals; the versions it is tested on are pinned there).

``commspec mbt --adapter NAME`` picks one by its name in :data:`ADAPTERS`; each is an
:class:`~commspec.mbt.external.ExternalKernel` that also says which kernel it starts
when none is named (``default_source``) and which actions its kernel cannot make
happen (``skipped``, left out as ``--skip`` leaves them out).
"""

from __future__ import annotations

from .ipykernel import IpykernelAdapter

__all__ = ["ADAPTERS", "IpykernelAdapter"]

ADAPTERS: dict[str, type[IpykernelAdapter]] = {"ipykernel": IpykernelAdapter}
