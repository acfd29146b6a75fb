"""Mail to `NAME-request@` (and requests found on the list address): commands and free text.

One reply per command mail, summarising what was done, not understood and ignored; a single
free-text request is answered by the mail its action sends (a confirmation, the help text).
Automatic mail never gets here (the router's guards ignore it), and nothing is ever sent to the
list itself or a mailer daemon.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta

from listserv.archive import by_mail as archive
from listserv.archive.settings import keeps as keeps_archive
from listserv.delivery.notices import PREVIEW_LINES, list_context, notify, notify_chair
from listserv.digests.posts import DELIVERY_MODES
from listserv.intent.language import has_language
from listserv.intent.request import understand
from listserv.intent.understanding import Command, Kind, Understanding
from listserv.mail.addresses import Role, normalize, valid_address
from listserv.mail.headers import from_address, from_name, header_text
from listserv.mail.text import message_text
from listserv.meetings import queries as meetings
from listserv.membership import subscriptions as membership
from listserv.store.audit import DAEMON, audit
from listserv.store.lookup import open_request_for_token
from listserv.store.models.core import MailingList, Member, Request

from ..mail.automatic import may_auto_reply
from . import confirm, peer_input
from .context import Context

# The first word of a classic command line: these act at once when the sender is proven,
# free text asks first.
CLASSIC_LEAVE = frozenset({"unsubscribe", "leave", "signoff", "unsub"})

# Subscribe/unsubscribe requests for other addresses handled per message (SPEC §2).
MAX_THIRD_PARTY = 3

# Members who may read the archive (`index`, `get`): not one still waiting to be let in.
READERS = ("active", "disabled")


@dataclass(frozen=True, slots=True)
class Done:
    """One thing a request mail led to; the reply's template says it in words."""

    code: str
    address: str = ""
    detail: str = ""


@dataclass
class Results:
    """What a command mail did, for its one reply."""

    done: list[Done] = field(default_factory=list)
    not_understood: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    # Help or info texts asked for in a command mail, sent inside its one reply.
    texts: dict[str, str] = field(default_factory=dict)
    # Whether an action already answered the sender (a confirmation to them, help, goodbye).
    answered: bool = False
    # Requests for other addresses met so far (the first MAX_THIRD_PARTY are handled).
    third_party: int = 0
    # Archived posts asked for with `get` (every `get` line of a mail: one reply carries them).
    wanted_posts: list[int] = field(default_factory=list)

    def add(self, code: str, address: str = "", detail: str = "") -> None:
        """Record an outcome once (a command repeated 50 times is reported once)."""
        done = Done(code, address, detail)
        if done not in self.done:
            self.done.append(done)


def own_addresses(ml: MailingList) -> set[str]:
    """Every address of the list: automatic answers never go to one of them."""
    return {normalize(ml.role_address(role)) for role in Role}


def sender_of(ctx: Context) -> str:
    return from_address(ctx.msg) or normalize(ctx.inbound.mail_from)


def may_answer(ctx: Context, recipient: str) -> bool:
    """Automatic mail gets no answer; neither do the list's own addresses or daemons."""
    return (may_auto_reply(ctx.msg, ctx.inbound.mail_from, recipient)
            and recipient not in own_addresses(ctx.mailing_list))


def handle(ctx: Context) -> str:
    """Understand a mail to -request and act on each of its commands (at most
    `intent.MAX_COMMANDS`)."""
    return act(ctx, understand(ctx.msg, ctx.mailing_list.name))


def act(ctx: Context, understood: Understanding) -> str:
    """Carry out what a request mail asks; returns the outcome for the log.

    The replies are in the language the mail was written in; a mail with no words to tell it
    by (a bare command) is answered in the sender's own language when she is a member."""
    sender = sender_of(ctx)
    if not has_language(f"{header_text(ctx.msg, 'Subject')}\n{message_text(ctx.msg)}"):
        member = membership.find_member(ctx.session, ctx.mailing_list, sender)
        if member is not None and member.language:
            understood = replace(understood, lang=member.language)
    results = Results(not_understood=list(understood.unrecognised),
                      ignored=list(understood.ignored))
    classic = len(understood.commands) > 1 or bool(understood.unrecognised or understood.ignored)
    for command in understood.commands:
        _one(ctx, command, understood.lang, sender, results, classic)
    if results.wanted_posts:
        _send_posts(ctx, understood.lang, sender, results)
    if (classic or not results.answered) and may_answer(ctx, sender):
        # The requester's own words (subject, lines not understood) go back only to a proven
        # sender: to a forged From they would be an attacker's text mailed to someone else.
        echo = ctx.identity.proves(sender)
        notify(ctx.session, ctx.renderer, ctx.mailing_list, "reply-command-results.txt",
               [sender], ctx.now, kind="reply", lang=understood.lang, results=results,
               subject=header_text(ctx.msg, "Subject") if echo else "", echo=echo)
    summary = "; ".join(d.detail or f"{d.code} {d.address}".strip() for d in results.done)
    summary = summary or "nothing done"
    return f"request: {summary}"


def _one(ctx: Context, command: Command, lang: str, sender: str, results: Results,
         classic: bool) -> None:
    ml = ctx.mailing_list
    if command.kind is Kind.SUBSCRIBE:
        _subscribe(ctx, command, lang, sender, results)
    elif command.kind is Kind.UNSUBSCRIBE:
        _unsubscribe(ctx, command, lang, sender, results)
    elif command.kind is Kind.SET:
        _set(ctx, command, lang, sender, results)
    elif command.kind is Kind.CONFIRM:
        request = open_request_for_token(ctx.session, command.token or "", ctx.now)
        if request is None or request.list_id != ml.id:
            results.add("confirm-unknown")
            return
        results.add("confirm-done", request.email, confirm.complete(ctx, request))
    elif command.kind in (Kind.HELP, Kind.INFO):
        _text_reply(ctx, command.kind.value, lang, sender, results, classic)
        results.add(f"{command.kind.value}-sent")
    elif command.kind in (Kind.INDEX, Kind.GET):
        _archive(ctx, command, lang, sender, results, classic)
    elif command.kind is Kind.PEER_INPUT:
        outcome, answered = peer_input.from_request(ctx, lang)
        results.answered = results.answered or answered
        results.add("peer-input-forwarded", detail=outcome)
    else:
        _unclear(ctx, lang, sender, results)


def _text_reply(ctx: Context, what: str, lang: str, sender: str, results: Results,
                classic: bool) -> None:
    """The help, info or index text (`reply-WHAT.txt`): inside the one reply to a command
    mail (once however often it was asked), else a reply of its own."""
    ml = ctx.mailing_list
    template = f"reply-{what}.txt"
    extra = {"is_member": membership.find_member(ctx.session, ml, sender) is not None,
             "meetings": meetings.upcoming(ctx.session, ml, ctx.now, lang)}
    if what == "archive-index":
        extra |= {"posts": archive.recent(ctx.session, ml), "max_get": archive.MAX_GET}
    if classic:
        results.texts.setdefault(what, ctx.renderer.body(
            template, lang, to=sender, **extra, **list_context(ml)))
    elif may_answer(ctx, sender):
        notify(ctx.session, ctx.renderer, ml, template, [sender], ctx.now, kind="reply",
               lang=lang, **extra)
        results.answered = True


def _reader(ctx: Context, sender: str) -> Member | None:
    """The sender's membership when she may read the list's archive (SPEC §3: members of a
    list that keeps one)."""
    member = membership.find_member(ctx.session, ctx.mailing_list, sender)
    if member is None or member.status not in READERS or not keeps_archive(ctx.mailing_list):
        return None
    return member


def _archive(ctx: Context, command: Command, lang: str, sender: str, results: Results,
             classic: bool) -> None:
    """`index` and `get N …` from a member; anyone else gets the help text (and no post)."""
    if _reader(ctx, sender) is None:
        _text_reply(ctx, "help", lang, sender, results, classic)
        results.add("archive-members-only", detail=command.kind.value)
        return
    if command.kind is Kind.INDEX:
        _text_reply(ctx, "archive-index", lang, sender, results, classic)
        results.add("index-sent")
        return
    results.wanted_posts.extend(n for n in command.numbers if n not in results.wanted_posts)


def _send_posts(ctx: Context, lang: str, sender: str, results: Results) -> None:
    """One reply with the posts `get` asked for, each a message/rfc822 part, to the member's
    own address only (never another one the mail names)."""
    ml = ctx.mailing_list
    member = _reader(ctx, sender)
    assert member is not None  # `_archive` collects numbers only from a reader
    posts, missing = archive.by_numbers(ctx.session, ml, results.wanted_posts)
    dropped = len(results.wanted_posts) > archive.MAX_GET
    if may_answer(ctx, member.email):
        notify(ctx.session, ctx.renderer, ml, "reply-archive-get.txt", [member.email], ctx.now,
               kind="reply", lang=lang, posts=[archive.index_entry(p) for p in posts],
               missing=missing, dropped=dropped, max_get=archive.MAX_GET,
               attachments=[(p.raw, f"{ml.name}-{p.number}.eml") for p in posts])
        results.answered = True
    numbers = ", ".join(str(p.number) for p in posts)
    results.add("get-sent" if posts else "get-none", detail=numbers)
    if missing:
        results.add("get-missing", detail=", ".join(str(n) for n in missing))


def _subscribe(ctx: Context, command: Command, lang: str, sender: str,
               results: Results) -> None:
    ml = ctx.mailing_list
    target = valid_address(command.address or sender)
    if target is None:
        results.add("subscribe-bad-address", command.address or sender)
        return
    if target in own_addresses(ml):
        results.add("subscribe-list-itself")
        return
    if target != sender:
        _for_someone_else(ctx, "subscribe", target, lang, sender, results, command.delivery)
        return
    if membership.find_member(ctx.session, ml, target) is not None:
        results.add("subscribe-already-member", target)
        return
    sent = membership.ask_to_confirm(
        ctx.session, ctx.renderer, ml, "subscribe", target, ctx.now, lang=lang,
        requested_by=sender, name=command.name or from_name(ctx.msg),
        delivery=command.delivery or "regular", inbound_id=ctx.inbound.id)
    results.answered = results.answered or sent
    results.add("subscribe-confirm-sent" if sent else "subscribe-capped", target)


def _unsubscribe(ctx: Context, command: Command, lang: str, sender: str,
                 results: Results) -> None:
    ml = ctx.mailing_list
    target = normalize(command.address or sender)
    if target != sender:
        _for_someone_else(ctx, "unsubscribe", target, lang, sender, results)
        return
    member = membership.find_member(ctx.session, ml, target)
    if member is None:
        results.add("unsubscribe-not-member", target)
        return
    first_word = (command.line.split() or [""])[0].lower()
    if first_word in CLASSIC_LEAVE and ctx.identity.proves(member.email):
        membership.unsubscribe(ctx.session, ctx.renderer, ml, member, ctx.now, sender, lang=lang)
        results.answered = True
        results.add("unsubscribe-done", target)
        return
    # Free text, or a sender not proven (SPEC §2): a misread or forged mail must not remove
    # anyone. One confirmation waits at a time, however many such mails arrive.
    sent = membership.ask_to_confirm(ctx.session, ctx.renderer, ml, "unsubscribe", target,
                                     ctx.now, lang=lang, requested_by=sender,
                                     inbound_id=ctx.inbound.id)
    results.answered = results.answered or sent
    results.add("unsubscribe-confirm-sent" if sent else "unsubscribe-capped", target)


def _for_someone_else(ctx: Context, kind: str, target: str, lang: str, sender: str,
                      results: Results, delivery: str | None = None) -> None:
    """A subscribe or unsubscribe for another address (SPEC §2, "No oracle").

    The requester's answer is the same whether or not `target` is a member, was capped or
    was mailed at all; only `target` learns the truth, from its confirmation (a member is
    told it already is one). A non-member is not asked to leave.
    Nothing the requester wrote (a name, the subject) goes into the mail to `target`: the
    address sets its own name when it confirms.
    """
    results.third_party += 1
    if results.third_party > MAX_THIRD_PARTY:
        results.add(f"{kind}-third-party-limit", target)
        return
    ml = ctx.mailing_list
    member = membership.find_member(ctx.session, ml, target) is not None
    if kind == "subscribe" or member:
        membership.ask_to_confirm(ctx.session, ctx.renderer, ml, kind, target, ctx.now,
                                  lang=lang, requested_by=sender,
                                  delivery=delivery or "regular", inbound_id=ctx.inbound.id,
                                  already_member=member and kind == "subscribe")
    results.add(f"{kind}-asked", target)


def _set(ctx: Context, command: Command, lang: str, sender: str, results: Results) -> None:
    """`set regular|digest|digest plain|nomail` for the sender: at once when the message
    proves her address (SPEC §2), else after her confirmation."""
    ml = ctx.mailing_list
    member = membership.find_member(ctx.session, ml, sender)
    if member is None:
        results.add("set-not-member", sender)
        return
    if command.language is not None:
        _set_language(ctx, member, command.language, lang, sender, results)
        return
    if command.delivery not in DELIVERY_MODES:
        results.not_understood.append(command.line)
        return
    if member.delivery == command.delivery:
        results.add("set-done", detail=command.delivery)  # nothing to change, nothing to ask
        return
    if ctx.identity.proves(member.email):
        # Her notice of the change answers a one-command mail.
        changed = membership.set_delivery(ctx.session, ctx.renderer, ml, member,
                                          command.delivery, ctx.now, sender, lang=lang)
        results.answered = results.answered or changed
        results.add("set-done", detail=command.delivery)
        return
    sent = membership.ask_to_confirm(ctx.session, ctx.renderer, ml, "set", member.email,
                                     ctx.now, lang=lang, requested_by=sender,
                                     delivery=command.delivery, inbound_id=ctx.inbound.id)
    results.answered = results.answered or sent
    results.add("set-confirm-sent" if sent else "set-capped", member.email, command.delivery)


def _set_language(ctx: Context, member: Member, language: str, lang: str, sender: str,
                  results: Results) -> None:
    """`set language xx`: at once when the message proves her address, else after her
    confirmation (written in the language she asked for), as for any `set` (SPEC §2)."""
    ml = ctx.mailing_list
    if language not in ctx.renderer.languages():
        results.add("set-language-unknown", detail=language)
        return
    detail = f"language {language}"
    if member.language == language:
        results.add("set-done", detail=detail)
        return
    if ctx.identity.proves(member.email):
        membership.set_language(ctx.session, ml, member, language, ctx.now, sender)
        results.add("set-done", detail=detail)
        return
    sent = membership.ask_to_confirm(ctx.session, ctx.renderer, ml, "language", member.email,
                                     ctx.now, lang=language, requested_by=sender,
                                     inbound_id=ctx.inbound.id)
    results.answered = results.answered or sent
    results.add("set-confirm-sent" if sent else "set-capped", member.email, detail)


def _unclear(ctx: Context, lang: str, sender: str, results: Results) -> None:
    """Help for the sender; for the chair, a notice she answers with one word (issue 21)."""
    ml = ctx.mailing_list
    request = Request(
        list_id=ml.id, kind="unclear", email=sender, lang=lang, status="waiting", token=None,
        requested_by=sender, summary=header_text(ctx.msg, "Subject"),
        inbound_id=ctx.inbound.id, created_at=ctx.now,
        expires_at=ctx.now + timedelta(days=ml.held_expiry_days),
    )
    ctx.session.add(request)
    ctx.session.flush()
    audit(ctx.session, ctx.now, DAEMON, "request-unclear", f"inbound #{ctx.inbound.id}", ml.id)
    lines = message_text(ctx.msg).splitlines()
    notify_chair(ctx.session, ctx.renderer, ml, "notice-request-unclear.txt", ctx.now,
                 decide="request", item_id=request.id, request=request,
                 text_lines=lines[:PREVIEW_LINES], more_lines=len(lines) > PREVIEW_LINES)
    _text_reply(ctx, "help", lang, sender, results, classic=False)
    results.add("unclear")
