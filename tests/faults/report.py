"""The figures of the last fault-suite run as a Markdown table (for docs/reliability.md):
python -m tests.faults.report [artifacts/faults]"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.faults.harness import ARTIFACTS


def _answers(requests: dict | None) -> str:
    if not requests:
        return "-"
    accepted = sum(v for per in requests.values() for k, v in per.items() if k in ("accepted", "replayed"))
    failed = sum(v for per in requests.values() for k, v in per.items() if k not in ("accepted", "replayed"))
    return f"{accepted} / {failed}"


def _readiness(timeline: dict) -> str:
    parts = []
    for name, changes in timeline.items():
        states = []
        for change in changes:
            if not states or states[-1][1] != change["state"]:
                states.append((change["t"], change["state"]))
        if len(states) > 1:
            parts.append(f"{name}: " + " → ".join(f"{s} @{t:.0f}s" for t, s in states))
    return "; ".join(parts) or "ready throughout"


def table(folder: Path) -> str:
    rows = ["| experiment | outcome | fault (s) | recovery (s) | bound (s) | requests during fault accepted / failed"
            " | other figures | readiness (changes) |", "|---|---|---|---|---|---|---|---|"]
    for path in sorted(folder.glob("*.json")):
        d = json.loads(path.read_text())
        figures = {k: v for k, v in d["figures"].items() if k not in ("recovery_s", "unconverged")}
        other = ", ".join(f"{k} {v}" for k, v in figures.items() if not isinstance(v, (dict, list)))
        rows.append(f"| {d['experiment']} | {d['outcome']} | {d['fault_s'] if d['fault_s'] is not None else '-'}"
                    f" | {d['figures'].get('recovery_s', '-')} | {d['convergence_bound_s']}"
                    f" | {_answers(d['load']['requests_during_fault'])} | {other} | {_readiness(d['readiness'])} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table(Path(sys.argv[1]) if len(sys.argv) > 1 else ARTIFACTS))
