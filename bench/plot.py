"""A line chart as a small hand-written SVG (the benchmarks need no plotting library):
samples of one value over time, with a dashed reference line."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from pathlib import Path

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 24, 32


def line_chart(
    samples: Sequence[tuple[float, float]],
    *,
    title: str,
    reference: float,
    reference_label: str,
    y_label: str,
) -> str:
    """SVG text: `samples` as (seconds, value), a dashed line at `reference`."""
    if not samples:
        raise ValueError("nothing to draw")
    span_x = max(max(t for t, _ in samples), 1e-9)
    # A round top (a multiple of 4), so the five gridlines fall on whole numbers.
    top = float(max(4, math.ceil(max(max(v for _, v in samples), reference) * 1.15 / 4) * 4))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + plot_w * t / span_x

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v / top)

    points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in samples)
    ticks = []
    for i in range(5):
        value = top * i / 4
        ticks.append(
            f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:.0f}</text>'
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            'stroke="#e3e3e3"/>'
        )
    for i in range(6):
        t = span_x * i / 5
        ticks.append(
            f'<text x="{x(t):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{t:.0f} s</text>'
        )
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
            f"<title>{escape(title)}</title>",
            '<rect width="100%" height="100%" fill="white"/>',
            f'<text x="{LEFT}" y="15" font-size="13">{escape(title)}</text>',
            *ticks,
            f'<text x="12" y="{TOP + plot_h / 2:.0f}" transform="rotate(-90 12 '
            f'{TOP + plot_h / 2:.0f})" text-anchor="middle">{escape(y_label)}</text>',
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(reference):.1f}" '
            f'y2="{y(reference):.1f}" stroke="#c0392b" stroke-dasharray="5,4"/>',
            f'<text x="{WIDTH - RIGHT}" y="{y(reference) - 4:.1f}" text-anchor="end" '
            f'fill="#c0392b">{escape(reference_label)}</text>',
            f'<polyline points="{points}" fill="none" stroke="#2c6fbb" stroke-width="1.5"/>',
            "</svg>",
            "",
        ]
    )


def write_chart(path: Path, svg: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(svg)
