"""``python -m posedge.agent.api openapi [--write PATH]``: print or write the OpenAPI document.

Used to refresh docs/openapi-api.json after a model changes. It must never
start a server or touch anything but the file named.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .openapi import render

USAGE = "usage: python -m posedge.agent.api openapi [--write PATH]"


def main(argv: list[str]) -> int:
    if argv == ["openapi"]:
        sys.stdout.write(render())
        return 0
    if len(argv) == 3 and argv[:2] == ["openapi", "--write"]:
        Path(argv[2]).write_text(render(), encoding="utf-8")
        return 0
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
