"""Print reports/notebooks.json as the markdown profile of docs/performance.md.

For every notebook: its full-mode wall time and kernel peak against the budgets (300 s,
1,900 MB), the load average while it ran, and its slowest code cells with each cell's own
time and the peak memory reached while that cell ran (`mclab.notebook_bench` records both).

    python tools/performance_table.py [reports/notebooks.json] [--cells 6]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S, BUDGET_MB, COURSE_S = 300, 1900, 1800


def table(rows: dict, cells: int = 6) -> str:
    lines = ["| notebook | seconds | peak MB | within budget | load average (before, after) "
             "| slowest cells: index seconds (peak MB) |", "|---|---|---|---|---|---|"]
    total = 0.0
    for name in sorted(rows):
        row = rows[name]
        if "error" in row:
            lines.append(f"| {name} | failed: {row['error']} | | | | |")
            continue
        total += row["seconds"]
        ok = [f"time {'yes' if row['seconds'] <= BUDGET_S else 'no'}",
              f"memory {'yes' if row['peak_rss_mb'] <= BUDGET_MB else 'no'}"]
        load = row.get("load_average")
        slow = sorted(row.get("cells", []), key=lambda c: -c[1])[:cells]
        slow_text = ", ".join(f"{i}: {s:.0f} s ({m:,} MB)" for i, s, m in slow) or \
            ", ".join(f"{k}: {v:.0f} s" for k, v in row.get("slowest_cells", {}).items())
        lines.append(f"| {name} | {row['seconds']:.0f} | {row['peak_rss_mb']:,} | "
                     f"{', '.join(ok)} | {load[0]:.2f}, {load[1]:.2f} | {slow_text} |"
                     if load else
                     f"| {name} | {row['seconds']:.0f} | {row['peak_rss_mb']:,} | "
                     f"{', '.join(ok)} | not recorded | {slow_text} |")
    lines.append(f"| **whole course** | **{total:.0f}** (budget {COURSE_S:,}) | | | | |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=str(ROOT / "reports" / "notebooks.json"))
    parser.add_argument("--cells", type=int, default=6)
    args = parser.parse_args(argv)
    print(table(json.loads(Path(args.path).read_text()), args.cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
