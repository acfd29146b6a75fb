"""Mail to `NAME-bounces@` and `NAME-bounces+TOKEN@`: delivery reports (and what else comes).

The failing member is the one whose token the report came back to; without a token, each
address the report names counts only if it is a member and the report quotes a message we
sent to that member. What names nobody goes to the chair; what names a member but matches
nothing we sent is recorded as unverified and shown to the chair. Automatic replies are only
logged. Nothing here ever answers the sender.
"""

from __future__ import annotations

from listserv.bounces.attribution import Target, by_token, sent_to
from listserv.bounces.forwarding import report_to_chair
from listserv.bounces.reports import Kind, Report, read_report
from listserv.bounces.scoring import register
from listserv.bounces.steps import act_now
from listserv.membership.subscriptions import find_member
from listserv.store.audit import DAEMON, audit

from .context import Context


def handle(ctx: Context) -> str:
    """Read the report, attribute it, score it; never reply."""
    report = read_report(ctx.inbound.raw)
    target = by_token(ctx.session, ctx.mailing_list, ctx.destination.token)
    if target is not None:
        return _for_member(ctx, report, target)
    if report.failures:
        return _by_address(ctx, report)
    if report.success_only:
        return _ignored(ctx, "a delivery notification, nothing failed")
    if report.automatic:
        return _ignored(ctx, f"{report.automatic}, not a delivery report")
    return _to_chair(ctx, "a report with no recognisable address")


def _ignored(ctx: Context, why: str) -> str:
    audit(ctx.session, ctx.now, DAEMON, "bounce-ignored", f"inbound #{ctx.inbound.id}: {why}",
          ctx.mailing_list.id)
    return f"ignored: {why}"


def _to_chair(ctx: Context, why: str) -> str:
    sent = report_to_chair(ctx.session, ctx.renderer, ctx.mailing_list,
                           ctx.inbound.raw, ctx.now, why, ctx.inbound.id)
    return f"{why}: {'sent to the chair' if sent else 'logged (chair cap reached)'}"


def _for_member(ctx: Context, report: Report, target: Target) -> str:
    """A report that came back to a member's (or a probe's) own envelope token."""
    member, probe = target.member, target.probe
    failure = report.failure_for(member.email)
    if failure is not None:
        kind, reason = failure.kind, failure.reason
    elif report.success_only:
        return _ignored(ctx, f"a delivery notification for {member.email}, nothing failed")
    elif report.automatic:
        kind, reason = Kind.AUTOREPLY, report.automatic
    else:
        kind, reason = Kind.UNKNOWN, f"unrecognised report: {report.subject or '(no subject)'}"
    source = "probe" if probe is not None else "report"
    event = register(ctx.session, ctx.mailing_list, member, kind, reason, ctx.now,
                     source=source, inbound_id=ctx.inbound.id, probe=probe)
    outcome = f"bounce: {member.email} {kind}{' counted' if event.counted else ''}"
    if kind is Kind.UNKNOWN or kind is Kind.RATE:
        _to_chair(ctx, f"a report for {member.email} that "
                  + ("says our sending limit was reached" if kind is Kind.RATE
                     else "could not be read"))
    step = act_now(ctx.session, ctx.renderer, ctx.mailing_list, member, ctx.now)
    return f"{outcome}; {step}" if step else outcome


def _by_address(ctx: Context, report: Report) -> str:
    """A report without a token of ours: each failed address that is a member, if verified."""
    ml = ctx.mailing_list
    done: list[str] = []
    unverified: list[str] = []
    rate = False
    named = 0
    for failure in report.failures:
        member = find_member(ctx.session, ml, failure.address)
        if member is None:
            done.append(f"{failure.address} not a member")
            continue
        named += 1
        verified = sent_to(ctx.session, ml, member.email, report.message_ids, ctx.now)
        event = register(ctx.session, ml, member, failure.kind, failure.reason, ctx.now,
                         source="report", verified=verified, inbound_id=ctx.inbound.id)
        rate = rate or failure.kind is Kind.RATE
        if not verified:
            unverified.append(member.email)
            done.append(f"{member.email} unverified")
            continue
        done.append(f"{member.email} {failure.kind}{' counted' if event.counted else ''}")
        step = act_now(ctx.session, ctx.renderer, ml, member, ctx.now)
        if step:
            done.append(step)
    if unverified:
        _to_chair(ctx, f"a report naming {', '.join(unverified)} that matches nothing "
                  "we sent (not counted)")
    elif rate:
        _to_chair(ctx, "a report that says our sending limit was reached")
    elif not named:
        audit(ctx.session, ctx.now, DAEMON, "bounce-ignored",
              f"inbound #{ctx.inbound.id}: names no member ({', '.join(done)})", ml.id)
    return "bounce: " + "; ".join(done)
