"""``python -m benchmarks.run`` is ``python -m benchmarks`` (see benchmarks/__main__.py)."""

from __future__ import annotations

import sys

from benchmarks.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
