"""Reproducible measurements of redistimers and its peers.

``python -m benchmarks`` runs every workload for redistimers and the peer libraries (see
benchmarks/__main__.py and adapters/PROTOCOL.md); ``python -m benchmarks --quick`` is a
40-second version for ours alone, and ``python -m benchmarks --peers none --workloads
drain`` measures how fast one worker drains a backlog of due timers and what that costs
Redis (``--profile DIR`` adds a cProfile of the worker's threads).
"""
