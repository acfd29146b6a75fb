"""The `out_recipients` SQL the queue's modules share: which rows are due, in what order.

The claim (`delivery.claim`), the sending limits (`delivery.limits`, which look at what the next
claim would take) and the worker's lease renewal select rows with these expressions, so the
claim's order (and the indexes it walks) is stated once; `ids_in` names a batch's rows compactly.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, bindparam, or_, select

from listserv.store.models.outgoing import OutRecipient

RECIPIENTS = OutRecipient.__table__
_R = RECIPIENTS.c
# The order of the indexes ix_out_recipients_due (status, next_attempt_at, id) and, among
# first attempts, ix_out_recipients_fresh (status, attempts, next_attempt_at, id).
ORDER = (_R.next_attempt_at, _R.id)


def due(fresh: bool = False) -> ColumnElement[bool]:
    """A recipient row that may be claimed at `:now`: queued, its time come, no live lease.

    `fresh`: only rows never tried yet (no failed attempt).
    """
    now = bindparam("now", type_=_R.next_attempt_at.type)
    return and_(
        _R.status == "queued",
        *([_R.attempts == 0] if fresh else []),
        _R.next_attempt_at <= now,
        or_(_R.lease_until.is_(None), _R.lease_until < now),
    )


def first_due(fresh: bool) -> ColumnElement[int]:
    """The message of the first due row (of the first attempts only, with `fresh`)."""
    return (select(_R.message_id).where(due(fresh)).order_by(*ORDER).limit(1)
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
