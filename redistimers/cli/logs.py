"""Where the command's logs go and what they look like: lines of text to stderr, never a
terminal escape, or one JSON object per line (``--log-format json``) for log shippers.

A long-running command's ``--log-level`` is the level of the ``redistimers`` loggers; the
root stays at INFO at most, so ``--log-level debug`` shows a line per delivery without
other libraries' DEBUG chatter (redis-py's, say).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from typing import Any

#: The commands that run for long: their logs are what an operator watches.
LONG_RUNNING = ("worker", "serve")

#: Characters a log line must not carry to a terminal or a log file: C0 controls (ANSI
#: escapes start with ESC), DEL and C1 controls (CSI), but tabs and the newlines of a
#: traceback.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: What json.dumps leaves raw that a terminal or a line reader would act on: DEL, the C1
#: controls, and the Unicode line and paragraph separators.
_JSON_RAW = re.compile("[\x7f-\x9f\u2028\u2029]")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: The long-running commands' lines name their process (several workers share a log).
RUNNING_TEXT_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"

#: The attributes every LogRecord has; any other one came from `extra`.
_RECORD_FIELDS = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", (), None))
) | {"message", "asctime", "taskName"}
#: The fields of a JSON line that an `extra` of the same name must not replace.
_JSON_FIELDS = ("time", "level", "logger", "message", "process", "thread", "exception", "stack")


class PlainFormatter(logging.Formatter):
    """Log lines as plain text: a control character in a message (an escape sequence in
    a client's request path, in a handler's message) is written as ``\\x1b``, so a log
    line can neither colour nor rewrite the terminal or the log file it goes to."""

    def format(self, record: logging.LogRecord) -> str:
        return _CONTROL.sub(lambda found: f"\\x{ord(found[0]):02x}", super().format(record))


class JsonFormatter(logging.Formatter):
    """A record as one JSON object on one line: time (ISO 8601, UTC), level, logger,
    message, process, thread (its name), every `extra` field (as its repr when JSON cannot
    hold it; as ``extra_<name>`` when it has the name of one of these), and exception (the
    traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "thread": record.threadName,
        }
        for name, value in vars(record).items():
            if name not in _RECORD_FIELDS:
                line[f"extra_{name}" if name in _JSON_FIELDS else name] = _jsonable(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        text = json.dumps(line, ensure_ascii=False, default=repr)
        return _JSON_RAW.sub(lambda found: f"\\u{ord(found[0]):04x}", text)


def json_note(message: str) -> str:
    """A remark of the command (a worker's start-up line) as a JSON log line of the
    ``redistimers.cli`` logger, so that with ``--log-format json`` every line of stderr is
    JSON."""
    record = logging.LogRecord("redistimers.cli", logging.INFO, __file__, 0, message, (), None)
    return JsonFormatter().format(record)


def _jsonable(value: Any) -> Any:
    """`value` when JSON can hold it as it is, else its repr."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return repr(value)
    return value


def configure_logging(
    command: str, verbose: bool, level_name: str | None, log_format: str | None = None
) -> None:
    """Send the logs of `command` to stderr, unless logging is configured already (as
    basicConfig would leave it). A long-running command logs the library's records at
    `level_name` (DEBUG when `verbose`), everyone else's at INFO or above; the others
    only what `verbose` asks for (their results and errors are printed)."""
    library = logging.INFO
    if command in LONG_RUNNING:
        library = logging.DEBUG if verbose else getattr(logging, (level_name or "info").upper())
        level = max(library, logging.INFO)
    elif verbose:
        level = logging.INFO
    else:  # the command reports its own results and errors (the demo, errors too, as ever)
        level = logging.ERROR if command == "demo" else logging.CRITICAL
    if logging.root.handlers:
        return
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            PlainFormatter(RUNNING_TEXT_FORMAT if command in LONG_RUNNING else TEXT_FORMAT)
        )
    logging.root.addHandler(handler)
    logging.root.setLevel(level)
    if command in LONG_RUNNING:
        logging.getLogger("redistimers").setLevel(library)
