"""Headers and footer of mail the list sends as itself.

A member's copy of a post, a meeting reminder and a call for submissions all carry the list's
SPEC §3 headers and its footer; the features that send such mail take them from here.
"""

from __future__ import annotations

from listserv.delivery.notices import list_context
from listserv.mail.addresses import Role
from listserv.mail.mime.copies import ListHeaders
from listserv.mail.render import Renderer
from listserv.store.models.core import MailingList


def list_id(mailing_list: MailingList) -> str:
    """The RFC 2919 List-Id identifier, `NAME.DOMAIN`."""
    return f"{mailing_list.name}.{mailing_list.domain}"


def list_headers(mailing_list: MailingList) -> ListHeaders:
    """The SPEC §3 list headers for `mailing_list`'s copies."""
    description = " ".join(mailing_list.description.split())
    ident = f"<{list_id(mailing_list)}>"
    return ListHeaders(
        list_id=f"{description} {ident}" if description else ident,
        post=mailing_list.role_address(Role.POST),
        help=mailing_list.role_address(Role.REQUEST),
        subscribe=mailing_list.role_address(Role.JOIN),
        been_there=mailing_list.address,
        archive=mailing_list.archive_url,
        reply_to=mailing_list.role_address(Role.POST) if mailing_list.reply_to == "list" else "",
        unsubscribe="" if mailing_list.personalize else mailing_list.role_address(Role.LEAVE),
    )


def footer_text(renderer: Renderer, mailing_list: MailingList, lang: str = "en") -> str:
    """The list's footer: its own setting, used as the chair wrote it whatever the reader's
    language, or the default template in `lang` ("" = none)."""
    if mailing_list.footer is not None:
        return mailing_list.footer
    return renderer.text("footer.txt", lang, **list_context(mailing_list))
