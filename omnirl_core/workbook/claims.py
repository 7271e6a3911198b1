"""What a run shows: claims with the number the run computed, its 95% interval, a rule, and a verdict.

Each notebook collects its claims in a :class:`ClaimSheet` and ends with "What this run shows", the sheet's
table; the sheet is also written to ``<run>/<NN_name>/claims.json`` after every claim (a notebook stopped half way
keeps what it decided). A claim's verdict is never written by hand: :func:`decide` derives it from the interval
and the rule, and :mod:`.audit` derives it again from the file.

Rules (``rule`` in the file, a dict):

- ``{"kind": "above", "threshold": x}``: holds when the whole interval is above x, contradicted when the whole
  interval is below it, otherwise not shown;
- ``{"kind": "below", "threshold": x}``: the mirror image;
- ``{"kind": "within", "low": a, "high": b}``: holds when the interval lies inside [a, b], contradicted when it
  lies wholly outside, otherwise not shown.

An interval with a NaN end decides nothing: not shown.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CLAIMS_FILE = "claims.json"
HOLDS, NOT_SHOWN, CONTRADICTED = "holds", "not shown", "contradicted"
VERDICTS = (HOLDS, NOT_SHOWN, CONTRADICTED)
HEADING = "What this run shows"


def decide(rule: dict[str, Any], low: float, high: float) -> str:
    """The verdict of ``rule`` (module docstring) on the interval [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return NOT_SHOWN
    kind = rule.get("kind")
    if kind == "above":
        t = float(rule["threshold"])
        return HOLDS if low > t else CONTRADICTED if high < t else NOT_SHOWN
    if kind == "below":
        t = float(rule["threshold"])
        return HOLDS if high < t else CONTRADICTED if low > t else NOT_SHOWN
    if kind == "within":
        a, b = float(rule["low"]), float(rule["high"])
        return HOLDS if a <= low and high <= b else CONTRADICTED if high < a or low > b else NOT_SHOWN
    raise ValueError(f"unknown rule {rule!r}: kind must be above, below or within")


def describe_rule(rule: dict[str, Any]) -> str:
    """The rule in words, for the table."""
    kind = rule["kind"]
    if kind == "above":
        return f"95% CI above {rule['threshold']:g}"
    if kind == "below":
        return f"95% CI below {rule['threshold']:g}"
    return f"95% CI inside [{rule['low']:g}, {rule['high']:g}]"


@dataclass
class Claim:
    """One claim of a notebook and what the run decided about it."""

    claim: str
    """The statement, as the notebook's prose makes it."""
    value: float
    """The number the run computed."""
    ci_low: float
    """Lower end of its 95% interval."""
    ci_high: float
    """Upper end of its 95% interval."""
    rule: dict = field(default_factory=dict)
    """How the verdict is decided (module docstring)."""
    verdict: str = NOT_SHOWN
    """holds / not shown / contradicted: :func:`decide` of the rule and the interval."""
    measure: str = ""
    """What the number is (the quantity, its unit, over what the interval runs)."""
    note: str = ""
    """What a reader should know beside the verdict (for example: why it is not shown at this scale)."""


class ClaimSheet:
    """A notebook's claims, kept in ``folder/claims.json`` (rewritten atomically after every :meth:`add`)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.path = Path(folder) / CLAIMS_FILE
        self.claims: dict[str, Claim] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)  # a rerun decides afresh; no verdict of an older run survives

    def add(self, key: str, claim: str, value: float, ci: tuple[float, float], rule: dict[str, Any], *,
            measure: str = "", note: str = "") -> Claim:
        """Decide ``claim`` on the interval ``ci`` by ``rule`` and record it under ``key`` (a rerun of the cell
        replaces it)."""
        low, high = (float(x) for x in ci)
        c = Claim(claim=claim, value=float(value), ci_low=low, ci_high=high, rule=dict(rule),
                  verdict=decide(rule, low, high), measure=measure, note=note)
        self.claims[key] = c
        self._write()
        return c

    def above(self, key: str, claim: str, value: float, ci: tuple[float, float], threshold: float = 0.0,
              **kw) -> Claim:
        return self.add(key, claim, value, ci, {"kind": "above", "threshold": threshold}, **kw)

    def below(self, key: str, claim: str, value: float, ci: tuple[float, float], threshold: float = 0.0,
              **kw) -> Claim:
        return self.add(key, claim, value, ci, {"kind": "below", "threshold": threshold}, **kw)

    def within(self, key: str, claim: str, value: float, ci: tuple[float, float], low: float, high: float,
               **kw) -> Claim:
        return self.add(key, claim, value, ci, {"kind": "within", "low": low, "high": high}, **kw)

    def verdict(self, key: str) -> str:
        return self.claims[key].verdict

    def _write(self) -> None:
        from ..synthesis.format import write_json_atomic

        write_json_atomic(self.path, [asdict(c) | {"key": k} for k, c in self.claims.items()])

    def markdown(self) -> str:
        """The "What this run shows" table."""
        return claims_markdown([asdict(c) for c in self.claims.values()])


def _fmt(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:+.3f}" if abs(x) < 100 else f"{x:,.0f}"


def claims_markdown(claims: list[dict[str, Any]]) -> str:
    """A table of claims (dicts as in ``claims.json``)."""
    rows = ["| claim | measured | 95% CI | rule | verdict |", "|---|---|---|---|---|"]
    for c in claims:
        note = f" *{c['note']}*" if c.get("note") else ""
        measure = f" ({c['measure']})" if c.get("measure") else ""
        rows.append(f"| {c['claim']}{note} | {_fmt(c['value'])}{measure} | [{_fmt(c['ci_low'])}, "
                    f"{_fmt(c['ci_high'])}] | {describe_rule(c['rule'])} | **{c['verdict']}** |")
    return "\n".join(rows)


def read_claims(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """The claims a notebook wrote into ``folder`` (its output folder)."""
    return json.loads((Path(folder) / CLAIMS_FILE).read_text())
