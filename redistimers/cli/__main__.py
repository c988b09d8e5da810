"""`python -m redistimers.cli`: the `redistimers` command."""

from __future__ import annotations

import sys

from . import main

sys.exit(main())
