"""Small server-rendered SVG line charts for the dashboard (no JavaScript, no chart library).

Only numbers go into the markup, so it is safe to mark it safe.
"""

from __future__ import annotations

from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT, PAD = 320, 120, 24


def line_chart(points: list[tuple[float, float]], *, label: str, y_format: str = "{:.3f}",
               x_name: str = "epoch") -> SafeString:
    """An SVG line chart of (x, y) points with its y range written at the left; "" for no points."""
    points = [(float(x), float(y)) for x, y in points if y is not None]
    if not points:
        return mark_safe("")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1e-9

    def at(x: float, y: float) -> str:
        px = PAD + (x - x0) / (x1 - x0) * (WIDTH - 2 * PAD)
        py = HEIGHT - PAD - (y - y0) / (y1 - y0) * (HEIGHT - 2 * PAD)
        return f"{px:.1f},{py:.1f}"

    path = " ".join(at(x, y) for x, y in points)
    dots = "".join(f'<circle cx="{at(x, y).split(",")[0]}" cy="{at(x, y).split(",")[1]}" r="2.5"/>'
                   for x, y in points) if len(points) <= 30 else ""
    title = _escape(label)
    return mark_safe(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{title}">'
        f"<title>{title}</title>"
        f'<line class="axis" x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}"/>'
        f'<text x="2" y="{PAD}">{_escape(y_format.format(y1))}</text>'
        f'<text x="2" y="{HEIGHT - PAD}">{_escape(y_format.format(y0))}</text>'
        + (f'<text x="{PAD}" y="{HEIGHT - 6}">{_escape(x_name)} {min(xs):g}</text>' if len(set(xs)) > 1 else "")
        + f'<text x="{WIDTH - PAD}" y="{HEIGHT - 6}" text-anchor="end">{_escape(x_name)} {max(xs):g}</text>'
        f'<polyline points="{path}"/>{dots}</svg>'
    )


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
