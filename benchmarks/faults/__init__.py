"""Fault injection for redistimers: kill, stall and partition workers and Redis, skew
clocks and fill Redis, then count what fired, what was lost, duplicated or early.

``python -m benchmarks.faults [--quick] [--scenarios a,b] [--out DIR]`` (see __main__.py);
``python -m benchmarks --workloads faults`` runs the same. Every scenario starts its own
throwaway redis-server(s) and worker processes, and counts from the workers' append-only
ledgers (ledger.py) and what Redis holds at the end (harness.py, counts.py).
"""
