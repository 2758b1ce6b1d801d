"""Small formatting filters of the dashboard templates."""
from __future__ import annotations

import math

from django import template

register = template.Library()


@register.filter
def metric(value):
    """A metric for reading: integers as they are, floats to 4 significant figures, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool) or isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        return f"{value:.4g}"
    return str(value)


@register.filter
def pct(value, digits: int = 0):
    """0.734 -> "73%"; None -> a dash."""
    if value is None:
        return "–"
    try:
        return f"{float(value) * 100:.{int(digits)}f}%"
    except (TypeError, ValueError):
        return "–"


@register.filter
def width(value):
    """A fraction in [0, 1] as a CSS percentage for a bar's width (clamped; None -> 0)."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return "0%"
    if not math.isfinite(f):
        return "0%"
    return f"{min(max(f, 0.0), 1.0) * 100:.1f}%"


@register.filter
def path_text(label):
    """A label's path through the tree ({"answers": [{question, answer}, ...]} or the list itself) as
    "answer → answer → …"."""
    steps = label.get("answers", []) if isinstance(label, dict) else label or []
    return " → ".join(str(s.get("answer", "?")) for s in steps if isinstance(s, dict)) or "–"


@register.filter
def get(mapping, key):
    try:
        return mapping.get(key)
    except AttributeError:
        return None
