"""What the delivery worker tells the rest of listserv about its results.

The worker knows SMTP replies, not members: it reports each result through this small
interface, in the transaction that records it, and the daemon hands it the implementation
(bounce scoring, `bounces.feedback.DeliveryBounces`). Delivery never imports a feature.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session

from listserv.store.models.outgoing import OutRecipient


class DeliveryFeedback(Protocol):
    """Results of delivery, reported in the worker's transaction (a failure here is the
    implementation's to contain: the results must still be recorded)."""

    def delivered(self, session: Session, recipient_ids: list[int], now: datetime) -> None:
        """The relay took the message for these recipients (out_recipients ids)."""
        ...

    def refused(self, session: Session, row: OutRecipient, reply: str, now: datetime) -> bool:
        """The relay refused `row` for good at RCPT TO with `reply`.

        False when the refusal is to be retried instead (a provider's sending limit says
        nothing about the recipient).
        """
        ...

    def gave_up(self, session: Session, row: OutRecipient, reply: str, now: datetime) -> None:
        """The retries of `row` ended: its last failure, `reply`, was a temporary one about
        the recipient (at RCPT TO; a mailbox full, say)."""
        ...

