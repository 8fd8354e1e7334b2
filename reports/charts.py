"""Inline SVG charts in pure Python (no plotting library, nothing fetched).

Output is a self-contained ``<svg>`` string with fixed dimensions in CSS pixels, sized
for an A4 column (weasyprint renders inline SVG natively). Labels are escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

# Colour-blind-safe palette (Okabe-Ito), fixed order so a series keeps its colour.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")

WIDTH = 640
HEIGHT = 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 44, 8, 10, 46


def _nice_max(value: int) -> int:
    """The smallest 1/2/5 × 10^k at or above ``value`` (at least 1)."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= value:
                return max(1, m * step)
        step *= 10


def _axes(days: Sequence[str], top: int, title: str) -> list[str]:
    plot_h = HEIGHT - _TOP - _BOTTOM
    plot_w = WIDTH - _LEFT - _RIGHT
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        'font-family="DejaVu Sans" font-size="9">',
        f"<title>{escape(title)}</title>",
    ]
    ticks = 5 if top >= 5 else top  # top is 1, 2 or 5×10^k: every tick is an integer
    for i in range(ticks + 1):
        value = top * i // ticks
        y = _TOP + plot_h - plot_h * i / ticks
        out.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_LEFT + plot_w}" y2="{y:.1f}" '
                   'stroke="#ddd" stroke-width="0.5"/>')
        out.append(f'<text x="{_LEFT - 4}" y="{y + 3:.1f}" text-anchor="end">{value}</text>')
    n = max(1, len(days))
    every = max(1, (n + 9) // 10)  # at most ~10 date labels
    for i, day in enumerate(days):
        if i % every == 0:
            x = _LEFT + plot_w * (i + 0.5) / n
            out.append(f'<text x="{x:.1f}" y="{HEIGHT - _BOTTOM + 12}" text-anchor="middle">'
                       f"{escape(day[5:])}</text>")
    return out


def _legend(names: Sequence[str]) -> list[str]:
    out = []
    x = _LEFT
    for i, name in enumerate(names):
        colour = PALETTE[i % len(PALETTE)]
        out.append(f'<rect x="{x}" y="{HEIGHT - 16}" width="9" height="9" fill="{colour}"/>')
        out.append(f'<text x="{x + 12}" y="{HEIGHT - 8}">{escape(name)}</text>')
        x += 24 + 6 * len(name)
    return out


def stacked_bars(title: str, days: Sequence[str], series: Mapping[str, Sequence[int]],
                 labels: Mapping[str, str] | None = None) -> str:
    """One bar per day, stacked by series (e.g. records per day per origin)."""
    names = list(series)
    totals = [sum(series[s][i] for s in names) for i in range(len(days))]
    top = _nice_max(max(totals, default=0))
    plot_h = HEIGHT - _TOP - _BOTTOM
    plot_w = WIDTH - _LEFT - _RIGHT
    n = max(1, len(days))
    bar_w = max(1.0, plot_w / n * 0.8)
    out = _axes(days, top, title)
    for i in range(len(days)):
        x = _LEFT + plot_w * i / n + (plot_w / n - bar_w) / 2
        y: float = _TOP + plot_h
        for j, name in enumerate(names):
            value = series[name][i]
            if value <= 0:
                continue
            h = plot_h * value / top
            y -= h
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                       f'fill="{PALETTE[j % len(PALETTE)]}"/>')
    out += _legend([(labels or {}).get(n_, n_) for n_ in names])
    out.append("</svg>")
    return "".join(out)


def lines(title: str, days: Sequence[str], series: Mapping[str, Sequence[int]],
          labels: Mapping[str, str] | None = None) -> str:
    """One polyline per series (e.g. opt-ins and opt-outs per day)."""
    names = list(series)
    top = _nice_max(max((v for s in names for v in series[s]), default=0))
    plot_h = HEIGHT - _TOP - _BOTTOM
    plot_w = WIDTH - _LEFT - _RIGHT
    n = max(1, len(days))
    out = _axes(days, top, title)
    for j, name in enumerate(names):
        points = " ".join(
            f"{_LEFT + plot_w * (i + 0.5) / n:.1f},{_TOP + plot_h - plot_h * v / top:.1f}"
            for i, v in enumerate(series[name])
        )
        out.append(f'<polyline points="{points}" fill="none" stroke-width="1.5" '
                   f'stroke="{PALETTE[j % len(PALETTE)]}"/>')
    out += _legend([(labels or {}).get(n_, n_) for n_ in names])
    out.append("</svg>")
    return "".join(out)
