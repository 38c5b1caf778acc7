"""A finding's verdict: its rule (``finding.verdict`` in the experiment YAML) checked against the table's rows.

The rule is a list of checks; each compares two rows on one
column of the table:

  {column: test/acc1, higher: "kernel=7 block=stack3", than: "kernel=7 block=conv", margin: std}

``higher`` (or ``lower``) selects row A, ``than`` row B, both by the value of every override the
sweep varies (``key=value`` separated by spaces, the key as in the row labels or in full; a sweep that
varies nothing has the one row ``run``); ``than`` may instead be a number (a threshold or chance
level). ``than_column`` compares with another column of row B (default: ``column``). ``margin`` is a
number in the column's units, ``std`` (the sum of the two rows' sample stds over seeds: the gap must
exceed the seeds' spread) or ``-std`` (A may fall short of B by up to the spread: "not worse"); default 0.
A holds when ``mean(A) - mean(B) > margin`` (``higher``) or ``mean(B) - mean(A) > margin`` (``lower``);
a missing value (a row that never reached a target, a failed post step) does not hold.
The verdict: every check holds -> confirmed; some hold -> partly reproduced; none -> not reproduced.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from convnetlab.analysis.findings import AGGREGATED_OVER, FindingRow, short_key, format_value

VERDICTS = ("confirmed", "partly reproduced", "not reproduced")
CHECK_KEYS = {"column", "higher", "lower", "than", "than_column", "margin"}


@dataclass
class CheckResult:
    text: str
    holds: bool
    a: float
    b: float
    margin: float


def check_rule_spec(checks: Sequence[Mapping[str, Any]], columns: Mapping[str, Any]) -> None:
    """The rule's shape and column names; raises ValueError naming the bad check (``finding.verdict[i]``)."""
    if not isinstance(checks, Sequence) or isinstance(checks, str) or not checks:
        raise ValueError(f"finding.verdict: give a list of checks (or null for no verdict), got {checks!r}")
    for i, check in enumerate(checks):
        where = f"finding.verdict[{i}]"
        if not isinstance(check, Mapping):
            raise ValueError(f"{where}: give {{column, higher|lower, than[, than_column, margin]}}, got {check!r}")
        unknown = set(check) - CHECK_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown key {sorted(unknown)[0]!r}; valid: {', '.join(sorted(CHECK_KEYS))}")
        if ("higher" in check) == ("lower" in check):
            raise ValueError(f"{where}: give exactly one of higher: <row> or lower: <row>")
        if "than" not in check:
            raise ValueError(f"{where}: give than: <row> or a number")
        for key in ("column", "than_column"):
            if (key == "column" or key in check) and check.get(key) not in columns:
                raise ValueError(f"{where}.{key}={check.get(key)!r} is not one of finding.columns: {', '.join(columns)}")
        margin = check.get("margin", 0)
        if not (margin in ("std", "-std") or isinstance(margin, int | float) and not isinstance(margin, bool)):
            raise ValueError(f"{where}.margin={margin!r}: give a number, std or -std")


def _selector(text: Any) -> dict[str, str] | str:
    """``"k=v k2=v2"`` -> {k: v, k2: v2}; a text without ``=`` is a row label (``run``)."""
    text = str(text).strip()
    if "=" not in text:
        return text
    return dict(token.split("=", 1) for token in text.split())


def _key_matches(selector_key: str, setting_key: str) -> bool:
    return selector_key.lstrip("+~") == setting_key or selector_key == short_key(setting_key)


def select_row(rows: Sequence[FindingRow], text: str) -> FindingRow:
    """The one row that ``text`` names (see the rule format above); ValueError if none or several."""
    selector = _selector(text)
    if isinstance(selector, str):
        found = [r for r in rows if r.label == selector]
    else:
        found = [r for r in rows if all(any(_key_matches(k, s) and r.settings[s] == v for s in r.settings)
                                        for k, v in selector.items())]
    if len(found) != 1:
        labels = ", ".join(r.label for r in rows)
        raise ValueError(f"no row {text!r}: " + ("it matches several, " if found else "") + f"rows are {labels}")
    return found[0]


def check_rule_rows(checks: Sequence[Mapping[str, Any]], sweep: Mapping[str, Sequence[str]]) -> None:
    """Before the jobs run: every row a check names is in the sweep (``sweep``: override key -> its values).

    A row is named by the value of every override the sweep varies (seed aside); ValueError otherwise.
    """
    varying = {k.lstrip("+~"): [str(v) for v in vals] for k, vals in sweep.items()
               if k.lstrip("+~") not in AGGREGATED_OVER and len(vals) > 1}
    shown = "; ".join(f"{k}: {','.join(v)}" for k, v in varying.items()) or "nothing (one row: run)"
    for i, check in enumerate(checks):
        for side in ("higher", "lower", "than"):
            if side not in check or (side == "than" and _is_number(check[side])):
                continue
            where = f"finding.verdict[{i}].{side}={check[side]!r}"
            selector = _selector(check[side])
            if isinstance(selector, str):
                if selector != "run" or varying:
                    raise ValueError(f"{where}: not a row of this sweep; give key=value for each of: {shown}")
                continue
            named = set()
            for key, value in selector.items():
                matches = [k for k in varying if _key_matches(key, k)]
                if not matches:
                    raise ValueError(f"{where}: {key} is not varied by this sweep, which varies {shown}")
                if value not in varying[matches[0]]:
                    raise ValueError(f"{where}: no row with {key}={value} in this sweep, which varies {shown}")
                named.add(matches[0])
            if named != set(varying):
                raise ValueError(f"{where}: name a value for each varied override ({shown})")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _spread(row: FindingRow, key: str) -> float:
    std = row.std(key)
    return 0.0 if math.isnan(std) else std  # one run (or equal runs): no spread to add


def evaluate_check(rows: Sequence[FindingRow], check: Mapping[str, Any], columns: Mapping[str, Sequence[str]]) -> CheckResult:
    column = check["column"]
    header, fmt = columns[column]
    direction = "higher" if "higher" in check else "lower"
    row_a = select_row(rows, check[direction])
    a, spread = row_a.mean(column), _spread(row_a, column)
    if _is_number(check["than"]):
        b, b_name = float(check["than"]), format_value(float(check["than"]), fmt)
    else:
        row_b = select_row(rows, check["than"])
        b_column = check.get("than_column", column)
        b, spread = row_b.mean(b_column), spread + _spread(row_b, b_column)
        b_name = row_b.label + (f": {columns[b_column][0]}" if b_column != column else "")
    margin_spec = check.get("margin", 0)
    margin = {"std": spread, "-std": -spread}.get(margin_spec, margin_spec) if isinstance(margin_spec, str) else float(margin_spec)
    gap = a - b if direction == "higher" else b - a
    holds = not (math.isnan(a) or math.isnan(b)) and gap > margin
    if margin_spec == "-std":
        opposite = "lower" if direction == "higher" else "higher"
        rule = f"{row_a.label}: {header} not {opposite} than {b_name} beyond the seeds' spread"
    else:
        by = " by more than the seeds' spread" if margin_spec == "std" else (
            f" by more than {format_value(margin, fmt)}" if margin else "")
        rule = f"{row_a.label}: {header} {direction} than {b_name}{by}"
    text = f"{rule}: {format_value(a, fmt)} vs {format_value(b, fmt)}, margin {format_value(margin, fmt)}"
    return CheckResult(text, holds, a, b, margin)


def evaluate_verdict(rows: Sequence[FindingRow], checks: Sequence[Mapping[str, Any]],
                     columns: Mapping[str, Sequence[str]]) -> tuple[str, list[CheckResult]]:
    """The verdict (one of :data:`VERDICTS`) and each check's result."""
    results = [evaluate_check(rows, check, columns) for check in checks]
    held = sum(r.holds for r in results)
    return VERDICTS[0 if held == len(results) else 1 if held else 2], results
