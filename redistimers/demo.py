"""`redistimers demo`: a few timers on two topics, delivered live, in about five seconds."""

from __future__ import annotations

import datetime as dt
import statistics
import threading
import time
from collections.abc import Callable

import attrs

from .connect import RedisClient
from .models import Delivery
from .retry import RetryPolicy
from .router import Router
from .scheduler import TimerScheduler
from .validation import new_timer_id


@attrs.frozen
class Reminder:
    user: str
    text: str


@attrs.frozen
class InvoiceDue:
    invoice_id: str
    amount_cents: int


class DemoRun:
    """The demo's handlers, what they saw, and the plan they are checked against."""

    def __init__(self, out: Callable[[str], None]) -> None:
        self.out = out
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.deliveries: list[tuple[str, str, int, float]] = []  # topic, id, attempt, late ms
        self.done = threading.Event()
        self.expected = 8  # handler calls: 7 timers, one of them twice
        self.router = Router()
        self.router.handler("reminders", payload=Reminder)(self.on_reminder)
        self.router.handler(
            "invoices",
            payload=InvoiceDue,
            retry=RetryPolicy(max_attempts=3, initial=0.5, jitter=False),
        )(self.on_invoice)

    def record(self, delivery: Delivery, what: str) -> None:
        late_ms = (dt.datetime.now(dt.timezone.utc) - delivery.due_at).total_seconds() * 1000
        with self.lock:
            self.deliveries.append(
                (delivery.topic, delivery.timer_id, delivery.attempt, late_ms)
            )
            elapsed = time.monotonic() - self.started
            self.out(
                f"  +{elapsed:6.3f}s  {delivery.topic:<9}  {delivery.timer_id:<5}  "
                f"late {late_ms:5.1f} ms  attempt {delivery.attempt}  {what}"
            )
            if len(self.deliveries) >= self.expected:
                self.done.set()

    def on_reminder(self, reminder: Reminder, delivery: Delivery) -> None:
        self.record(delivery, f"remind {reminder.user}: {reminder.text}")

    def on_invoice(self, invoice: InvoiceDue, delivery: Delivery) -> None:
        if invoice.invoice_id == "INV-2" and delivery.attempt == 1:
            self.record(delivery, "payment gateway timed out -> raise, retried by policy")
            raise TimeoutError("payment gateway timed out")
        self.record(delivery, f"charge {invoice.invoice_id}: {invoice.amount_cents / 100:.2f} EUR")


def run_demo(client: RedisClient, out: Callable[[str], None] = print) -> bool:
    """Run the demo on `client`'s Redis in a namespace of its own; True if all went to plan."""
    namespace = f"redistimers-demo-{new_timer_id()[:8]}"
    demo = DemoRun(out)
    scheduler = TimerScheduler(client, routers=[demo.router], namespace=namespace)
    seconds = dt.timedelta(seconds=1)
    try:
        out("Scheduling 8 timers over the next 5 seconds on topics 'reminders' and 'invoices':")
        plan = [
            ("reminders", "r-1", 0.5, Reminder("ana", "stand-up in 5 minutes")),
            ("invoices", "INV-1", 1.0, InvoiceDue("INV-1", 995)),
            ("reminders", "r-2", 1.5, Reminder("bo", "renew your certificate")),
            ("invoices", "INV-2", 2.0, InvoiceDue("INV-2", 4_200)),
            ("invoices", "INV-3", 2.5, InvoiceDue("INV-3", 1_250)),
            ("reminders", "r-3", 3.0, Reminder("cy", "call the bank")),
            ("invoices", "INV-4", 4.0, InvoiceDue("INV-4", 30_000)),
            ("reminders", "r-4", 5.0, Reminder("ana", "go home")),
        ]
        for topic, timer_id, after, payload in plan:
            scheduler.set_timer(topic, payload, activate_in=after * seconds, timer_id=timer_id)
        out("  INV-3 cancelled at once: it must never fire")
        scheduler.cancel_timer("invoices", "INV-3")
        out("  r-3 re-set from +3.0s to +4.5s with a new text: it must fire once, the new one")
        scheduler.set_timer(
            "reminders",
            Reminder("cy", "call the bank (moved)"),
            activate_in=4.5 * seconds,
            timer_id="r-3",
        )
        out("  INV-2's handler fails on its first attempt: it must be retried and succeed")
        out("Delivering (one scheduler, one poller thread for both topics):")
        with scheduler:
            finished = demo.done.wait(20)
            time.sleep(0.3)  # let a wrong extra delivery show before judging
        elapsed = time.monotonic() - demo.started
    finally:
        for key in client.scan_iter(match=f"{namespace}:*", count=1000):
            client.delete(key)
    return _summarize(demo, finished, elapsed, out)


def _summarize(demo: DemoRun, finished: bool, elapsed: float, out: Callable[[str], None]) -> bool:
    ids = [(topic, timer_id) for topic, timer_id, _, _ in demo.deliveries]
    lateness = [late for *_, late in demo.deliveries]
    delivered = len(set(ids))
    retried = len(ids) - delivered
    ok = (
        finished
        and len(ids) == demo.expected
        and ("invoices", "INV-3") not in ids
        and ids.count(("reminders", "r-3")) == 1
    )
    verdict = "all as planned" if ok else "NOT as planned"
    out(
        f"Done in {elapsed:.1f}s, {verdict}: {delivered} timers delivered on 2 topics "
        f"({retried} after a retry), 1 cancelled never fired, 1 re-set fired once; lateness "
        f"median {statistics.median(lateness) if lateness else 0:.1f} ms, "
        f"max {max(lateness, default=0):.1f} ms."
    )
    return ok
