"""State diagrams of the declared machines, drawn by ``transitions`` from the spec itself.

The drawing goes through ``transitions``' own diagram support fed with
``MachineSpec.transitions_config()``, so a diagram cannot show a transition the
table does not have. DOT is produced by the pure-Python ``graphviz`` package and
needs no system Graphviz; only SVG/PNG rendering does (pygraphviz, whose wheels
bundle Graphviz, or the ``dot`` program).

A diagram shows the machine, not one object's run of it: the state a model
happens to sit in is *not* highlighted, the initial state gets an explicit start
marker instead, and terminal (absorbing) states get a double border and a grey fill.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from transitions.extensions import GraphMachine
from transitions.extensions.diagrams_base import BaseGraph
from transitions.extensions.diagrams_graphviz import Graph

from commspec.model import MACHINES, MachineSpec

FORMATS: tuple[str, ...] = ("dot", "svg", "png")

#: the name of the invisible node the start arrow comes from
START_NODE = "__start__"

_NODE_DEFAULT: dict[str, str] = {
    "style": "rounded,filled",
    "shape": "rectangle",
    "fillcolor": "white",
    "color": "black",
    "peripheries": "1",
    "fontname": "Helvetica",
}
_TERMINAL: dict[str, str] = {"peripheries": "2", "fillcolor": "gray90"}

_STYLES: dict[str, Any] = {
    "node": {
        "default": _NODE_DEFAULT,
        "inactive": {},
        "active": {},
        "previous": {},
        "terminal": _TERMINAL,
    },
    "edge": {
        "default": {"color": "black", "fontname": "Helvetica", "fontsize": "11"},
        "previous": {},
    },
    "graph": {
        "default": {"color": "black", "fillcolor": "white", "style": "solid",
                    "fontname": "Helvetica"},
    },
}


class RenderError(RuntimeError):
    """No Graphviz is available to turn DOT into an image; ``written`` is what was
    written all the same (every DOT, and whatever rendered before)."""

    def __init__(self, message: str, written: Iterable[Path] = ()) -> None:
        super().__init__(message)
        self.written = list(written)


#: how to get a renderer, in every message that lacks one
INSTALL_RENDERER = ("pip install 'commspec[render]' (pygraphviz, whose wheels bundle "
                    "Graphviz) or install Graphviz's dot program; DOT needs neither "
                    "(--format dot)")

#: a warning of the fontconfig bundled in pygraphviz's wheels, older than the system's
#: configuration: it does not know the newer elements there and skips them. Harmless:
#: the diagrams use Helvetica, found either way.
_STALE_FONTCONFIG = re.compile(rb'^Fontconfig warning: .*unknown element "[^"]*"$')


class _SpecGraph(Graph):
    """transitions' graphviz backend, with one event per line on a shared edge.

    transitions joins the events of parallel rows with " | " on one line, which
    makes machines with many exits (kernel_comm's open -> closed) several screens
    wide. One line per event keeps the diagram narrow and each label readable.
    """

    def _add_edges(self, transitions: list[dict[str, str]], container: Any) -> None:
        labels: dict[str, dict[str, list[str]]] = {}
        for t in transitions:
            dests = labels.setdefault(t["source"], {})
            dests.setdefault(t.get("dest", t["source"]), []).append(self._transition_label(t))
        for src, dests in labels.items():
            for dst, lines in dests.items():
                container.edge(src, dst, label="\\n".join(lines))


class _SpecGraphMachine(GraphMachine):
    """A GraphMachine whose styles describe the spec, not a live model.

    transitions marks the model's current state "active" (red border, salmon
    fill) and a just-taken edge "previous" (blue). Both are mapped to the plain
    default here, so the initial state looks like any other; "terminal" is ours.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Set before the base __init__, which draws the model's first graph.
        self.style_attributes = _STYLES
        super().__init__(*args, **kwargs)

    def _init_graphviz_engine(self, graph_engine: str) -> type[BaseGraph]:
        if graph_engine != "graphviz":
            raise ValueError("commspec diagrams are written as DOT by the graphviz backend")
        return _SpecGraph


def _model_for(spec: MachineSpec[Any, Any]) -> object:
    """A bare model with one method per guard fact, as transitions' conditions need.

    Their values never matter for a drawing: every row is drawn, guarded or not.
    """

    def fact(self: object) -> bool:
        return True

    namespace = {f.value: fact for f in spec.facts}
    return type(f"{spec.name}_diagram_model", (), namespace)()


def to_dot(spec: MachineSpec[Any, Any]) -> str:
    """The DOT source of ``spec``'s diagram: deterministic, no system Graphviz needed."""
    model = _model_for(spec)
    machine = _SpecGraphMachine(
        model=model,
        **spec.transitions_config(),
        auto_transitions=False,
        graph_engine="graphviz",
        show_conditions=True,
        title=spec.title,
    )
    graph = machine.model_graphs[id(model)]
    graph.reset_styling()
    # sorted: frozenset order would otherwise leak into nothing here, but keep the
    # styling calls in a stable order all the same
    for state in sorted(spec.terminal, key=lambda s: s.value):
        graph.set_node_style(state.value, "terminal")
    digraph = model.get_graph()  # type: ignore[attr-defined]
    digraph.node(START_NODE, label="", shape="point", width="0.15", style="filled",
                 fillcolor="black", peripheries="1")
    digraph.edge(START_NODE, spec.initial.value, label="")
    source: str = digraph.source
    return source


def render(dot: str, fmt: str) -> bytes:
    """Render DOT to ``fmt`` (svg, png) with pygraphviz if importable, else ``dot``."""
    try:
        import pygraphviz
    except ImportError:
        pygraphviz = None
    if pygraphviz is not None:
        with renderer_stderr():
            data: bytes = pygraphviz.AGraph(string=dot).draw(format=fmt, prog="dot")
        return data
    exe = shutil.which("dot")
    if exe is None:
        raise RenderError(f"rendering {fmt} needs Graphviz: {INSTALL_RENDERER}")
    done = subprocess.run([exe, f"-T{fmt}"], input=dot.encode(), capture_output=True, check=True)
    return done.stdout


@contextlib.contextmanager
def renderer_stderr() -> Iterator[None]:
    """What the C libraries write to stderr meanwhile, less the known stale-fontconfig
    warning (see ``_STALE_FONTCONFIG``), which every run would otherwise print.

    The libraries write to file descriptor 2 directly, not through ``sys.stderr``, so
    the descriptor itself is redirected for the while, and the rest written back."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                captured.seek(0)
                kept = [line for line in captured.read().splitlines(keepends=True)
                        if not _STALE_FONTCONFIG.match(line.rstrip(b"\r\n"))]
                if kept:
                    os.write(2, b"".join(kept))
    finally:
        os.close(saved)


def write(
    out_dir: Path,
    formats: Iterable[str] = ("dot", "svg"),
    machines: Iterable[MachineSpec[Any, Any]] = MACHINES,
) -> list[Path]:
    """Write ``<machine.name>.<fmt>`` for every machine and format; return the paths.

    Every DOT first (it needs no Graphviz), then the renderings: without a renderer
    the DOT is all there, and the RenderError carries what was written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    formats = tuple(formats)
    sources = {spec.name: to_dot(spec) for spec in machines}
    written: list[Path] = []
    if "dot" in formats:
        for name, dot in sources.items():
            path = out_dir / f"{name}.dot"
            path.write_text(dot, encoding="utf-8")
            written.append(path)
    for fmt in (f for f in formats if f != "dot"):
        for name, dot in sources.items():
            path = out_dir / f"{name}.{fmt}"
            try:
                path.write_bytes(render(dot, fmt))
            except RenderError as e:  # no renderer: the next one would fail the same way
                raise RenderError(str(e), written) from None
            written.append(path)
    return written


def stale(
    out_dir: Path, machines: Iterable[MachineSpec[Any, Any]] = MACHINES
) -> list[str]:
    """Machines whose ``<name>.dot`` in ``out_dir`` is missing or differs from the model."""
    out: list[str] = []
    for spec in machines:
        path = out_dir / f"{spec.name}.dot"
        if not path.is_file() or path.read_text(encoding="utf-8") != to_dot(spec):
            out.append(spec.name)
    return out
