"""Reproducible measurements of redistimers; run each module as a script, e.g.
``python benchmarks/drain.py --help``.
"""
