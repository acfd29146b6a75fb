"""The delivery worker: a thread that claims a batch, hands it to the transport, records it.

The daemon runs `max_connections` of them, each with its own transport (one connection to the
relay). A personalized batch is one SMTP transaction per member, each with the member's own
envelope sender and List-Unsubscribe; the worker keeps the batch's lease alive while it sends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import update

from listserv.clock import Clock
from listserv.config import OutboundSettings
from listserv.delivery.claim import Batch, claim, record
from listserv.delivery.due import RECIPIENTS, ids_in
from listserv.delivery.feedback import DeliveryFeedback
from listserv.delivery.limits import SendLimits, prune_usage
from listserv.delivery.transports import Outcome, Result, Transport
from listserv.mail.addresses import Role, normalize_domain, role_address
from listserv.mail.links import unsubscribe_link
from listserv.mail.mime.copies import personalize
from listserv.mail.signing import Signer
from listserv.store.engine import Store

log = logging.getLogger(__name__)

PRUNE_EVERY = timedelta(hours=1)


def send_batch(
    batch: Batch, transport: Transport, renew: Callable[[], None] | None = None,
    one_click_base: str = "",
    signer: Signer | None = None,
) -> dict[int, Result]:
    """Hand a claimed batch to the transport: one transaction, or one per member.

    `renew` is called after each transaction of a personalized batch, so that its holder can
    keep the lease from lapsing while it is still sending. `one_click_base` (the web
    endpoint's HTTPS URL, or "") puts each member's one-click URL into her List-Unsubscribe.
    With a `signer` (`[dkim]`), a distributed post's batch gets one ARC set, and each
    transaction's bytes the list's DKIM signature, made last, on what goes on the wire (SPEC
    §3 "Signing").
    """
    domain = normalize_domain(batch.domain)
    arc_set = b""
    if signer is not None:
        arc_set = signer.arc_set(batch.raw, domain, batch.authentication_results)

    def signed(data: bytes) -> bytes:
        return data if signer is None else signer.sign(arc_set + data, domain)

    if not batch.personalize:
        emails = [email for _, email in batch.recipients]
        by_email = transport.send(batch.envelope_from, emails, signed(batch.raw))
        return {rid: by_email[email] for rid, email in batch.recipients}
    results: dict[int, Result] = {}
    for rid, email in batch.recipients:
        bounce_token, leave_token = batch.tokens[rid]
        data = signed(personalize(batch.raw, role_address(
            batch.list_address, Role.LEAVE, leave_token, batch.public[Role.LEAVE]),
            unsubscribe_link(one_click_base, leave_token)))
        sender = role_address(batch.list_address, Role.BOUNCES, bounce_token,
                              batch.public[Role.BOUNCES])
        results[rid] = transport.send(sender, [email], data)[email]
        if renew is not None:
            renew()
    return results


class DeliveryWorker(threading.Thread):
    """One connection's worth of delivery: claim, send, record, until stopped."""

    def __init__(
        self,
        store: Store,
        settings: OutboundSettings,
        transport: Transport,
        clock: Clock,
        wake: threading.Event,
        stopping: threading.Event,
        poll_seconds: float,
        name: str,
        limits: SendLimits | None = None,
        *,
        feedback: DeliveryFeedback,
        one_click_base: str = "",
        signer: Signer | None = None,
    ) -> None:
        """`limits`: the relay's limits, one object shared by a daemon's workers; `feedback`:
        who hears of the results (the daemon's bounce scoring); `one_click_base`: the web
        endpoint's URL for List-Unsubscribe, "" when one-click is off (`web.one_click_base`);
        `signer`: DKIM and ARC (`[dkim]`; None signs nothing)."""
        super().__init__(name=name, daemon=True)
        self.one_click_base = one_click_base
        self.signer = signer
        self.feedback = feedback
        self.store = store
        self.settings = settings
        self.transport = transport
        self.clock = clock
        self.wake = wake
        self.stopping = stopping
        self.poll_seconds = poll_seconds
        self.limits = limits
        self._prune_at: datetime | None = None  # when the ledger is next pruned (limits only)

    def run(self) -> None:
        """Claim, send, record, until stopped; then record what was sent, claim nothing more.

        The results of a batch are written in the same transaction as the next claim: one
        commit (one fsync on SQLite) per batch instead of two. A crash loses at most that one
        unrecorded batch per worker, as before: it is sent again when its lease lapses.
        """
        lease = timedelta(seconds=self.settings.claim_lease_seconds)
        limit = self.settings.max_recipients_per_transaction
        done: tuple[Batch, dict[int, Result]] | None = None  # sent, not yet recorded
        failures = 0
        try:
            while True:
                stopping = self.stopping.is_set()
                if stopping and done is None:
                    break
                try:
                    batch = self._record_and_claim(done, None if stopping else (lease, limit))
                    done, failures = None, 0
                except Exception:
                    log.exception("delivery worker %s failed; retrying", self.name)
                    failures += 1
                    if done is not None and (stopping or failures > 1):
                        # Recording keeps failing: save at least who was sent, so the
                        # batch is not sent again each time its lease lapses.
                        self._record_sent(done)
                        done = None
                    if stopping:
                        break
                    batch = None
                if batch is None:
                    if not stopping:
                        self.wake.wait(self.poll_seconds)
                        self.wake.clear()
                    continue
                if batch.recipients:
                    done = (batch, self._send(batch))
        finally:
            self.transport.close()

    def _record_and_claim(
        self, done: tuple[Batch, dict[int, Result]] | None, claiming: tuple[timedelta, int] | None
    ) -> Batch | None:
        """In one unit of work: record `done`'s results, then claim the next batch."""
        with self.store.unit_of_work() as session:
            if done is not None:
                batch, results = done
                record(session, results, self.clock.now(), self.settings, batch.created_at,
                       self.feedback)
            if claiming is None:
                return None
            lease, limit = claiming
            now = self.clock.now()
            if self.limits is not None and (self._prune_at is None or now >= self._prune_at):
                prune_usage(session, now)
                self._prune_at = now + PRUNE_EVERY
            return claim(session, now, lease, limit, self.limits)

    def _record_sent(self, done: tuple[Batch, dict[int, Result]]) -> None:
        """Mark the recipients sent as sent, alone in a small transaction, when recording the
        whole batch failed; the others are claimed again once the lease lapses (as after a
        crash). The bounce feedback of the batch is lost with its failed record."""
        batch, results = done
        sent = [rid for rid, result in results.items() if result.outcome is Outcome.SENT]
        log.error("delivery worker %s could not record the results of message %s twice: "
                  "marking its %d sent recipients sent; the %d others go again once the lease "
                  "lapses", self.name, batch.message_id, len(sent), len(results) - len(sent))
        if not sent:
            return
        try:
            with self.store.unit_of_work() as session:
                session.execute(
                    update(RECIPIENTS)
                    .where(ids_in(sent), RECIPIENTS.c.status == "queued")
                    .values(status="sent", sent_at=self.clock.now(),
                            attempted_at=self.clock.now(), lease_until=None, last_error="")
                )
        except Exception:
            log.exception("delivery worker %s could not mark the %d recipients of message %s "
                          "sent: they will receive it again", self.name, len(sent),
                          batch.message_id)

    def _send(self, batch: Batch) -> dict[int, Result]:
        results = send_batch(batch, self.transport, self._renewer(batch), self.one_click_base,
                             self.signer)
        sent = sum(1 for r in results.values() if r.outcome is Outcome.SENT)
        log.info(
            "delivered message %s: %d sent, %d not", batch.message_id, sent, len(results) - sent
        )
        return results

    def _renewer(self, batch: Batch) -> Callable[[], None]:
        """Extends the batch's lease once a third of it has passed, while sending goes on.

        Without it a personalized batch slower than its lease (500 transactions to a slow
        relay) would be claimed again by another worker and sent twice. A worker that makes
        no progress renews nothing, so a hung one still loses its batch to the others.
        """
        lease = timedelta(seconds=self.settings.claim_lease_seconds)
        every = lease.total_seconds() / 3
        ids = [rid for rid, _ in batch.recipients]
        renewed = time.monotonic()

        def renew() -> None:
            nonlocal renewed
            if time.monotonic() - renewed < every:
                return
            renewed = time.monotonic()
            try:
                with self.store.unit_of_work() as session:
                    session.execute(
                        update(RECIPIENTS)
                        .where(ids_in(ids), RECIPIENTS.c.status == "queued")
                        .values(lease_until=self.clock.now() + lease)
                    )
            except Exception:
                log.exception("delivery worker %s could not extend its lease", self.name)

        return renew
