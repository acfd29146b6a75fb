"""Care with mass mail (SPEC §4, issue 16 acceptance 8): a command that mails the whole list
says how many it will mail and asks; without a terminal and without --yes it refuses and mails
nobody; `--quiet` cancels or moves a meeting without mail."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy import select as query

from listserv.store.models.features import Meeting
from listserv.store.models.outgoing import OutMessage, OutRecipient

from .helpers import LIST, wait_settled

MEMBERS = 200


@pytest.fixture
def big_list(cli, shma, tmp_path: Path) -> str:
    roster = tmp_path / "roster.csv"
    roster.write_text("email\n" + "".join(f"m{n:03}@example.net\n" for n in range(MEMBERS)))
    cli("members", "import", shma, str(roster))
    return shma


def meeting(cli, days: int = 30) -> str:
    start = datetime.now(UTC) + timedelta(days=days)
    return cli("meetings", "schedule", LIST, "--at", start.strftime("%Y-%m-%d 16:00"),
               "--tz", "UTC", "--duration", "60").output.strip()


def member_mail(store) -> int:
    """Recipients queued for meeting mail to the members (sent or not)."""
    with store.reading() as session:
        return session.scalar(query(func.count(OutRecipient.id)).join(OutMessage).where(
            OutMessage.kind == "meeting")) or 0


def status(store, meeting_id: str) -> str:
    with store.reading() as session:
        return session.get(Meeting, int(meeting_id)).status


@pytest.mark.both_backends
def test_cancel_on_a_list_of_200_without_a_terminal_refuses_and_mails_nobody(
        cli, big_list, store, daemon, sink):
    meeting_id = meeting(cli)
    for command in (("cancel", meeting_id), ("remind", meeting_id),
                    ("move", meeting_id, "--at", "2099-01-01 16:00")):
        refused = cli("meetings", *command, ok=False)
        assert refused.exit_code == 1
        [line] = refused.output.strip().splitlines()
        assert f"{MEMBERS} members" in line and "--yes" in line and "no terminal" in line
    wait_settled(store)
    assert status(store, meeting_id) == "scheduled"
    assert member_mail(store) == 0 and sink.deliveries == []
    # --quiet cancels without mail and without asking.
    assert "nobody on the list was mailed" in cli("meetings", "cancel", meeting_id,
                                                  "--quiet").output
    assert status(store, meeting_id) == "cancelled"
    wait_settled(store)
    assert member_mail(store) == 0 and sink.deliveries == []


def test_without_a_tty_a_subprocess_is_refused_too(config_path, big_list, store, cli):
    """The same from a script (stdin not a terminal), as cron would run it."""
    meeting_id = meeting(cli)
    done = subprocess.run([sys.executable, "-c", "from cli import main; main()",
                           "--config", str(config_path), "meetings", "cancel", meeting_id],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    assert f"{MEMBERS} members" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert status(store, meeting_id) == "scheduled" and member_mail(store) == 0


def run_on_terminal(config_path: Path, args: list[str], answer: str) -> tuple[int, str]:
    """Run the CLI with a terminal as its stdin, answer its question; (exit code, what it
    wrote on stderr and stdout)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", "from cli import main; main()",
                             "--config", str(config_path), *args],
                            stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    os.close(slave)
    try:
        # Answer once the process waits on the terminal (its question is on stderr).
        select.select([], [master], [], 10)
        os.write(master, answer.encode() + b"\n")
        out, _ = proc.communicate(timeout=60)
    finally:
        os.close(master)
    return proc.returncode, out


def test_on_a_terminal_it_says_how_many_and_asks(config_path, big_list, store, cli):
    meeting_id = meeting(cli)
    code, out = run_on_terminal(config_path, ["meetings", "cancel", meeting_id], "n")
    assert code == 1 and f"to {MEMBERS} members of {LIST}" in out and "not done" in out
    assert status(store, meeting_id) == "scheduled" and member_mail(store) == 0
    code, out = run_on_terminal(config_path, ["meetings", "cancel", meeting_id], "y")
    assert code == 0 and f"notice queued for {MEMBERS} members" in out
    assert status(store, meeting_id) == "cancelled" and member_mail(store) == MEMBERS


def test_move_quiet_and_remind_with_yes(cli, big_list, store):
    meeting_id = meeting(cli)
    out = cli("meetings", "move", meeting_id, "--at", "2099-01-01 16:00", "--quiet").output
    assert "nobody on the list was mailed" in out and member_mail(store) == 0
    assert f"queued for {MEMBERS} members" in cli("meetings", "remind", meeting_id,
                                                  "--yes").output
    assert member_mail(store) == MEMBERS
