"""The archive's list setting (SPEC §4), declared once in the registry."""

from __future__ import annotations

from listserv.store.list_settings import choice, declare
from listserv.store.models.core import MailingList

POLICY = declare("archive.policy", choice("private", "none"), "private",
                 "`private`: every post is kept and members may fetch it (`index`, `get N`); "
                 "`none`: posts are not kept and members are not offered the archive")


def keeps(ml: MailingList) -> bool:
    """Whether the list keeps its posts and offers them to its members."""
    return POLICY.get(ml) == "private"
