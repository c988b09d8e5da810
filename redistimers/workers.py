"""Handler threads: long-lived workers fed from one queue, started as needed up to a size.

A lighter `ThreadPoolExecutor`: no Future per task (the poller learns outcomes from its
own deque), so handing a timer to a thread costs a queue put instead of ~12 µs.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger("redistimers.workers")

Task = Callable[[], None]


class HandlerPool:
    """Runs tasks on at most `size` threads, started only when no thread is free."""

    def __init__(self, size: int, name: str = "redistimers-handler") -> None:
        self._size = size
        self._name = name
        self._queue: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._free = 0  # threads waiting for a task, less tasks queued for them
        self._backlog = 0  # tasks queued while every thread was busy
        self._closed = False

    def submit(self, task: Task) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("handler pool is shut down")
            if self._free > 0:
                self._free -= 1
            elif len(self._threads) < self._size:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            else:
                self._backlog += 1  # every thread is busy: the first to finish takes it
        self._queue.put(task)

    def _work(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            try:
                task()
            except BaseException:  # a task must never end its thread
                log.exception("handler task failed")
            with self._lock:
                if self._backlog:
                    self._backlog -= 1
                else:
                    self._free += 1

    def shutdown(self, wait: bool, timeout: float | None = None) -> None:
        """End the threads once their current task is done; `wait` joins them."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        if wait:
            for thread in threads:
                thread.join(timeout)
