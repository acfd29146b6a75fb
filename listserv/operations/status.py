"""`listserv status`: the daemon's health at a glance, and what is wrong (SPEC §4, issue 19).

Read from the config, the data folder and the database only, so it answers whether or not a
daemon runs. "Wrong" (a non-zero exit for monitoring) is: the oldest queued item older than
`[status] max_queue_age_minutes`, an incoming message whose handling failed, an intake port
that does not answer with its greeting.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from listserv.config import ServerSettings, Settings
from listserv.digests import sending as digests
from listserv.meetings.reminders import MAX_OFFSET, reminder_offsets
from listserv.operations.upgrade import stale_schema
from listserv.store.engine import Store
from listserv.store.models.core import Inbound
from listserv.store.models.features import Meeting, MeetingReminder
from listserv.store.models.outgoing import OutMessage, OutRecipient
from listserv.store.once import last_beat

#: How long an intake port may take to connect and greet before it counts as not answering.
PORT_TIMEOUT_SECONDS = 3.0
#: The window of "deliveries in the last hour".
DELIVERY_WINDOW = timedelta(hours=1)
#: Where a wildcard listening address is reached from this machine.
_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def status_report(settings: Settings, store: Store, now: datetime) -> dict[str, Any]:
    """Everything `listserv status` shows, with `problems` (empty when all is well)."""
    problems: list[str] = []
    schema = {"revision": store.schema_revision(), "code": store.code_revision()}
    stale = stale_schema(store)
    if stale:
        problems.append(stale)
    intake = intake_ports(settings)
    problems += [f"intake {p['name']} on {p['host']}:{p['port']} does not answer: {p['error']}"
                 for p in intake if not p["answers"]]
    with store.reading() as session:
        queue = queue_state(session, now)
        failed = session.scalar(select(func.count()).where(Inbound.status == "failed")) or 0
        deliveries = deliveries_since(session, now - DELIVERY_WINDOW)
        last_run = last_beat(session, "scheduler")
        reminder = next_reminder(session, now)
        digest = next_digest(session, now)
    oldest = queue["oldest"]
    limit = settings.status.max_queue_age_minutes
    if oldest is not None and oldest["age_minutes"] > limit:
        problems.append(f"the oldest queued item ({oldest['id']}) has waited "
                        f"{oldest['age_minutes']} minutes (more than {limit})")
    if failed:
        problems.append(f"{failed} incoming message(s) failed: see `listserv queue --failed`")
    return {
        "version": version("listserv"),
        "schema": schema,
        "intake": intake,
        "queue": queue,
        "failed_inbound": failed,
        "deliveries_last_hour": deliveries,
        "scheduler_last_run": _iso(last_run),
        "next_reminder": reminder,
        "next_digest": digest,
        "data_dir": {"path": str(settings.data_dir), "bytes": folder_bytes(settings.data_dir)},
        "database": {"url": store.safe_url, "bytes": database_bytes(settings, store)},
        "problems": problems,
        "ok": not problems,
    }


def intake_ports(settings: Settings) -> list[dict[str, Any]]:
    """Each enabled intake server: where it listens and whether it greets (220) when called.

    `port = 0` is resolved from `run/ports.json`, where the daemon writes the ports it bound.
    """
    bound = bound_ports(settings.run_dir / "ports.json")
    result = []
    servers: tuple[tuple[str, ServerSettings], ...] = (
        ("lmtp", settings.intake.lmtp), ("smtp", settings.intake.smtp))
    for name, server in servers:
        if not server.enabled:
            continue
        port = server.port or bound.get(name, 0)
        error = greeting_problem(_LOOPBACK.get(server.host, server.host), port) if port else \
            "no port bound (port = 0 and no daemon has written run/ports.json)"
        result.append({"name": name, "host": server.host, "port": port,
                       "answers": not error, "error": error})
    return result


def bound_ports(path: Path) -> dict[str, int]:
    """The ports a running daemon bound (`run/ports.json`: name -> port), {} when unknown."""
    try:
        ports = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in ports.items() if isinstance(v, int)} if isinstance(ports, dict) \
        else {}


def greeting_problem(host: str, port: int) -> str:
    """"" when a server at host:port greets with 220 (then QUIT), else what went wrong."""
    try:
        with socket.create_connection((host, port), timeout=PORT_TIMEOUT_SECONDS) as conn:
            conn.settimeout(PORT_TIMEOUT_SECONDS)
            greeting = conn.recv(512)
            if greeting.startswith(b"220"):
                conn.sendall(b"QUIT\r\n")
                return ""
            line = greeting.decode("ascii", "replace").strip()
            return f"unexpected greeting {line!r}" if line else "closed without a greeting"
    except TimeoutError:
        return f"no greeting within {PORT_TIMEOUT_SECONDS:g} s"
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def queue_state(session: Session, now: datetime) -> dict[str, Any]:
    """How much waits (outgoing recipients queued, incoming messages not yet handled), and the
    oldest of all: its id (`listserv queue`'s `out-N` / `in-N`), when it came, its age."""
    outgoing = session.scalar(
        select(func.count()).where(OutRecipient.status == "queued")) or 0
    incoming = session.scalar(select(func.count()).where(Inbound.status == "new")) or 0
    candidates = []
    out_oldest = session.execute(
        select(OutMessage.id, OutMessage.created_at).join(OutRecipient)
        .where(OutRecipient.status == "queued").order_by(OutMessage.created_at).limit(1)
    ).first()
    if out_oldest is not None:
        candidates.append((out_oldest.created_at, f"out-{out_oldest.id}"))
    in_oldest = session.execute(
        select(Inbound.id, Inbound.received_at).where(Inbound.status == "new")
        .order_by(Inbound.received_at).limit(1)
    ).first()
    if in_oldest is not None:
        candidates.append((in_oldest.received_at, f"in-{in_oldest.id}"))
    oldest = None
    if candidates:
        at, item = min(candidates)
        oldest = {"id": item, "queued_at": _iso(at),
                  "age_minutes": max(0, int((now - at).total_seconds() // 60))}
    return {"outgoing": outgoing, "incoming": incoming, "oldest": oldest}


def deliveries_since(session: Session, since: datetime) -> dict[str, int]:
    """Recipients whose latest attempt ended since then, by result: sent, temporary (due
    again), permanent (refused or given up on)."""
    sent = session.scalar(select(func.count()).where(
        OutRecipient.status == "sent", OutRecipient.sent_at >= since)) or 0
    temporary = session.scalar(select(func.count()).where(
        OutRecipient.status == "queued", OutRecipient.attempts > 0,
        OutRecipient.attempted_at >= since)) or 0
    permanent = session.scalar(select(func.count()).where(
        OutRecipient.status == "failed", OutRecipient.attempted_at >= since)) or 0
    return {"sent": sent, "temporary": temporary, "permanent": permanent}


def next_reminder(session: Session, now: datetime) -> dict[str, Any] | None:
    """The next meeting reminder to go out: its meeting, list and when it is due."""
    meetings = session.scalars(
        select(Meeting).where(Meeting.status == "scheduled", Meeting.start > now)
        .order_by(Meeting.start)
    ).all()
    best: tuple[datetime, Meeting] | None = None
    for meeting in meetings:
        if best is not None and meeting.start >= best[0] + MAX_OFFSET:
            break  # no offset is longer: a later meeting's reminders are all due later
        done = set(session.scalars(select(MeetingReminder.offset_minutes)
                                   .where(MeetingReminder.meeting_id == meeting.id)))
        for offset in reminder_offsets(meeting.mailing_list):
            due = meeting.start - timedelta(minutes=offset)
            if offset not in done and (best is None or due < best[0]):
                best = (due, meeting)
    if best is None:
        return None
    due, meeting = best
    return {"meeting": str(meeting.id), "list": meeting.mailing_list.address,
            "start": _iso(meeting.start), "due_at": _iso(due)}


def next_digest(session: Session, now: datetime) -> dict[str, Any] | None:
    """The next digest to go out (of the lists with digest members): its list, when it is
    due, and the posts waiting for it."""
    coming = [u for u in digests.upcoming(session, now) if u.members]
    if not coming:
        return None
    first = min(coming, key=lambda u: (u.at, u.address))
    return {"list": first.address, "due_at": _iso(first.at), "posts": first.posts,
            "kb": first.kb, "members": first.members}


def folder_bytes(folder: Path) -> int:
    """The bytes of every file under the folder (what its contents take, links not followed)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue  # removed while we looked (a delivered outbox file, a WAL)
    return total


def database_bytes(settings: Settings, store: Store) -> int:
    """The database's size: the SQLite file with its WAL, or PostgreSQL's database size."""
    path = settings.sqlite_path
    if path is not None:
        return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal"))
                   if p.exists())
    with store.engine.connect() as connection:
        return int(connection.execute(
            text("SELECT pg_database_size(current_database())")).scalar_one())


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment is not None else None


def status_lines(report: dict[str, Any]) -> list[str]:
    """The report as the operator reads it on a terminal: one fact a line, problems last."""
    schema, queue, sent = report["schema"], report["queue"], report["deliveries_last_hour"]
    oldest = queue["oldest"]
    reminder, digest = report["next_reminder"], report["next_digest"]
    lines = [
        f"listserv {report['version']}, schema {schema['revision']} (code {schema['code']})",
        *(f"intake {p['name']} {p['host']}:{p['port']}: "
          + ("answers" if p["answers"] else f"NOT ANSWERING ({p['error']})")
          for p in report["intake"]),
        f"queue: {queue['outgoing']} outgoing recipients, {queue['incoming']} incoming messages"
        + (f"; oldest {oldest['id']} since {oldest['queued_at']} ({oldest['age_minutes']} min)"
           if oldest else ""),
        f"failed incoming messages: {report['failed_inbound']}",
        f"deliveries in the last hour: {sent['sent']} sent, {sent['temporary']} temporary "
        f"failures, {sent['permanent']} permanent failures",
        f"scheduler last run: {report['scheduler_last_run'] or 'never'}",
        "next meeting reminder: " + (
            f"{reminder['due_at']} for meeting {reminder['meeting']} of {reminder['list']}"
            if reminder else "none planned"),
        "next digest: " + (
            f"{digest['due_at']} for {digest['list']}: {digest['posts']} post(s), "
            f"{digest['kb']} KB waiting, {digest['members']} digest member(s)"
            if digest else "none planned"),
        f"data folder {report['data_dir']['path']}: {report['data_dir']['bytes']} bytes",
        f"database {report['database']['url']}: {report['database']['bytes']} bytes",
    ]
    lines += [f"PROBLEM: {problem}" for problem in report["problems"]] or ["all well"]
    return lines
