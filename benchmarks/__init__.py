"""Reproducible measurements of redistimers and its peers.

``python -m benchmarks`` runs every workload for redistimers and the peer libraries (see
benchmarks/__main__.py and adapters/PROTOCOL.md); ``python -m benchmarks --quick`` is a
40-second version for ours alone. ``python benchmarks/drain.py --help`` is the older,
standalone drain benchmark of redistimers.
"""
