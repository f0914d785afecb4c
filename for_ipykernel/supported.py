"""The ipykernel releases commspec.ipykernel is built on; importing it refuses others.

- From 7.2 on, IOPub is an XPUB, whose subscription frames are the presence source
  (7.0 and 7.1 bind a PUB, which reports no subscriber).
- 7.2 and 7.3 send shell replies straight on the shell ROUTER from a stream callback
  (``SubshellManager._send_on_shell_channel``). With ``ROUTER_MANDATORY``, which the
  spec needs, a reply to a frontend that has left raises EHOSTUNREACH there, and
  replies stop (measured on 7.2.0: ``commspec conform`` 16 of 22, execute replies
  missing after a departure). 7.4 sends them through the shell stream, which logs the
  error and goes on.

So: 7.4 (7.4.0 tested; the next minor release is not assumed to keep the internals
this package reads, listed in the closing note of its issue and in ``kernel.py``).
"""

from __future__ import annotations

from ipykernel._version import __version__, version_info

__all__ = ["SUPPORTED"]

#: the lowest and the highest (major, minor) supported
SUPPORTED = ((7, 4), (7, 4))

if not SUPPORTED[0] <= tuple(version_info[:2]) <= SUPPORTED[1]:
    raise RuntimeError(
        f"commspec.ipykernel supports ipykernel 7.4, not {__version__} "
        "(before 7.2 IOPub reports no subscriber; 7.2 and 7.3 stop replying once a "
        "reply to a departed frontend fails): python -m pip install 'ipykernel>=7.4,<7.5'")
