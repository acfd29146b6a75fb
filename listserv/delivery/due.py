"""The `out_recipients` SQL the queue's modules share: which rows are due, in what order.

The claim (`delivery.claim`), the sending limits (`delivery.limits`, which look at what the next
claim would take) and the worker's lease renewal select rows with these expressions, so the
claim's order (and the indexes it walks) is stated once; `ids_in` names a batch's rows compactly.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, bindparam, or_, select

from listserv.store.models.outgoing import OutRecipient

RECIPIENTS = OutRecipient.__table__
_R = RECIPIENTS.c
# The order of the indexes ix_out_recipients_due (status, next_attempt_at, id) and, among
# first attempts, ix_out_recipients_fresh (status, attempts, next_attempt_at, id).
ORDER = (_R.next_attempt_at, _R.id)
# A retry this long past its time has been held back by newer mail (under a hosted sending
# limit, a steady stream of posts): it is claimed before first attempts, so it cannot wait
# past give_up_days. Longer than a retry waits behind an ordinary large post.
RETRY_OVERDUE = timedelta(hours=2)


def params(now: datetime) -> dict[str, datetime]:
    """The binds of `due` at `now`."""
    return {"now": now, "overdue": now - RETRY_OVERDUE}


def due(fresh: bool = False, overdue: bool = False) -> ColumnElement[bool]:
    """A recipient row that may be claimed at `:now`: queued, its time come, no live lease.

    `fresh`: only rows never tried yet (no failed attempt); `overdue`: only retries due since
    `:overdue` (RETRY_OVERDUE before now) or longer. `params(now)` gives both binds.
    """
    now = bindparam("now", type_=_R.next_attempt_at.type)
    since = bindparam("overdue", type_=_R.next_attempt_at.type) if overdue else now
    return and_(
        _R.status == "queued",
        *([_R.attempts == 0] if fresh else []),
        *([_R.attempts > 0] if overdue else []),
        _R.next_attempt_at <= since,
        or_(_R.lease_until.is_(None), _R.lease_until < now),
    )


def first_due(fresh: bool, overdue: bool = False) -> ColumnElement[int]:
    """The message of the first due row (of the first attempts only, with `fresh`; of the
    overdue retries only, with `overdue`)."""
    return (select(_R.message_id).where(due(fresh, overdue)).order_by(*ORDER).limit(1)
            .scalar_subquery())


def ids_in(ids: list[int]) -> ColumnElement[bool]:
    """`id IN (…)`, or a few `id BETWEEN lo AND hi` when the ids run in unbroken sequences.

    A claimed batch is nearly always one run of consecutive ids (its rows were queued by one
    INSERT): one BETWEEN instead of 500 bound parameters to render and bind.
    """
    ordered = sorted(ids)
    runs: list[tuple[int, int]] = []
    for rid in ordered:
        if runs and rid == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], rid)
        else:
            runs.append((rid, rid))
            if len(runs) > 4:
                return _R.id.in_(ordered)
    return or_(*(_R.id.between(lo, hi) for lo, hi in runs))
