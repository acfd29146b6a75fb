"""`listserv doctor`: why list mail might not arrive, each finding with its fix (issue 18).

Per list domain: MX (or the hosted mailbox), SPF of the envelope domain covering the address
mail leaves from, the DKIM TXT record matching the configured key, DMARC. Once: TLS and AUTH
to the relay (a real EHLO), the web endpoint's `base_url` when `[web] enabled`, and the queue
(oldest item, the last hour's failure rate; `listserv.operations.status`'s queries).

Each check ends `ok`, `warn` (worth knowing, not wrong), `skip` (does not apply) or `fail`
(wrong: the command exits non-zero). DNS goes through `listserv.mail.dns.DnsQueries`, the
resolvers of `/etc/resolv.conf` or `LISTSERV_DNS_NAMESERVERS`. docs/doctor.md explains each.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.config.loading import is_loopback
from listserv.mail.addresses import Role, normalize_domain
from listserv.mail.dkim_record import (
    KeyProblem,
    public_key_of_pem,
    public_key_of_record,
    public_record,
    same_key,
    zone_strings,
)
from listserv.mail.dns import DnsFailure, DnsQueries
from listserv.mail.spf import SpfError, check_host, spf_record
from listserv.operations.status import DELIVERY_WINDOW, deliveries_since, queue_state
from listserv.posting.dmarc import parse_record, walk_names
from listserv.store.engine import Store
from listserv.store.models.core import MailingList

#: How long the relay and the web endpoint may take to answer.
NETWORK_TIMEOUT = 10.0
#: The last hour's deliveries count as failing when more than this share failed…
MAX_FAILURE_RATE = 0.2
#: …out of at least this many (two failures out of three say little).
MIN_DELIVERIES_FOR_RATE = 10

OK, WARN, SKIP, FAIL = "ok", "warn", "skip", "fail"


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's outcome: what was checked (`check`, `subject`), the `status`, what was
    found (`detail`) and, unless all is well, what to do (`fix`)."""

    check: str
    subject: str
    status: str
    detail: str
    fix: str = ""


@dataclass(frozen=True, slots=True)
class ListFacts:
    """What the checks need to know of a list: its address, the domain its mail is From
    (the post address's), and its envelope domain (the bounce address's)."""

    address: str
    from_domain: str
    envelope_domain: str


def list_facts(session: Session, ml: MailingList | None) -> list[ListFacts]:
    """The facts of `ml`, or of every list when it is None."""
    lists = [ml] if ml is not None else list(
        session.scalars(select(MailingList).order_by(MailingList.id)))
    return [ListFacts(m.address, m.role_address(Role.POST).rpartition("@")[2],
                      m.role_address(Role.BOUNCES).rpartition("@")[2]) for m in lists]


def doctor_report(settings: Settings, store: Store, lists: list[ListFacts],
                  now: datetime) -> dict[str, Any]:
    """Every finding, and `ok`: whether none failed."""
    queries = DnsQueries()
    findings: list[Finding] = []
    if not lists:
        findings.append(Finding("lists", "", WARN, "there is no list yet: no domain to check",
                                "listserv lists create NAME@DOMAIN --owner EMAIL"))
    for domain in dict.fromkeys(f.from_domain for f in lists):
        findings.append(check_mx(settings, domain, queries))
    # A hosted mailbox's provider sends everything as the account (Settings.hosted_sender).
    hosted = settings.hosted_sender.rpartition("@")[2] if settings.hosted else ""
    for domain in dict.fromkeys(hosted or f.envelope_domain for f in lists):
        findings.append(check_spf(settings, domain, queries))
    for domain in dict.fromkeys(f.from_domain for f in lists):
        findings.append(check_dkim(settings, domain, queries))
        findings.append(check_dmarc(domain, queries))
    findings.append(check_relay(settings))
    findings.append(check_web(settings))
    with store.reading() as session:
        findings.append(check_queue(settings, session, now))
    return {"lists": [f.address for f in lists],
            "checks": [asdict(f) for f in findings],
            "ok": all(f.status != FAIL for f in findings)}


def doctor_lines(report: dict[str, Any]) -> list[str]:
    """The report for a terminal: one line a check, its fix indented below, a verdict last."""
    lines = []
    for check in report["checks"]:
        subject = f" {check['subject']}" if check["subject"] else ""
        lines.append(f"{check['status'].upper():4}  {check['check']}{subject}: "
                     f"{check['detail']}")
        if check["fix"]:
            lines += [f"      fix: {line}" if n == 0 else f"           {line}"
                      for n, line in enumerate(check["fix"].splitlines())]
    failed = sum(c["status"] == FAIL for c in report["checks"])
    lines.append(f"{failed} problem(s) found" if failed else "all clear")
    return lines


# -- DNS ---------------------------------------------------------------------------------------


def sending_host(settings: Settings) -> str:
    """The host whose addresses mail leaves from: the relay, unless it is this machine (then
    this machine's name: `[daemon] hostname`, or its FQDN)."""
    relay = settings.outbound.host
    if not is_loopback(relay):
        return relay
    return settings.daemon.hostname or socket.getfqdn()


def check_mx(settings: Settings, domain: str, queries: DnsQueries) -> Finding:
    """Mail for `domain` reaches us: its MX, or the hosted mailbox's IMAP intake."""
    if settings.hosted:
        imap = settings.intake.imap
        return Finding("mx", domain, OK, f"hosted mailbox {imap.username}, read over IMAP "
                                         f"from {imap.host}:{imap.port}")
    try:
        records = queries.mx(domain)
    except DnsFailure as exc:
        return Finding("mx", domain, FAIL, f"DNS could not tell: {exc}",
                       "check that the domain is delegated and its name servers answer")
    here = settings.daemon.hostname or socket.getfqdn()
    if not records:
        return Finding("mx", domain, FAIL, "no MX record: mail for the lists has nowhere to go",
                       f"publish: {domain}. IN MX 10 {here}.   (the host running your MTA), "
                       "or set up a hosted mailbox ([intake.imap], README)")
    hosts = ", ".join(f"{host} ({preference})" for preference, host in records)
    return Finding("mx", domain, OK, f"mail goes to {hosts}")


def check_spf(settings: Settings, envelope: str, queries: DnsQueries) -> Finding:
    """The envelope domain's SPF lets the sending host's addresses send for it."""
    outbound = settings.outbound
    if outbound.transport != "smtp":
        return Finding("spf", envelope, SKIP, f'[outbound] transport = "{outbound.transport}": '
                                              "mail is written to the outbox, not sent")
    host = sending_host(settings)
    try:
        addresses = [host] if _is_address(host) else queries.addresses(host)
        record = spf_record(queries.txt(envelope))
    except DnsFailure as exc:
        return Finding("spf", envelope, FAIL, f"DNS could not tell: {exc}",
                       "check that the domain is delegated and its name servers answer")
    except SpfError as exc:  # several SPF records
        return Finding("spf", envelope, FAIL, str(exc),
                       f"merge the SPF records at {envelope} into one")
    if not addresses:
        return Finding("spf", envelope, FAIL,
                       f"{host}, where mail leaves from, has no address in DNS",
                       f"publish an A record for {host}, or set [daemon] hostname to this "
                       "machine's public name")
    terms = " ".join(f"ip{6 if ':' in a else 4}:{a}" for a in addresses)
    if record is None:
        return Finding("spf", envelope, FAIL, f"{envelope} publishes no SPF record",
                       f'publish: {envelope}. IN TXT "v=spf1 {terms} -all"')
    results = {address: check_host(address, envelope, queries) for address in addresses}
    failing = {a: r for a, r in results.items() if r.result != "pass"}
    if not failing:
        return Finding("spf", envelope, OK, f"{record!r} lets {host} "
                                            f"({', '.join(addresses)}) send")
    reasons = "; ".join(f"{a}: {r.result} ({r.reason})" for a, r in failing.items())
    if settings.hosted and (host == envelope or host.endswith("." + envelope)):
        return Finding("spf", envelope, WARN, f"the provider's own domain does not list its "
                                              f"submission host: {reasons}",
                       "nothing to do unless mail is refused: the provider sends for its "
                       "own domain from its own servers")
    if settings.hosted and "include:" in record:
        # A provider may send from other servers than the one taking submissions: its
        # include: is what counts, and only the provider's documentation can say which.
        return Finding("spf", envelope, WARN, f"cannot tell whether {record!r} covers the "
                                              f"provider: {reasons}",
                       "check that the include: your provider documents is in the record")
    missing = " ".join(f"ip{6 if ':' in a else 4}:{a}" for a in failing)
    return Finding("spf", envelope, FAIL,
                   f"{record!r} does not let {host} send: {reasons}",
                   f"add {missing} (or the include: your provider documents) before the "
                   f"final term of the SPF record at {envelope}")


def _is_address(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


def check_dkim(settings: Settings, domain: str, queries: DnsQueries) -> Finding:
    """The TXT record at `selector._domainkey.domain` publishes the configured key."""
    dkim = settings.dkim
    key = dkim.key_for(normalize_domain(domain))
    if key is None:
        if dkim.enabled:
            return Finding("dkim", domain, SKIP, "not among [dkim] domains: not signed")
        return Finding("dkim", domain, WARN,
                       "DKIM signing is off: Gmail and Yahoo put unsigned bulk mail in spam",
                       f"listserv dkim keygen {domain}, then set [dkim] selector and "
                       "private_key_file and publish the record it prints")
    key_file = key.private_key_file
    name = f"{key.selector}._domainkey.{domain}"
    try:
        pem = key_file.read_bytes()
        expected = public_key_of_pem(pem)
    except OSError as exc:
        return Finding("dkim", domain, FAIL, f"cannot read {key_file}: {exc.strerror}",
                       "fix [dkim] private_key_file (readable by the daemon's user)")
    except KeyProblem as exc:
        return Finding("dkim", domain, FAIL, f"{key_file}: {exc}",
                       f"make a key with listserv dkim keygen {domain}")
    publish = f"{name}. IN TXT ( {zone_strings(public_record(pem))} )"
    try:
        records = queries.txt(name)
    except DnsFailure as exc:
        return Finding("dkim", domain, FAIL, f"DNS could not tell: {exc}",
                       "check that the domain is delegated and its name servers answer")
    if not records:
        return Finding("dkim", domain, FAIL, f"no DKIM record at {name}: receivers cannot "
                                             "verify the list's signatures", f"publish: {publish}")
    problems = []
    for record in records:
        try:
            published = public_key_of_record(record)
        except KeyProblem as exc:
            problems.append(str(exc))
            continue
        if same_key(published, expected):
            return Finding("dkim", domain, OK, f"{name} publishes the key of {key_file} "
                                               f"({expected.key_size} bits)")
        problems.append(f"it publishes another key than {key_file} ({published.key_size} "
                        "bits)")
    return Finding("dkim", domain, FAIL, f"key mismatch at {name}: {'; '.join(problems)}",
                   f"replace the record with: {publish}")


def check_dmarc(domain: str, queries: DnsQueries) -> Finding:
    """A DMARC record for the list domain (or its organisational domain)."""
    for name in walk_names(domain):
        try:
            records = [r for r in queries.txt(f"_dmarc.{name}") if parse_record(r) is not None]
        except DnsFailure as exc:
            return Finding("dmarc", domain, FAIL, f"DNS could not tell: {exc}",
                           "check that the domain is delegated and its name servers answer")
        if len(records) > 1:
            return Finding("dmarc", domain, FAIL, f"_dmarc.{name} has {len(records)} DMARC "
                                                  "records: receivers ignore them all",
                           f"keep one record at _dmarc.{name}")
        if records:
            policy = parse_record(records[0]) or {}
            where = "" if name == domain else f" (at {name}, the organisational domain)"
            return Finding("dmarc", domain, OK,
                           f"p={policy.get('p', '?')}{where}: {records[0]!r}")
    return Finding("dmarc", domain, FAIL,
                   "no DMARC record: Gmail and Yahoo refuse or junk bulk mail without one",
                   f'publish: _dmarc.{domain}. IN TXT "v=DMARC1; p=none; '
                   f'rua=mailto:postmaster@{domain}"   (then p=quarantine once reports are '
                   "clean)")


# -- The relay, the web endpoint, the queue -----------------------------------------------------


def check_relay(settings: Settings) -> Finding:
    """A real EHLO to the relay: does it answer, take TLS as configured, and the login."""
    s = settings.outbound
    subject = f"{s.host}:{s.port}"
    if s.transport != "smtp":
        return Finding("relay", "", WARN, f'[outbound] transport = "{s.transport}": mail is '
                                          f"written to {settings.outbox_dir}, never sent",
                       '[outbound] transport = "smtp" with the relay\'s host and port')
    context = ssl.create_default_context()
    if not s.verify_cert:
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    facts = []
    try:
        client = (smtplib.SMTP_SSL(s.host, s.port, timeout=NETWORK_TIMEOUT, context=context)
                  if s.tls == "implicit" else
                  smtplib.SMTP(s.host, s.port, timeout=NETWORK_TIMEOUT))
    except ssl.SSLCertVerificationError as exc:
        return _untrusted(subject, exc)
    except (OSError, smtplib.SMTPException) as exc:
        return Finding("relay", subject, FAIL, f"no connection: {_reason(exc)}",
                       "start the relay, or fix [outbound] host, port and tls")
    try:
        code, _ = client.ehlo(settings.daemon.hostname or None)
        if code != 250:
            return Finding("relay", subject, FAIL, f"EHLO answered {code}",
                           "check the relay's log for why it refuses this machine")
        if s.tls == "starttls":
            if not client.has_extn("starttls"):
                return Finding("relay", subject, FAIL, "the relay does not offer STARTTLS",
                               'turn STARTTLS on at the relay, or use tls = "implicit" on '
                               "its port 465")
            client.starttls(context=context)
            client.ehlo(settings.daemon.hostname or None)
        if s.tls != "none":
            facts.append(f"TLS {_tls_version(client)}"
                         + ("" if s.verify_cert else " (certificate not checked)"))
        else:
            facts.append("no TLS (a relay on this machine)")
        if s.username:
            if not client.has_extn("auth"):
                return Finding("relay", subject, FAIL, "the relay offers no AUTH "
                                                       "(often: only after STARTTLS)",
                               '[outbound] tls = "starttls" or "implicit", or leave '
                               "username empty for a relay that trusts this machine")
            client.login(s.username, s.password)
            facts.append(f"AUTH as {s.username} accepted")
        else:
            facts.append("no AUTH configured")
    except ssl.SSLCertVerificationError as exc:
        return _untrusted(subject, exc)
    except smtplib.SMTPAuthenticationError as exc:
        return Finding("relay", subject, FAIL, f"login refused: {_reason(exc)}",
                       "check [outbound] username and password_file/password_env (an app "
                       "password where the provider has two-step sign-in)")
    except (OSError, smtplib.SMTPException) as exc:
        return Finding("relay", subject, FAIL, f"the dialogue failed: {_reason(exc)}",
                       "check [outbound] host, port and tls against the relay's settings")
    finally:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()
    return Finding("relay", subject, OK, "answers EHLO; " + ", ".join(facts))


def _untrusted(subject: str, exc: ssl.SSLCertVerificationError) -> Finding:
    return Finding("relay", subject, FAIL, f"its certificate is not trusted: "
                                           f"{exc.verify_message}",
                   "give the relay a certificate for its name from a public CA "
                   "(verify_cert = false only for a relay you run yourself)")


def _tls_version(client: smtplib.SMTP) -> str:
    sock = client.sock
    version = sock.version() if isinstance(sock, ssl.SSLSocket) else None
    return version or "on"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {exc.smtp_error.decode('utf-8', 'replace')}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def check_web(settings: Settings) -> Finding:
    """With `[web] enabled`, `base_url` answers over HTTP (what a reverse proxy forwards)."""
    web = settings.web
    if not web.enabled:
        return Finding("web", "", SKIP, "[web] enabled = false: no one-click unsubscribe")
    if not web.base_url:
        return Finding("web", "", FAIL, "[web] base_url is empty: links point at "
                       f"http://{web.host}:{web.port}, which only this machine reaches",
                       "set [web] base_url to the public https:// URL your reverse proxy "
                       f"forwards to {web.host}:{web.port}")
    try:
        with urllib.request.urlopen(web.base_url, timeout=NETWORK_TIMEOUT) as answer:
            code = answer.status
    except urllib.error.HTTPError as exc:
        code = exc.code
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Finding("web", web.base_url, FAIL, f"does not answer: {reason}",
                       f"start the daemon with [web] enabled and have the reverse proxy "
                       f"forward {web.base_url} to {web.host}:{web.port}")
    if code >= 500:
        return Finding("web", web.base_url, FAIL, f"answers {code}: the proxy cannot reach "
                                                  "the daemon",
                       f"check that the daemon listens on {web.host}:{web.port} and the "
                       "proxy forwards there")
    if not web.base_url.lower().startswith("https://"):
        return Finding("web", web.base_url, WARN, f"answers {code}, but not over https: "
                                                  "one-click unsubscribe stays off (RFC 8058)",
                       "serve it over https:// at the reverse proxy and set base_url so")
    return Finding("web", web.base_url, OK, f"answers {code}")


def check_queue(settings: Settings, session: Session, now: datetime) -> Finding:
    """The oldest waiting item within `[status] max_queue_age_minutes`, and the last hour's
    deliveries mostly successful."""
    queue = queue_state(session, now)
    done = deliveries_since(session, now - DELIVERY_WINDOW)
    total = sum(done.values())
    failed = done["temporary"] + done["permanent"]
    oldest = queue["oldest"]
    limit = settings.status.max_queue_age_minutes
    detail = (f"{queue['outgoing']} outgoing recipients and {queue['incoming']} incoming "
              f"messages waiting"
              + (f", the oldest ({oldest['id']}) for {oldest['age_minutes']} min" if oldest
                 else "")
              + f"; last hour: {done['sent']} sent, {failed} failed")
    if oldest is not None and oldest["age_minutes"] > limit:
        return Finding("queue", "", FAIL, detail + f" (waiting more than {limit} min)",
                       "see `listserv queue` for the reasons; a stopped relay or a daemon "
                       "not running leaves mail waiting (`listserv status`)")
    if total >= MIN_DELIVERIES_FOR_RATE and failed / total > MAX_FAILURE_RATE:
        return Finding("queue", "", FAIL, detail + f" ({failed * 100 // total}% failed)",
                       "see `listserv queue --failed` and `listserv bounces list` for the "
                       "relay's answers (a refusal naming SPF, DKIM or DMARC: the checks above)")
    return Finding("queue", "", OK, detail)

