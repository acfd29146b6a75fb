"""Delivery failures: reading reports, scoring members, warnings, disabling and removal.

Which members' addresses are dead, and stopping mail to them without losing live ones. Three
ways a failure reaches us:

- **during our own delivery**: a recipient refused with a `5xx` at `RCPT TO`, or still refused
  with a `4xx` there when the retries give up (the delivery worker reports both through
  `feedback.DeliveryBounces`, its `delivery.feedback` interface). A refusal of `MAIL FROM` or
  of the data never gets here (the transport makes it a retry of the whole transaction), and
  neither does a provider's rate or quota limit (`refused` answers "retry" for it);
- **a report** mailed to `NAME-bounces[+TOKEN]@` (`handlers/bounce.py`): an RFC 3464 DSN or one
  of the many older formats, read with `flufl.bounce` (the detectors GNU Mailman uses);
- **a probe**: the warnings to a disabled member go out with an envelope token of their own, so
  their fate is known: accepted by the relay with no bounce within the grace time re-enables the
  member (`feedback.DeliveryBounces.delivered` and `steps.due_work`), a bounce of it is recorded.

A report counts only when it is attributable: through a token we gave out (the member's, or a
probe's), or when it names a member and quotes the Message-ID of a message we sent to that
member (`attribution.sent_to`). Anything else naming a member is recorded as unverified, never
counted, and shown to the chair. Permanent failures count 1, temporary ones 0.5, at most once
per UTC day; spam and policy refusals, delays, rate limits and automatic replies are recorded
and not counted. At `bounce.threshold` the member's delivery is disabled, the chair is told,
and the member gets `bounce.warnings` warnings `bounce.warning_interval_days` apart; after the
last, the member is removed and the chair is told. Every step is in the audit log.

The modules: `reports` (reading a report or a refusal: what failed, how), `attribution` (whose
failure it is), `scoring` (the score, its decay, disabling and enabling), `steps` (warnings,
probes, removal: the scheduler's due work), `feedback` (the delivery worker's results),
`forwarding` (reports we could not use, to the chair), `views` (`bounces list` and `show`),
`settings` (the `bounce.*` list settings).
"""
