"""The store: the only code that knows Redis keys and Lua. Timers in, timers out, fenced
by tokens; several operations go to Redis in one pipelined round trip through `Batch`."""

from .batch import Batch, ClaimedTimer, ClaimResult, new_claimer_id
from .inspection import (
    DeadRecord,
    ListedTimer,
    StoredServerInfo,
    StoredStats,
    StoredTimer,
    StoreInspection,
)
from .keys import Keys, TopicKeys
from .registry import StoredWorker, WorkerRegistry
from .scripts import SCRIPT_NAMES, NotReplicated, Op, Replication, script_sha
from .timers import ScheduleEntry, TimerStore, WriteFailed, Written

__all__ = [
    "SCRIPT_NAMES",
    "Batch",
    "ClaimResult",
    "ClaimedTimer",
    "DeadRecord",
    "Keys",
    "ListedTimer",
    "NotReplicated",
    "Op",
    "Replication",
    "ScheduleEntry",
    "StoreInspection",
    "StoredServerInfo",
    "StoredStats",
    "StoredTimer",
    "StoredWorker",
    "TimerStore",
    "TopicKeys",
    "WorkerRegistry",
    "WriteFailed",
    "Written",
    "new_claimer_id",
    "script_sha",
]
