"""`redistimers schedule`, `get`, `reschedule` and `cancel`, and the bad input they refuse
before anything is written: main() in this process, against the session's redis-server."""

from __future__ import annotations

import datetime as dt
import io
import re
import sys
import zoneinfo
from pathlib import Path
from typing import Any

import pytest
import redis

from redistimers import InvalidTimerError

from ._cli_support import ENVIRONMENT, Cli, assert_one_error_line, table_fields
from .helpers import UTC, SchedulerFactory


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


# -- schedule and get -------------------------------------------------------------------------


def test_schedule_then_get_shows_the_timer_as_a_table_and_as_json(
    cli: Cli, make_scheduler: SchedulerFactory
) -> None:
    scheduled = cli(
        "schedule", "invoices", "--in", "30m", "--id", "INV-1",
        "--payload", '{"invoice_id": "INV-1", "amount_cents": 995}',
        "--header", "tenant=acme", "--header", "source=cli", "--correlation-id", "req-42",
    )
    assert (scheduled.code, scheduled.err) == (0, "")
    assert scheduled.out == "scheduled timer INV-1 on topic 'invoices', due in 30m\n"
    stored = make_scheduler().get_timer("invoices", "INV-1")
    assert stored is not None
    assert stored.payload == {"invoice_id": "INV-1", "amount_cents": 995}
    assert dict(stored.headers) == {"tenant": "acme", "source": "cli"}
    assert stored.correlation_id == "req-42"
    assert dt.timedelta(minutes=29) < stored.remaining <= dt.timedelta(minutes=30)

    table = cli("get", "invoices", "INV-1")
    assert table.code == 0
    fields = table_fields(table.out)
    assert fields["id"] == "INV-1"
    assert fields["state"] == "waiting"
    assert fields["attempts"] == "0"
    assert fields["headers"] == "tenant=acme, source=cli"
    assert fields["correlation id"] == "req-42"
    assert re.search(r"\(in (29m\d+s|30m)\)$", fields["due at"]), fields["due at"]
    assert '"amount_cents": 995' in table.out

    timer = cli("get", "invoices", "INV-1", "--json").json
    assert timer.pop("due_at") == stored.due_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert 1700 < timer.pop("remaining_s") <= 1800
    assert timer == {
        "topic": "invoices", "id": "INV-1", "attempts": 0, "leased": False,
        "payload": {"invoice_id": "INV-1", "amount_cents": 995},
        "headers": {"tenant": "acme", "source": "cli"}, "correlation_id": "req-42",
    }


@pytest.mark.parametrize(
    "at", ["2031-01-01T09:00:00+01:00", "2031-01-01T08:00:00Z", "2031-01-01 08:00:00.000+00:00"]
)
def test_schedule_at_an_iso_time_with_an_offset(
    cli: Cli, make_scheduler: SchedulerFactory, at: str
) -> None:
    result = cli("schedule", "t", "--at", at, "--id", "x", "--json")
    assert result.code == 0
    assert result.json["due_at"] == "2031-01-01T08:00:00.000000Z"
    stored = make_scheduler().get_timer("t", "x")
    assert stored is not None
    assert stored.due_at == dt.datetime(2031, 1, 1, 8, 0, tzinfo=UTC)


def test_schedule_without_an_id_prints_the_new_id_and_defaults_to_a_null_payload(
    cli: Cli, make_scheduler: SchedulerFactory
) -> None:
    result = cli("schedule", "t", "--in", "90s", "--json")
    assert result.code == 0
    assert 89 < result.json["remaining_s"] <= 90
    stored = make_scheduler().get_timer("t", result.json["id"])
    assert stored is not None
    assert stored.payload is None
    assert result.json["payload"] is None


def test_schedule_reads_the_payload_from_a_file_or_stdin(
    cli: Cli, make_scheduler: SchedulerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "payload.json").write_text('{"from": "file"}')
    assert cli("schedule", "t", "--in", "1h", "--id", "f",
               "--payload", f"@{tmp_path / 'payload.json'}").code == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO('["from", "stdin"]'))
    assert cli("schedule", "t", "--in", "1h", "--id", "s", "--payload", "@-").code == 0
    scheduler = make_scheduler()
    assert [t.payload for t in scheduler.list_timers("t").timers] == [
        {"from": "file"}, ["from", "stdin"],
    ]
    missing = cli("schedule", "t", "--in", "1h", "--payload", f"@{tmp_path / 'nope.json'}")
    assert_one_error_line(missing, 2, "--payload", "nope.json", "cannot read")


# -- bad input: one line, exit 2, nothing written ---------------------------------------------


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["schedule", "t", "--in", "3x"], "argument --in: duration '3x' is not like"),
        (["schedule", "t", "--in=-5s"], "argument --in: activate_in must not be negative, "
                                         "got '-5s'"),
        (["schedule", "t", "--in", "-5s"], "argument --in: activate_in must not be negative, "
                                           "got '-5s'"),
        (["schedule", "t", "--in", "-1h30m"], "activate_in must not be negative, got '-1h30m'"),
        (["schedule", "t", "--in", "-0.5"], "activate_in must not be negative, got '-0.5'"),
        (["schedule", "t", "--in", "-3x"], "argument --in: duration '-3x' is not like"),
        (["schedule", "t", "--in", "99999999d"], "activate_in '99999999d' reaches past"),
        (["schedule", "t", "--in", "1e300"], "argument --in: duration '1e300' is out of range"),
        (["reschedule", "t", "x", "--in", "-5s"], "activate_in must not be negative"),
        (["reschedule", "t", "x", "--at", "2031-01-01T09:00:00"], "argument --at: "),
        (["schedule", "t", "--every", "-5m"], "argument --every: every must be at least 1 ms, "
                                              "got '-5m'"),
        (["schedule", "t", "--every=0s"], "every must be at least 1 ms, got '0s'"),
        (["schedule", "t", "--every", "5m", "--cron", "0 7 * * mon"],
         "argument --cron: give at most one of every and cron"),
        (["schedule", "t", "--in", "1m", "--tz", "Europe/Berlin"],
         "argument --tz: tz applies to cron timers only"),
        (["schedule", "t", "--every", "5m", "--tz", "Europe/Berlin"],
         "tz applies to cron timers only"),
        (["schedule", "t", "--cron", "61 * * * *"],
         "argument --cron: cron expression '61 * * * *' is not valid"),
        (["schedule", "t", "--cron", "0 7 * * mon", "--tz", "Mars/Base"],
         "argument --tz: unknown time zone 'Mars/Base'"),
        (["schedule", "t", "--in", "1s", "--id"],
         "for a value starting with '-', write --id=VALUE"),
        (["schedule", "t", "--at", "2031-01-01T09:00:00"], "no UTC offset"),
        (["schedule", "t", "--at", "tomorrow"], "not an ISO 8601 time"),
        (["schedule", "t", "--in", "1s", "--at", "2031-01-01T09:00Z"], "not allowed with"),
        (["schedule", "t"], "one of the arguments --in --at --every --cron is required"),
        (["schedule", "t", "--payload", "1"], "one of the arguments --in --at --every --cron"),
        (["schedule", "t", "--in", "1s", "--payload", "{bad"], "invalid JSON"),
        (["schedule", "t", "--in", "1s", "--payload", "NaN"], "NaN is not JSON"),
        (["schedule", "t", "--in", "1s", "--header", "novalue"], "KEY=VALUE"),
        (["schedule", "bad{topic}", "--in", "1s"], "must not contain"),
        (["schedule", "t", "--in", "1s", "--id", ""], "argument --id: timer_id must not be empty"),
        (["reschedule", "t", "x"], "one of the arguments --in --at is required"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    cli: Cli, redis_client: redis.Redis, argv: list[str], fragment: str
) -> None:
    result = cli(*argv)
    assert_one_error_line(result, 2, fragment)
    assert result.out == ""
    assert redis_client.keys("*") == []


@pytest.mark.parametrize(
    ("api", "argv"),
    [
        ({"activate_in": dt.timedelta(seconds=-5)}, ["--in=-5s"]),
        ({"activate_in": dt.timedelta(seconds=-5)}, ["--in", "-5s"]),
        ({"every": dt.timedelta(minutes=-5)}, ["--every", "-5m"]),
        ({"every": dt.timedelta(0)}, ["--every=0s"]),
        ({"every": dt.timedelta(minutes=5), "cron": "0 7 * * mon"},
         ["--every", "5m", "--cron", "0 7 * * mon"]),
        ({"activate_in": 60, "tz": "Europe/Berlin"}, ["--in", "1m", "--tz", "Europe/Berlin"]),
        ({"cron": "61 * * * *"}, ["--cron", "61 * * * *"]),
        ({"cron": "0 7 * * mon", "tz": "Mars/Base"},
         ["--cron", "0 7 * * mon", "--tz", "Mars/Base"]),
        ({"activate_in": 1, "timer_id": "bell\a"}, ["--in", "1s", "--id", "bell\a"]),
    ],
)
def test_schedule_refuses_what_set_timer_refuses_in_its_words(
    cli: Cli, make_scheduler: SchedulerFactory, redis_client: redis.Redis,
    api: dict[str, Any], argv: list[str],
) -> None:
    with pytest.raises(InvalidTimerError) as refused:
        make_scheduler().set_timer("t", None, **api)
    words = str(refused.value).split(", got ")[0]  # the value follows, as the user typed it
    result = cli("schedule", "t", *argv)
    assert_one_error_line(result, 2, words)
    assert redis_client.keys("*") == []


def test_option_values_may_start_with_a_minus(cli: Cli, make_scheduler: SchedulerFactory) -> None:
    assert cli("schedule", "t", "--in", "1m", "--id=-abc", "--correlation-id=-c").code == 0
    timer = make_scheduler().get_timer("t", "-abc")
    assert timer is not None
    assert timer.correlation_id == "-c"
    assert_one_error_line(cli("list", "t", "--limit", "-1"), 2, "must be 1 or more, got -1")


# -- periodic timers --------------------------------------------------------------------------


def test_schedule_every_repeats_at_a_fixed_rate_and_get_shows_it(
    cli: Cli, make_scheduler: SchedulerFactory
) -> None:
    plain = cli("schedule", "t", "--every", "5m", "--id", "e")
    assert plain.code == 0, plain
    assert re.fullmatch(
        r"scheduled timer e on topic 't', due at \S+Z \(in (4m\d+s|5m)\), then every 5m\n",
        plain.out,
    ), plain.out
    stored = make_scheduler().get_timer("t", "e")
    assert stored is not None
    assert (stored.every, stored.cron, stored.tz) == (dt.timedelta(minutes=5), None, None)
    first = cli("schedule", "t", "--every", "1h", "--in", "10s", "--id", "f")
    assert first.out == "scheduled timer f on topic 't', due in 10s, then every 1h\n"
    assert table_fields(cli("get", "t", "e").out)["repeats"] == "every 5m"
    timer = cli("get", "t", "e", "--json").json
    assert (timer["every_s"], "cron" in timer, "tz" in timer) == (300.0, False, False)


def test_schedule_cron_in_a_time_zone_and_get_shows_it(
    cli: Cli, make_scheduler: SchedulerFactory
) -> None:
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    result = cli("schedule", "reports", "--cron", "0 7 * * mon", "--tz", "Europe/Berlin",
                 "--id", "weekly", "--json")
    assert result.code == 0, result
    timer = result.json
    assert (timer["cron"], timer["tz"], "every_s" in timer) == (
        "0 7 * * mon", "Europe/Berlin", False,
    )
    due = dt.datetime.fromisoformat(timer["due_at"]).astimezone(berlin)
    assert (due.weekday(), due.hour, due.minute, due.second) == (0, 7, 0, 0)
    assert 0 < timer["remaining_s"] <= 7 * 86400
    stored = make_scheduler().get_timer("reports", "weekly")
    assert stored is not None
    assert (stored.cron, stored.tz, stored.due_at) == ("0 7 * * mon", "Europe/Berlin", due)
    repeats = table_fields(cli("get", "reports", "weekly").out)["repeats"]
    assert repeats == "at the times of cron '0 7 * * mon' in Europe/Berlin"
    utc = cli("schedule", "reports", "--cron", "*/5 * * * *", "--id", "five")
    assert utc.out.startswith("scheduled timer five on topic 'reports', due at ")
    assert utc.out.endswith(", then at the times of cron '*/5 * * * *' in UTC\n")
    assert cli("get", "reports", "five", "--json").json["tz"] == "UTC"


def test_schedule_json_is_the_timer_as_get_shows_it(cli: Cli) -> None:
    scheduled = cli("--json", "schedule", "invoices", "--in", "30m", "--id", "INV-1",
                    "--payload", '{"invoice_id": "INV-1"}', "--header", "tenant=acme",
                    "--correlation-id", "req-1")
    assert (scheduled.code, scheduled.err) == (0, "")
    written = scheduled.json
    got = cli("get", "invoices", "INV-1", "--json").json
    assert written.pop("remaining_s") >= got.pop("remaining_s")
    assert written == got
    assert dt.datetime.fromisoformat(written["due_at"]) > dt.datetime.now(UTC) + dt.timedelta(
        minutes=29
    )


# -- not found --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "json_out"),
    [
        (["get", "t", "nope"], None),
        (["cancel", "t", "nope"], {"cancelled": False}),
        (["reschedule", "t", "nope", "--in", "1m"], None),
        (["dead", "requeue", "t", "nope"], {"requeued": 0}),
    ],
)
def test_an_unknown_id_exits_1_with_one_line_and_json_still_answers(
    cli: Cli, make_scheduler: SchedulerFactory, argv: list[str], json_out: Any
) -> None:
    make_scheduler().set_timer("t", 1, activate_in=60, timer_id="known")
    plain = cli(*argv)
    assert_one_error_line(plain, 1, "'nope'", "'t'", "namespace 'redistimers'")
    assert plain.out == ""
    as_json = cli(*argv, "--json")
    assert as_json.code == 1
    assert as_json.json == json_out


# -- cancel, reschedule -----------------------------------------------------------------------


def test_cancel_removes_the_timer(cli: Cli, make_scheduler: SchedulerFactory) -> None:
    scheduler = make_scheduler()
    scheduler.set_timer("t", 1, activate_in=60, timer_id="x")
    scheduler.set_timer("t", 1, activate_in=60, timer_id="y")
    assert cli("cancel", "t", "x").out == "cancelled timer x on topic 't'\n"
    assert cli("cancel", "t", "y", "--json").json == {"cancelled": True}
    assert scheduler.stats("t").pending == 0


def test_reschedule_moves_a_timer_in_or_at(cli: Cli, make_scheduler: SchedulerFactory) -> None:
    scheduler = make_scheduler()
    scheduler.set_timer("t", {"keep": "me"}, activate_in=60, timer_id="x", headers={"h": "v"})
    moved = cli("reschedule", "t", "x", "--in", "2h")
    assert moved.out == "rescheduled timer x on topic 't', due in 2h\n"
    timer = scheduler.get_timer("t", "x")
    assert timer is not None
    assert dt.timedelta(hours=1, minutes=59) < timer.remaining <= dt.timedelta(hours=2)
    assert (timer.payload, dict(timer.headers)) == ({"keep": "me"}, {"h": "v"})
    at = cli("reschedule", "t", "x", "--at", "2031-06-01T12:00:00+02:00", "--json").json
    assert (at["id"], at["due_at"], at["leased"]) == ("x", "2031-06-01T10:00:00.000000Z", False)
    assert (at["payload"], at["headers"]) == ({"keep": "me"}, {"h": "v"})
    timer = scheduler.get_timer("t", "x")
    assert timer is not None
    assert timer.due_at == dt.datetime(2031, 6, 1, 10, tzinfo=UTC)
