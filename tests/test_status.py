"""`listserv status`: health at a glance, and a non-zero exit when something is wrong."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from click.testing import CliRunner

from cli import main

from .helpers import LIST, lmtp_send, make_message, wait_until


def status(config_path, clock, *args):
    """`listserv status --json` as the operator runs it, on the daemon's clock."""
    result = CliRunner().invoke(main, ["--config", str(config_path), "status", "--json", *args],
                                obj=clock)
    assert result.exit_code in (0, 2), (result.output, result.exception)
    return result.exit_code, json.loads(result.output)


@pytest.mark.both_backends
@pytest.mark.sink_refusals
def test_status_reports_the_stuck_queue_while_the_relay_is_down_and_is_well_once_it_drains(
        cli, shma, daemon, sink, config_path, clock):
    for member in ("jane@example.org", "ann@example.net"):
        cli("members", "add", shma, member, "--no-welcome")
    code, report = status(config_path, clock)
    assert code == 0, report["problems"]
    assert [(p["name"], p["answers"]) for p in report["intake"]] == [("lmtp", True),
                                                                     ("smtp", True)]
    assert report["schema"]["revision"] == report["schema"]["code"]

    sink.mail_from_response = "421 4.3.0 Service not available"  # the relay is down
    lmtp_send(daemon.ports["lmtp"], "jane@example.org", [LIST], make_message())
    sink.wait_for(lambda s: status(config_path, clock)[1]["deliveries_last_hour"]["temporary"],
                  description="a temporary failure counted")
    clock.advance(timedelta(minutes=31))
    code, report = status(config_path, clock)
    assert code == 2
    assert report["queue"]["outgoing"] == 2
    assert report["queue"]["oldest"]["id"].startswith("out-")
    assert report["queue"]["oldest"]["age_minutes"] >= 31
    assert any("oldest queued item" in p for p in report["problems"])

    sink.mail_from_response = None  # the relay is back
    # no jump of the clock here: its backoff is seconds yet, and a jump while a worker retries
    # would make that worker's lease look lapsed (a second copy no real clock would send)
    daemon.deliver_wake.set()
    sink.wait_for(lambda s: status(config_path, clock)[0] == 0, timeout=30,
                  description="status well again")
    code, report = status(config_path, clock)
    assert report["queue"] == {"outgoing": 0, "incoming": 0, "oldest": None}
    assert report["deliveries_last_hour"]["sent"] == 2
    assert len(sink.messages_for("ann@example.net")) == 1


def test_status_says_when_an_intake_port_does_not_answer(cli, shma, config_path, clock):
    """No daemon runs: the ports in the config do not answer, the exit says so."""
    (config_path.parent / "data" / "run").mkdir(exist_ok=True)
    (config_path.parent / "data" / "run" / "ports.json").write_text('{"lmtp": 1, "smtp": 1}')
    code, report = status(config_path, clock)
    assert code == 2
    assert [p["answers"] for p in report["intake"]] == [False, False]
    assert report["scheduler_last_run"] is None
    assert report["database"]["bytes"] > 0
    assert report["workers"] and not any(w["alive"] or w["last_beat"] for w in report["workers"])
    assert "worker router is not alive (last heartbeat: never)" in report["problems"]


def test_status_shows_the_scheduler_run_and_the_next_reminder(cli, shma, daemon, config_path,
                                                               clock):
    cli("meetings", "schedule", shma, "--at", "2031-01-16 12:00", "--tz", "UTC",
        "--duration", "60")
    daemon.run_scheduler()
    code, report = status(config_path, clock)
    assert code == 0, report["problems"]
    assert report["scheduler_last_run"] is not None
    assert report["next_reminder"]["due_at"] == "2031-01-02T12:00:00+00:00"  # 14 days before
    text = CliRunner().invoke(main, ["--config", str(config_path), "status"], obj=clock).output
    assert "all well" in text and "next meeting reminder: 2031-01-02" in text


WORKERS = {"router", "scheduler", "intake", *(f"delivery-{n}" for n in range(4))}


class Died(SystemExit):
    """What kills the scheduler's thread (its loop survives any Exception)."""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_status_shows_the_workers_alive_and_exits_non_zero_when_one_dies(
        cli, shma, daemon, config_path, clock, monkeypatch):
    code, report = status(config_path, clock)
    assert code == 0, report["problems"]
    assert {w["name"]: w["alive"] for w in report["workers"]} == dict.fromkeys(WORKERS, True)

    def die(*_args):
        raise Died()

    monkeypatch.setattr("listserv.scheduler.run_due", die)
    scheduler = next(t for t in threading.enumerate() if t.name == "scheduler")
    daemon.wake_scheduler()
    wait_until(lambda: not scheduler.is_alive(), what="the scheduler's thread to end")
    wait_until(lambda: status(config_path, clock)[0] == 2, timeout=15,
               what="status to notice the dead scheduler")
    code, report = status(config_path, clock)
    alive = {w["name"]: w["alive"] for w in report["workers"]}
    assert alive == {**dict.fromkeys(WORKERS, True), "scheduler": False}
    [problem] = report["problems"]
    assert problem.startswith("worker scheduler is not alive (last heartbeat: 20")
    text = CliRunner().invoke(main, ["--config", str(config_path), "status"], obj=clock).output
    assert "workers alive: router, delivery-0, delivery-1, delivery-2, delivery-3, intake" in text
    assert "PROBLEM: worker scheduler is not alive" in text
