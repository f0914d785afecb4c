"""The protocol cores do no I/O: ``impl/core/`` imports no sockets, threads, futures or clock.

Checked on the source, not on ``sys.modules`` (Python's own start-up imports
``threading`` and ``time``): every module of ``commspec.impl.core``, and every
commspec module those import, transitively, may import none of the forbidden
modules. The check is shown to fail on a module that breaks the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: the source folder of each commspec package (package-dir in pyproject.toml)
PACKAGES = {"commspec.model": ROOT / "model", "commspec.impl": ROOT / "impl",
            "commspec.mbt": ROOT / "mbt", "commspec": ROOT / "commspec"}
FORBIDDEN = ("zmq", "threading", "concurrent", "time", "asyncio", "socket", "select",
             "selectors", "subprocess", "multiprocessing", "queue")


def _path(module: str) -> Path | None:
    for package, folder in sorted(PACKAGES.items(), key=lambda p: -len(p[0])):
        if module == package or module.startswith(package + "."):
            rest = module[len(package):].lstrip(".").replace(".", "/")
            base = folder / rest if rest else folder
            if (base / "__init__.py").exists():
                return base / "__init__.py"
            if base.with_suffix(".py").exists():
                return base.with_suffix(".py")
    return None


def _imports(module: str, source: str) -> list[str]:
    package = module if _path(module) and _path(module).name == "__init__.py" else (  # type: ignore[union-attr]
        module.rsplit(".", 1)[0])
    out: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            if node.module is None or node.level:
                # "from . import x" / "from .mod import x": x may be a module too
                out.extend(f"{name}.{alias.name}" for alias in node.names
                           if _path(f"{name}.{alias.name}") is not None)
            out.append(name)
    return out


def violations(start: str, sources: dict[str, str] | None = None) -> list[str]:
    """Every forbidden import reachable from ``start``'s commspec imports, as
    'module imports name'. ``sources`` overrides files (to show the check failing)."""
    sources = sources or {}
    seen: set[str] = set()
    todo = [start]
    found: list[str] = []
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = _path(module)
        source = sources.get(module) or (path.read_text() if path else None)
        if source is None:
            continue
        for name in _imports(module, source):
            if name.split(".")[0] in FORBIDDEN:
                found.append(f"{module} imports {name}")
            elif name.startswith("commspec") and name not in ("commspec", "commspec.impl"):
                # a package's __init__ runs on import, but the cores never name it: the
                # rule is about what their own code and what it uses pulls in
                todo.append(name)
    return sorted(found)


CORE_MODULES = sorted(
    f"commspec.impl.core.{p.stem}" for p in (ROOT / "impl" / "core").glob("*.py")
    if p.stem != "__init__"
)


@pytest.mark.parametrize("module", CORE_MODULES)
def test_the_core_imports_no_io(module: str) -> None:
    assert violations(module) == []


def test_every_core_module_is_checked() -> None:
    assert {"commspec.impl.core.kernel", "commspec.impl.core.frontend",
            "commspec.impl.core.events", "commspec.impl.core.requests"} <= set(CORE_MODULES)


def test_the_check_fails_on_a_core_module_that_does_io() -> None:
    broken = "from __future__ import annotations\nimport time\nfrom ..errors import NoFrontend\n"
    assert violations("commspec.impl.core.kernel", {"commspec.impl.core.kernel": broken}) == [
        "commspec.impl.core.kernel imports time"]
    # and through a commspec module the core imports
    indirect = "from commspec.impl.loop import IoLoop\n"
    found = violations("commspec.impl.core.kernel", {"commspec.impl.core.kernel": indirect})
    assert "commspec.impl.loop imports zmq" in found and "commspec.impl.loop imports time" in found
