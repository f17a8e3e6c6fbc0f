"""Display names for channels and controls in reports: ``act_tv`` → "TV", ``act_digital`` → "Digital".

A run spec may name them itself (``labels: {act_tv: "Television"}``); any column it leaves out gets a
default: a leading ``act_`` / ``spend_`` / ``ctrl_`` prefix dropped, words title-cased, and short
media acronyms (TV, OOH, SEM, ...) kept in capitals. Artifacts keep the column names; only what a
reader sees changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

PREFIXES = ("act_", "spend_", "ctrl_")
# Words a marketing reader writes in capitals; anything else is title-cased.
ACRONYMS = frozenset({
    "TV", "CTV", "OTT", "OOH", "DOOH", "SEM", "SEO", "PPC", "SMS", "CRM", "PR", "DM", "POS", "B2B", "B2C",
    "GDN", "YT", "AM", "FM", "UK", "US", "EU", "ROI", "KPI",
})  # fmt: skip
# Robyn-style suffixes: tv_S (spend), tv_I (impressions)
_SUFFIXES = ("_S", "_I")


def display_name(name: str, labels: Mapping[str, str] | None = None) -> str:
    """What a report calls column ``name``: its ``labels`` entry, else a readable default.

    Examples
    --------
    >>> display_name("act_tv"), display_name("act_digital"), display_name("spend_ooh_paper")
    ('TV', 'Digital', 'OOH Paper')
    >>> display_name("act_tv", {"act_tv": "Television"})
    'Television'
    """
    name = str(name)
    if labels and name in labels:
        return str(labels[name])
    core = name
    for p in PREFIXES:
        if core.lower().startswith(p) and len(core) > len(p):
            core = core[len(p):]
            break
    for s in _SUFFIXES:
        if core.endswith(s) and len(core) > len(s):
            core = core[: -len(s)]
            break
    words = [w for w in core.replace("-", "_").split("_") if w]
    if not words:
        return name
    return " ".join(w.upper() if w.upper() in ACRONYMS else (w if w[:1].isupper() else w.capitalize()) for w in words)


def display_names(names: Iterable[str], labels: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{name: display name}`` for ``names``; two names that would read the same keep their column names.

    Parameters
    ----------
    names
        Column names (channels, controls, ``baseline``).
    labels
        The run spec's ``labels`` (may be empty or ``None``).
    """
    names = [str(n) for n in names]
    shown = {n: display_name(n, labels) for n in names}
    counts: dict[str, int] = {}
    for v in shown.values():
        counts[v] = counts.get(v, 0) + 1
    # act_tv and spend_tv would both read "TV": keep them apart rather than merge rows in a table
    return {n: (v if counts[v] == 1 else n) for n, v in shown.items()}


def run_labels(run: Any) -> dict[str, str]:
    """The ``labels`` of a run's spec (empty when the spec has none, e.g. a run written before the field existed)."""
    spec = getattr(run, "spec", None)
    return dict(getattr(spec, "labels", None) or {})
