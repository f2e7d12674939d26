"""Fail when any shipped module's line coverage is under the floor (CI, after pytest).

`coverage report --fail-under` judges only the total, which a large well-tested module can
carry; a module nobody tests must show up on its own. Reads coverage.json (pytest writes it).

    python tools/check_coverage.py [--floor 90] [coverage.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", nargs="?", default="coverage.json", type=Path)
    parser.add_argument("--floor", type=float, default=90.0, help="percent (default 90)")
    args = parser.parse_args(argv)
    try:
        files = json.loads(args.report.read_text())["files"]
    except (OSError, ValueError, KeyError) as exc:
        print(f"check_coverage: cannot read {args.report}: {exc}", file=sys.stderr)
        return 2
    low = {
        path: data["summary"]["percent_covered"]
        for path, data in files.items()
        if data["summary"]["num_statements"] and data["summary"]["percent_covered"] < args.floor
    }
    for path, percent in sorted(low.items(), key=lambda item: item[1]):
        print(f"{percent:5.1f}%  {path}")
    if low:
        print(f"{len(low)} of {len(files)} modules under {args.floor:g}% line coverage")
        return 1
    print(f"every one of {len(files)} modules has at least {args.floor:g}% line coverage")
    return 0


if __name__ == "__main__":
    sys.exit(main())
