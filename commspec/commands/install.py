"""``commspec install``: make the reference kernel, or commspec for ipykernel, a
Jupyter kernel (a kernelspec).

JupyterLab, Notebook, Positron and ``jupyter console --kernel commspec`` then start it
through jupyter_client, which writes the connection file and passes it as
``--connection-file`` (``-f`` for ipykernel). Its ``interrupt_mode`` is ``signal``, as
ipykernel's own: the kernel takes SIGINT as an interrupt, so the Interrupt button
interrupts instead of killing it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_core.paths import SYSTEM_JUPYTER_PATH, jupyter_data_dir

DEFAULT_NAME = "commspec"
DEFAULT_DISPLAY_NAME = "commspec (reference comm kernel)"
IPYKERNEL_NAME = "python3-commspec"
IPYKERNEL_DISPLAY_NAME = "Python 3 (commspec)"

# The names jupyter_client accepts for a kernel (it refuses others when starting one).
_KERNEL_NAME = re.compile(r"[a-z0-9._-]+", re.IGNORECASE)


def kernel_name(text: str) -> str:
    if not _KERNEL_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a kernel name: use letters, digits, '.', '-' and '_'")
    return text


def kernelspec(display_name: str) -> dict[str, Any]:
    """What ``kernel.json`` says: run ``commspec kernel`` on jupyter_client's file."""
    return {
        "argv": [sys.executable, "-m", "commspec", "kernel",
                 "--connection-file", "{connection_file}"],
        "display_name": display_name,
        "language": "commspec",
        "interrupt_mode": "signal",
        "metadata": {"debugger": False},
    }


def ipykernel_spec(display_name: str) -> dict[str, Any]:
    """``kernel.json`` for commspec for ipykernel: ipykernel's own, run through
    ``commspec.ipykernel``."""
    return {
        "argv": [sys.executable, "-m", "commspec.ipykernel", "-f", "{connection_file}"],
        "display_name": display_name,
        "language": "python",
        "interrupt_mode": "signal",
        "metadata": {"debugger": True},
    }


def _ipykernel_missing() -> str | None:
    """Why commspec for ipykernel cannot run with this Python, or None if it can."""
    try:
        import commspec.ipykernel.app  # noqa: F401  (imports ipykernel, checks it)
    except ImportError as e:
        return (f"{e}: install it with  python -m pip install 'commspec[ipykernel]'")
    except RuntimeError as e:  # an ipykernel this package does not support
        return str(e)
    return None


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "install",
        help="install the reference kernel, or commspec for ipykernel, as a kernelspec",
        description="Write a kernelspec that runs 'commspec kernel' (with --ipykernel: "
        "'python -m commspec.ipykernel', an IPython kernel that keeps the spec) with this "
        "Python, as 'python -m ipykernel install' does for IPython. Frontends send its "
        "interrupts as SIGINT, which interrupts it (pending stdin requests end "
        "interrupted). Without "
        f"--user, --sys-prefix or --prefix it goes system-wide ({SYSTEM_JUPYTER_PATH[0]}).",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true",
                       help="install for this user (Jupyter's data directory)")
    where.add_argument("--sys-prefix", action="store_true",
                       help=f"install into this Python's prefix ({sys.prefix})")
    where.add_argument("--prefix", type=Path, default=None,
                       help="install under PREFIX/share/jupyter/kernels")
    p.add_argument("--ipykernel", action="store_true",
                   help="install commspec for ipykernel (an IPython kernel that keeps the "
                   f"spec) instead of the reference kernel: name {IPYKERNEL_NAME!r}, "
                   f"shown as {IPYKERNEL_DISPLAY_NAME!r}")
    p.add_argument("--name", type=kernel_name, default=None,
                   help=f"the kernel's name (default {DEFAULT_NAME}, with --ipykernel "
                   f"{IPYKERNEL_NAME}); an existing kernelspec of that name is replaced")
    p.add_argument("--display-name", default=None,
                   help=f"the name frontends show (default {DEFAULT_DISPLAY_NAME!r}, with "
                   f"--ipykernel {IPYKERNEL_DISPLAY_NAME!r})")


def _location(args: argparse.Namespace) -> tuple[bool, Path | None, Path]:
    """(user, prefix) as jupyter_client takes them, and the folder named in errors."""
    if args.user:
        return True, None, Path(jupyter_data_dir())
    prefix = Path(sys.prefix) if args.sys_prefix else args.prefix
    if prefix is not None:
        return False, prefix, prefix
    return False, None, Path(SYSTEM_JUPYTER_PATH[0])


def run(args: argparse.Namespace) -> int:
    user, prefix, where = _location(args)
    if args.ipykernel:
        missing = _ipykernel_missing()
        if missing is not None:
            print(f"commspec install --ipykernel: {missing}", file=sys.stderr)
            return 2
        name = args.name or IPYKERNEL_NAME
        spec = ipykernel_spec(args.display_name or IPYKERNEL_DISPLAY_NAME)
    else:
        name = args.name or DEFAULT_NAME
        spec = kernelspec(args.display_name or DEFAULT_DISPLAY_NAME)
    with tempfile.TemporaryDirectory(prefix="commspec-kernelspec-") as source:
        (Path(source) / "kernel.json").write_text(json.dumps(spec, indent=2), encoding="utf-8")
        if args.ipykernel:
            _copy_logos(Path(source))
        try:
            installed = KernelSpecManager().install_kernel_spec(
                source, kernel_name=name, user=user,
                prefix=str(prefix) if prefix is not None else None)
        except OSError as e:
            hint = "" if user or prefix is not None else "; --user installs for you alone"
            print(f"commspec install: cannot install the kernelspec under {where} "
                  f"({e.strerror or e}){hint}", file=sys.stderr)
            return 2
    print(f"Installed kernelspec {name} in {installed}")
    return 0


def _copy_logos(folder: Path) -> None:
    """ipykernel's logos, which frontends show beside the kernel's name."""
    import ipykernel

    resources = Path(ipykernel.__file__).parent / "resources"
    for logo in resources.glob("logo-*.png"):
        (folder / logo.name).write_bytes(logo.read_bytes())
