"""Calls for submissions and the closing summary (SPEC §6), the scheduler's column work.

Before each deadline (`column.deadlines`, month-day, yearly) the members get a call for
submissions, `column.call_days` days ahead; on the deadline the chair and editors get a
summary. Each is claimed with a `Once` row in the transaction that queues it.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.column.deadlines import deadline_dates, deadline_text
from listserv.column.desk import STATUSES
from listserv.column.settings import (
    CALL_DAYS,
    DEADLINES,
    EDITORS,
    MAX_FILE_KB,
    MAX_TOTAL_KB,
    TYPES,
    column_name,
)
from listserv.delivery.listmail import footer_text, list_headers
from listserv.delivery.notices import chair_language, list_context, notify
from listserv.delivery.outbox import ANNOUNCED, enqueue_per_language
from listserv.mail.addresses import Role
from listserv.mail.mime.copies import distribution_copy
from listserv.mail.render import Renderer
from listserv.mail.wire import message_bytes
from listserv.store.audit import DAEMON, audit
from listserv.store.engine import Store
from listserv.store.models.core import MailingList
from listserv.store.models.features import Submission
from listserv.store.once import claim_once

log = logging.getLogger(__name__)

#: The summary is still sent this long after a deadline the daemon slept through.
SUMMARY_WINDOW = timedelta(days=7)


def _start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def send_call(session: Session, renderer: Renderer, ml: MailingList, deadline: date,
              now: datetime) -> int:
    """The call for submissions to the members, as list mail (not re-injected as a post),
    written once per language the members read."""
    def copy_in(lang: str) -> bytes:
        msg = renderer.mail(
            "column-call.txt", domain=ml.domain, now=now, lang=lang, **list_context(ml),
            post_address=ml.role_address(Role.POST), column_name=column_name(ml),
            column_address=ml.role_address(Role.COLUMN), deadline_text=deadline_text(
                deadline.isoformat(), lang), max_file_kb=MAX_FILE_KB.get(ml),
            max_total_kb=MAX_TOTAL_KB.get(ml), types=TYPES.get(ml))
        return distribution_copy(message_bytes(msg), list_headers(ml), ml.prefix,
                                 footer_text(renderer, ml, lang))

    return enqueue_per_language(session, ml, copy_in, now=now, kind="column-call",
                                eightbit=renderer.eightbit, delivery=ANNOUNCED)


def send_summary(session: Session, renderer: Renderer, ml: MailingList, deadline: date,
                 now: datetime) -> None:
    found = [s for s in session.scalars(select(Submission).where(
        Submission.list_id == ml.id, Submission.deadline == deadline.isoformat())
        .order_by(Submission.id))]
    counts = {s: sum(1 for f in found if f.status == s) for s in STATUSES}
    notify(session, renderer, ml, "notice-column-summary.txt",
           [*(o.email for o in ml.owners), *EDITORS.get(ml)], now, kind="notice",
           column_name=column_name(ml),
           deadline_text=deadline_text(deadline.isoformat(), chair_language(session, ml, "")),
           deadline_iso=deadline.isoformat(),
           submissions=found, received=len(found),
           accepted=counts["accepted"] + counts["published"], declined=counts["declined"],
           pending=counts["received"], column_address=ml.role_address(Role.COLUMN))


def due_for_list(session: Session, renderer: Renderer, ml: MailingList, now: datetime) -> None:
    """The list's call (from call_days before a deadline to its end) and summary (on it)."""
    call_days = CALL_DAYS.get(ml)
    for deadline in deadline_dates(ml, now.astimezone(UTC).date()):
        start, end = _start(deadline), _start(deadline + timedelta(days=1))
        key = f"{ml.id}:{deadline.isoformat()}"
        if call_days and start - timedelta(days=call_days) <= now < end \
                and claim_once(session, "column-call", key, now):
            count = send_call(session, renderer, ml, deadline, now)
            late = now - (start - timedelta(days=call_days))
            audit(session, now, DAEMON, "column-call",
                  f"deadline {deadline.isoformat()}: sent to {count} members"
                  + (f" ({late.days} days late)" if late >= timedelta(days=1) else ""), ml.id)
        if start <= now < start + SUMMARY_WINDOW \
                and claim_once(session, "column-summary", key, now):
            send_summary(session, renderer, ml, deadline, now)
            audit(session, now, DAEMON, "column-summary",
                  f"deadline {deadline.isoformat()}: summary to the chair", ml.id)


def due_work(store: Store, renderer: Renderer, now: datetime) -> None:
    """The scheduler's column work, one list per unit of work."""
    with store.reading() as session:
        ids = [ml.id for ml in session.scalars(select(MailingList))
               if DEADLINES.get(ml)]
    for list_id in ids:
        try:
            with store.unit_of_work() as session:
                ml = session.get(MailingList, list_id)
                if ml is not None:
                    due_for_list(session, renderer, ml, now)
        except Exception:
            log.exception("column work of list %s failed; trying again next tick", list_id)
