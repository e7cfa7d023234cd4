"""Command line: ``pipdetect IMAGE|FOLDER|VIDEO ...`` and ``pipdetect convert ...``."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "convert":
        from .convert.cli import main as convert_main

        return convert_main(args[1:])
    from .run import main as run_main

    return run_main(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
