"""The `bounce.*` list settings: the threshold, the warnings and their interval, the decay time
and a probe's grace time (declared once here, read by scoring and the steps)."""

from __future__ import annotations

from datetime import timedelta

from listserv.store.list_settings import ListSetting, declare, number, whole
from listserv.store.models.core import MailingList

THRESHOLD = declare("bounce.threshold", number(0, above=True), 5.0,
                    "score at which delivery is disabled")
WARNINGS = declare("bounce.warnings", whole(0, 10), 3,
                   "notices (probes) to a disabled member before removal (0 = remove at once)")
WARNING_INTERVAL_DAYS = declare("bounce.warning_interval_days", number(0, above=True), 7.0,
                                "days between notices, and from the last to the removal")
DECAY_DAYS = declare("bounce.decay_days", number(0, above=True), 7.0,
                     "a score whose last bounce is older than this goes back to 0")
PROBE_GRACE_HOURS = declare("bounce.probe_grace_hours", number(0), 24.0,
                            "how long an accepted probe waits for a bounce before it counts "
                            "as delivered")


def days(ml: MailingList, setting: ListSetting[float]) -> timedelta:
    """A list's setting in days, as a duration."""
    return timedelta(days=setting.get(ml))
