"""Message sequence charts of the model's steps, as SVG (``commspec check --chart``).

Rules:
- One lifeline for the kernel, one per frontend; one row per step, top to bottom.
- A step that delivers a message is an arrow, sender to receiver, drawn when the
  message is received (the model's steps are deliveries), coloured and labelled by
  its channel. Every other step is a mark on the lifeline of the party that acts.
- Protocol steps are drawn plain, environment steps (what users and the world do:
  starts, crashes, requests) bold, so the cause of a counterexample stands out.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from pathlib import Path

from commspec.model.actions import (
    Action,
    DeliverIopub,
    DeliverShellReply,
    DeliverStdin,
    KernelShell,
    KernelStdinReply,
    KernelSubscribe,
    KernelUnsubscribe,
    StepKind,
)
from commspec.model.broken import RACES, Race
from commspec.model.checker import check
from commspec.model.system import Step

__all__ = ["race_charts", "render_chart", "stale_races", "write_races"]

KERNEL = -1
#: what each delivering step carries: (from kernel?, channel)
ARROWS: dict[type[Action], tuple[bool, str]] = {
    DeliverIopub: (True, "iopub"),
    DeliverShellReply: (True, "shell"),
    DeliverStdin: (True, "stdin"),
    KernelSubscribe: (False, "iopub"),
    KernelUnsubscribe: (False, "iopub"),
    KernelShell: (False, "shell"),
    KernelStdinReply: (False, "stdin"),
}
COLOURS = {"iopub": "#1f77b4", "shell": "#2ca02c", "stdin": "#d62728"}

LANE = 260  # horizontal distance between lifelines
ROW = 34
TOP = 60
LEFT = 40
TEXT_WIDTH = 520


def _party(action: Action) -> int:
    frontend = getattr(action, "frontend", None)
    return frontend if isinstance(frontend, int) else KERNEL


def render_chart(steps: Sequence[Step], frontends: int, title: str = "") -> str:
    """The chart of ``steps`` among a kernel and ``frontends`` frontends, as SVG text."""
    lanes = [KERNEL, *range(frontends)]
    x = {party: LEFT + 60 + i * LANE for i, party in enumerate(lanes)}
    text_x = x[lanes[-1]] + 80
    height = TOP + ROW * (len(steps) + 1)
    width = text_x + TEXT_WIDTH
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        "<defs>",
        *(f'<marker id="head-{channel}" markerWidth="8" markerHeight="8" refX="8" refY="4" '
          f'orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="{colour}"/></marker>'
          for channel, colour in COLOURS.items()),
        "</defs>",
    ]
    if title:
        out.append(f'<text x="{LEFT}" y="20" font-size="14" font-weight="bold">'
                   f'{escape(title)}</text>')
    for party in lanes:
        name = "kernel" if party == KERNEL else f"frontend {party}"
        out.append(f'<text x="{x[party]}" y="{TOP - 16}" text-anchor="middle" '
                   f'font-weight="bold">{name}</text>')
        out.append(f'<line class="lifeline" x1="{x[party]}" y1="{TOP - 8}" x2="{x[party]}" '
                   f'y2="{height - 10}" stroke="#999" stroke-dasharray="4 3"/>')
    for n, step in enumerate(steps, 1):
        y = TOP + ROW * n - ROW // 2
        action = step.action
        weight = "bold" if action.kind is StepKind.ENVIRONMENT else "normal"
        arrow = ARROWS.get(type(action))
        party = _party(action)
        if arrow is not None:
            from_kernel, channel = arrow
            start, end = (x[KERNEL], x[party]) if from_kernel else (x[party], x[KERNEL])
            colour = COLOURS[channel]
            out.append(f'<line class="message" data-channel="{channel}" x1="{start}" '
                       f'y1="{y}" x2="{end}" y2="{y}" stroke="{colour}" stroke-width="1.5" '
                       f'marker-end="url(#head-{channel})"/>')
            out.append(f'<text x="{(start + end) / 2}" y="{y - 4}" text-anchor="middle" '
                       f'fill="{colour}">{channel}</text>')
        else:
            out.append(f'<circle class="event" cx="{x[party]}" cy="{y}" r="5" '
                       'fill="#444"/>')
        out.append(f'<text class="step" x="{text_x}" y="{y + 4}" font-weight="{weight}">'
                   f'{n}. {escape(step.text)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def race_chart(race: Race) -> str:
    """The chart of ``race``: its rule's broken variant's shortest counterexample."""
    violation = check(race.variant(race.bounds)).violation
    if violation is None:
        raise AssertionError(f"{race.variant.__name__} breaks nothing at {race.bounds}: "
                             f"the {race.name} chart would show no race")
    return render_chart(violation.steps, race.bounds.frontends,
                        f"{race.name}: without the rule, {violation.property} breaks")


def race_charts(races: Sequence[Race] = RACES) -> dict[str, str]:
    return {race.name: race_chart(race) for race in races}


def write_races(out_dir: Path, races: Sequence[Race] = RACES) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, svg in race_charts(races).items():
        path = out_dir / f"{name}.svg"
        path.write_text(svg, encoding="utf-8")
        written.append(path)
    return written


def stale_races(out_dir: Path, races: Sequence[Race] = RACES) -> list[str]:
    """Races whose ``<name>.svg`` in ``out_dir`` is missing or differs from the model."""
    return [name for name, svg in race_charts(races).items()
            if not (out_dir / f"{name}.svg").is_file()
            or (out_dir / f"{name}.svg").read_text(encoding="utf-8") != svg]
