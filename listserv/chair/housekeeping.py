"""The chair's housekeeping (SPEC §4): owners and settings brought back to their default, a
member's details, deleting a list, and several held items or requests at once.

Like `chair.actions`, every function takes the caller's session, audits what it changed and
raises `ListservError` with one line when the chair asked for something that cannot be done.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from listserv.chair.actions import set_list_setting
from listserv.digests import sending as digests
from listserv.digests.posts import DELIVERY_MODES
from listserv.errors import ListservError
from listserv.intent.phrases import languages
from listserv.mail.render import Renderer
from listserv.membership.subscriptions import find_member
from listserv.store import list_settings
from listserv.store.audit import audit
from listserv.store.models.core import MAX_NAME_LENGTH, MailingList, Member, Owner
from listserv.store.models.features import Submission
from listserv.store.models.outgoing import OutMessage, OutRecipient

OWNERS = "owners"
"""Not in the settings registry: the owners are rows of their own (`owners` table)."""


def set_setting(session: Session, ml: MailingList, key: str, value: str | None, now: datetime,
                actor: str) -> None:
    """`lists set LIST KEY VALUE`, or with `value` None (`--default`) the built-in default."""
    if key == OWNERS:
        if value is None:
            raise ListservError("owners have no default; name them: lists set LIST owners A,B")
        set_owners(session, ml, value, now, actor)
        return
    if value is not None:
        set_list_setting(session, ml, key, value, now, actor)
        return
    setting = list_settings.find(key)
    if setting is None:
        set_list_setting(session, ml, key, "", now, actor)  # says what the known keys are
        return
    default = setting.reset(ml)
    shown = "built in" if default is None else repr(list_settings.text_of(default))
    audit(session, now, actor, "list-set", f"{key} back to its default ({shown})", ml.id)


def set_owners(session: Session, ml: MailingList, text: str, now: datetime,
               actor: str) -> list[str]:
    """Make the addresses in `text` (comma-separated) the list's owners, replacing the old."""
    try:
        owners = list(list_settings.ADDRESSES(text))
    except list_settings.Refused as exc:
        raise ListservError(f"owners: {exc}") from None
    if not owners:
        raise ListservError("a list needs at least one owner")
    ml.owners = [o for o in ml.owners if o.email in owners]
    kept = {o.email for o in ml.owners}
    ml.owners.extend(Owner(email=o) for o in owners if o not in kept)
    session.flush()
    audit(session, now, actor, "list-set", f"owners = {', '.join(owners)}", ml.id)
    return owners


def set_member(session: Session, renderer: Renderer, ml: MailingList, email: str,
               now: datetime, actor: str, *, name: str | None = None,
               delivery: str | None = None, language: str | None = None) -> Member:
    """Change a member's name, delivery mode or language (`members set`); she is not told.

    A digest member set to `regular` gets what waited for her next digest in one last digest
    (her mail, not a notice about the change)."""
    member = find_member(session, ml, email)
    if member is None:
        raise ListservError(f"{email} is not a member of {ml.address}")
    changes = []
    if name is not None:
        name = " ".join(name.split())
        if len(name) > MAX_NAME_LENGTH:
            raise ListservError(f"the name is longer than {MAX_NAME_LENGTH} characters")
        member.name = name
        changes.append("name")
    if delivery is not None:
        if delivery not in DELIVERY_MODES:
            raise ListservError(f"delivery {delivery!r} is not one of "
                                f"{', '.join(DELIVERY_MODES)}")
        if delivery == "regular" and member.delivery != delivery:
            digests.flush(session, renderer, ml, member, now)
        member.delivery = delivery
        changes.append(f"delivery {delivery}")
    if language is not None:
        known = sorted(p.lang for p in languages())
        language = language.strip().lower()
        if language not in (*known, ""):
            raise ListservError(f"language {language!r} is not one of {', '.join(known)} "
                                "(\"\" = the list's)")
        member.language = language
        changes.append(f"language {language or 'of the list'}")
    if not changes:
        raise ListservError("nothing to change: give --name, --delivery or --language")
    audit(session, now, actor, "member-changed", f"{member.email}: {', '.join(changes)}", ml.id)
    return member


def member_count(session: Session, ml: MailingList) -> int:
    """How many members the list has (what deleting it would drop)."""
    return session.scalar(select(func.count(Member.id)).where(Member.list_id == ml.id)) or 0


def delete_list(session: Session, ml: MailingList, now: datetime, actor: str,
                data_dir: Path) -> tuple[int, list[Path]]:
    """Delete a list with its roster, held mail, requests, meetings, submissions and settings
    (the database cascades); its mail not yet delivered is dropped. The log keeps its entries.

    Returns the number of members it had and its submissions' folders, which the caller
    removes (`files.remove_paths`) once this unit of work has committed.
    """
    count = member_count(session, ml)
    address, list_id = ml.address, ml.id
    folders = [data_dir / "submissions" / tracking for tracking in session.scalars(
        select(Submission.tracking_id).where(Submission.list_id == list_id))]
    # Nobody is mailed for a list that no longer exists: drop what still waits to go out.
    waiting = select(OutMessage.id).where(OutMessage.list_id == list_id)
    session.execute(delete(OutRecipient).where(OutRecipient.message_id.in_(waiting),
                                               OutRecipient.status == "queued"))
    session.execute(delete(MailingList).where(MailingList.id == list_id))
    session.expunge(ml)
    audit(session, now, actor, "list-deleted", f"{address} with {count} members")
    return count, folders


def chosen(ids: Sequence[str], everything: bool, waiting: Sequence[str], what: str) -> list[str]:
    """The ids a bulk decision acts on: those given, or with `--all` every waiting one."""
    if everything:
        if not waiting:
            raise ListservError(f"no {what}s are waiting")
        return list(waiting)
    return list(dict.fromkeys(i.strip() for i in ids))


def parse_since(text: str) -> datetime:
    """`--since` as the chair writes it: `YYYY-MM-DD` or `YYYY-MM-DD HH:MM`, in UTC."""
    for form in ("%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(" ".join(text.replace("T", " ").split()),
                                     form).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ListservError(f'--since {text!r}: give "YYYY-MM-DD" or "YYYY-MM-DD HH:MM" (UTC)')
