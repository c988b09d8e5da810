"""``redistimers worker --metrics-port``: the worker's Prometheus metrics, served while it
runs (prometheus_client, the optional ``prometheus`` extra, is imported only then)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from ..errors import ConfigurationError
from ..scheduler import TimerScheduler
from .context import Context
from .output import CliError

#: What a worker asked for metrics says when prometheus_client is not installed.
MISSING = (
    "--metrics-port needs prometheus_client: install redistimers[prometheus] "
    "(pip install 'redistimers[prometheus]')"
)


@contextlib.contextmanager
def metrics_served(ctx: Context, scheduler: TimerScheduler) -> Iterator[None]:
    """Serve `scheduler`'s metrics on --metrics-port and --metrics-host (nothing without
    a port) until the block ends, with one line saying where. A port in use is a
    ConfigurationError (exit 2) before the worker starts."""
    port: int | None = ctx.args.metrics_port
    if port is None:
        yield
        return
    try:
        from ..contrib.prometheus import start_worker_metrics_server
    except ImportError as exc:
        if "prometheus_client" in f"{exc} {exc.__cause__}":
            raise CliError(MISSING) from None
        raise
    host: str = ctx.args.metrics_host
    try:
        server = start_worker_metrics_server(scheduler, port, host)
    except ConfigurationError as exc:  # the port is in use, say
        raise CliError(f"--metrics-port {port}: {exc}") from None
    shown = f"[{host}]" if ":" in host else host
    ctx.console.note(
        f"redistimers worker {os.getpid()}: Prometheus metrics on "
        f"http://{shown}:{server.port}/metrics"
    )
    try:
        yield
    finally:
        server.shutdown()
