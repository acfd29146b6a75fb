"""The web endpoint (SPEC §3, §7 `[web]`): one-click unsubscribe (RFC 8058) and confirmation
pages, over real HTTP to the running daemon on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from listserv.config import load_settings
from listserv.daemon import Daemon
from listserv.errors import ConfigError, ListservError
from listserv.files import write_new_private
from listserv.mail.render import Renderer
from listserv.store.models.core import Member, Once
from listserv.store.once import ONE_CLICK_SPENT
from listserv.web.links import one_click_base, public_url
from listserv.web.pages import LANGUAGES, choose_language

from .dkim_keys import new_dkim_key
from .helpers import LIST, lmtp_send, make_message, parse, wait_mail, wait_until
from .smtp_sink import SmtpSink
from .web_helpers import Answer, confirm_link_in, http, write_web_config

ANN = "ann@example.net"
JANE = "jane@example.org"
ONE_CLICK = b"List-Unsubscribe=One-Click"
PUBLIC = "https://lists.example.org/listserv"


@pytest.fixture
def web_base_url() -> str:
    """`[web] base_url` of the test's daemon ("" = the endpoint's own http://127.0.0.1:PORT)."""
    return ""


@pytest.fixture
def config_path(tmp_path: Path, db_url: str, sink: SmtpSink, web_base_url: str) -> Path:
    path = write_web_config(tmp_path / "listserv.toml", tmp_path / "data", db_url, sink.port,
                            web_base_url)
    if web_base_url.startswith("https://"):  # one-click needs signed copies (RFC 8058 §4)
        with_signing(path)
    return path


def with_signing(path: Path) -> None:
    """`[dkim]` signing for the lists' domain, with a new key beside the config."""
    key = path.parent / "dkim.pem"
    write_new_private(key, new_dkim_key())
    with path.open("a", encoding="utf-8") as config:
        config.write(f'[dkim]\nselector = "s1"\nprivate_key_file = "{key}"\n')


def web(daemon) -> str:
    return f"http://127.0.0.1:{daemon.ports['web']}"


def leave_token(store, email: str) -> str | None:
    with store.reading() as session:
        return session.scalar(select(Member.leave_token).where(Member.email == email))


@pytest.mark.both_backends
def test_one_click_post_unsubscribes_get_does_not_and_a_repeat_answers_200(
        cli, shma, daemon, sink, store, settings):
    cli("members", "add", LIST, ANN)
    token = leave_token(store, ANN)
    url = f"{web(daemon)}/u/{token}"
    ports = json.loads((settings.run_dir / "ports.json").read_text())
    assert ports["web"] == daemon.ports["web"]

    page = http(url)  # a link scanner, or the member opening the link
    assert page.status == 200
    assert '<button type="submit">Unsubscribe</button>' in page.text
    assert ANN in page.text
    assert leave_token(store, ANN) == token, "GET must never unsubscribe"
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none'
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-content-type-options"] == "nosniff"

    done = http(url, data=ONE_CLICK)  # curl -X POST -d List-Unsubscribe=One-Click URL
    assert done.status == 200
    assert "You have left the list" in done.text
    assert leave_token(store, ANN) is None
    goodbye = wait_mail(sink, ANN, "You have left the shma list")
    assert str(goodbye["Reply-To"]).startswith("shma-confirm+")  # the undo

    again = http(url, data=ONE_CLICK)  # a mailbox provider retrying
    assert again.status == 200
    assert "Already unsubscribed" in again.text
    assert http(url).status == 200


def test_the_undo_in_the_goodbye_brings_a_one_click_leaver_back(cli, shma, daemon, sink, store):
    cli("members", "add", LIST, ANN)
    assert http(f"{web(daemon)}/u/{leave_token(store, ANN)}", data=ONE_CLICK).status == 200
    goodbye = wait_mail(sink, ANN, "You have left the shma list")
    lmtp_send(daemon.ports["lmtp"], ANN, [str(goodbye["Reply-To"])],
              make_message(sender=ANN, to=str(goodbye["Reply-To"]), subject="Re: undo",
                           body="OK\n"))
    wait_until(lambda: leave_token(store, ANN), what="Ann back on the list")


def test_a_spent_one_click_token_is_forgotten_after_the_outgoing_retention(
        cli, shma, daemon, sink, store, settings):
    cli("members", "add", LIST, ANN)
    url = f"{web(daemon)}/u/{leave_token(store, ANN)}"
    assert http(url, data=ONE_CLICK).status == 200
    wait_mail(sink, ANN, "You have left the shma list")
    assert spent_rows(store) == 1
    daemon.clock.advance(timedelta(days=settings.retention.outgoing_days - 1))
    daemon.run_scheduler()  # within the retention: a provider's retry still answers 200
    assert spent_rows(store) == 1
    assert http(url, data=ONE_CLICK).status == 200
    daemon.clock.advance(timedelta(days=2))
    daemon.run_scheduler()
    assert spent_rows(store) == 0
    late = http(url, data=ONE_CLICK)  # weeks later: nothing to say "already" about
    assert late.status == 404


def spent_rows(store) -> int:
    with store.reading() as session:
        return len(session.scalars(select(Once).where(Once.kind == ONE_CLICK_SPENT)).all())


def test_an_unknown_token_gets_a_polite_page_and_404(cli, shma, daemon):
    base = web(daemon)
    for url in (f"{base}/u/aaaaaaaaaaaaaaaaaaaaaaaa", f"{base}/c/bbbbbbbbbbbbbbbbbbbbbbbb",
                f"{base}/u/not-a-token", f"{base}/nothing/here"):
        for data in (None, ONE_CLICK):
            answer = http(url, data=data)
            assert answer.status == 404, url
            assert "This link does not work" in answer.text
            assert "Nothing has changed" in answer.text
            assert answer.headers["x-content-type-options"] == "nosniff"


def test_a_post_without_the_one_click_body_changes_nothing(cli, shma, daemon, store):
    cli("members", "add", LIST, ANN)
    token = leave_token(store, ANN)
    answer = http(f"{web(daemon)}/u/{token}", data=b"")
    assert answer.status == 400
    assert '<button type="submit">Unsubscribe</button>' in answer.text
    assert leave_token(store, ANN) == token


def test_pages_speak_the_browsers_language_when_the_member_has_none(cli, shma, daemon, store):
    cli("members", "add", LIST, ANN)
    url = f"{web(daemon)}/u/{leave_token(store, ANN)}"
    answer = http(url, headers={"Accept-Language": "de-CH, fr;q=0.8, en;q=0.5"})
    assert answer.headers["content-language"] == "de"
    assert '<html lang="de">' in answer.text
    assert "Abmelden" in answer.text
    missing = http(f"{web(daemon)}/u/aaaaaaaaaaaaaaaaaaaaaaaa",
                   headers={"Accept-Language": "pt-BR"})
    assert missing.status == 404 and "Este link não funciona" in missing.text


def test_choose_language_prefers_the_members_then_the_browsers_by_quality():
    assert choose_language("es", "fr") == "es"
    assert choose_language("", "fr;q=0.4, pt;q=0.9, xx") == "pt"
    assert choose_language("", "xx, zh;q=0.9") == "en"
    assert choose_language("", "fr;q=0, de") == "de"
    assert choose_language("", "") == "en"


def test_a_join_confirmed_on_the_page_makes_a_member_and_needs_the_form_token(
        cli, shma, daemon, sink, store):
    lmtp_send(daemon.ports["lmtp"], JANE, ["shma-join@lists.example.org"],
              make_message(sender=JANE, to="shma-join@lists.example.org", subject="join"))
    confirmation = wait_mail(sink, JANE, "Please confirm: join the shma list")
    link = confirm_link_in(confirmation)
    assert link.startswith(web(daemon) + "/c/")

    page = http(link)
    assert page.status == 200 and "Join the SHMA list" in page.text
    cookie = page.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/c/" in cookie
    assert leave_token(store, JANE) is None, "GET must never confirm"

    # A cross-site post carries no cookie: nothing happens, the page asks again.
    forged = http(link, data=b"form_token=guess")
    assert forged.status == 403 and "press the button once more" in forged.text
    assert leave_token(store, JANE) is None

    nonce = cookie.split(";")[0].split("=", 1)[1]
    done = http(link, data=f"form_token={nonce}".encode(),
                headers={"Cookie": f"listserv_form={nonce}"})
    assert done.status == 200
    assert "Welcome to the SHMA list!" in done.text
    assert leave_token(store, JANE) is not None
    wait_mail(sink, JANE, "Welcome to the shma list")
    again = http(link, data=f"form_token={nonce}".encode(),
                 headers={"Cookie": f"listserv_form={nonce}"})
    assert again.status == 200 and "already been used" in again.text


def test_links_point_at_the_base_url_or_the_bound_port_and_vanish_when_off(tmp_path, sink):
    on = load_settings(write_web_config(tmp_path / "c.toml", tmp_path / "d", "", sink.port))
    assert public_url(on, 4321) == "http://127.0.0.1:4321"
    assert public_url(on) == "", "the command line does not know a port 0 daemon's port"
    config = tmp_path / "off.toml"
    config.write_text("[web]\nenabled = false\nbase_url = \"https://x.example/l\"\n")
    assert public_url(load_settings(config)) == ""
    assert one_click_base(load_settings(config)) == ""
    request = SimpleNamespace(token="abcdefghijklmnopqrstuvwx", expires_at=datetime.now(UTC),
                              delivery="nomail")
    context = {"request": request, "to": JANE, "confirm_address": "c@x", "request_address": "r@x",
               "list_name": "shma", "list_address": LIST, "for_someone_else": False}
    for lang in LANGUAGES:
        assert "/c/" not in Renderer().body("confirm-unsub-request.txt", lang, **context)
        linked = Renderer(web_url=PUBLIC).body("confirm-unsub-request.txt", lang, **context)
        assert f"  {PUBLIC}/c/abcdefghijklmnopqrstuvwx\n" in linked


@pytest.mark.parametrize("web_base_url", [PUBLIC])
def test_personalised_copies_offer_the_https_one_click_url_first(cli, shma, daemon, sink,
                                                                  store, settings):
    assert one_click_base(settings) == PUBLIC
    cli("members", "add", LIST, ANN, "--no-welcome")
    cli("members", "add", LIST, JANE, "--no-welcome")
    lmtp_send(daemon.ports["lmtp"], JANE, [LIST],
              make_message(sender=JANE, subject="Picnic on Sunday"))
    copy = wait_mail(sink, ANN, "Picnic on Sunday")
    token = leave_token(store, ANN)
    assert copy["List-Unsubscribe"] == (
        f"<{PUBLIC}/u/{token}>, <mailto:shma-leave+{token}@lists.example.org>")
    assert copy["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    raw = next(d.data for d in sink.messages_for(ANN))
    assert raw.count(b"List-Unsubscribe:") == 1 and raw.count(b"List-Unsubscribe-Post:") == 1
    assert parse(raw)["List-Unsubscribe"] == copy["List-Unsubscribe"]
    signed = {h.strip().lower() for h in
              str(copy["DKIM-Signature"]).replace("\r\n", "").split("h=")[1].split(";")[0]
              .split(":")}
    assert {"list-unsubscribe", "list-unsubscribe-post"} <= signed


def test_one_click_needs_https_and_signing(tmp_path, sink):
    config = write_web_config(tmp_path / "c.toml", tmp_path / "d", "", sink.port,
                              "http://lists.example.org/listserv")
    assert one_click_base(load_settings(config)) == ""
    config = write_web_config(tmp_path / "s.toml", tmp_path / "d", "", sink.port, PUBLIC)
    assert one_click_base(load_settings(config)) == ""  # https, but nothing is signed
    with_signing(config)
    assert one_click_base(load_settings(config)) == PUBLIC


def test_a_base_url_that_is_not_a_url_is_refused_with_its_key(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[web]\nenabled = true\nbase_url = "lists.example.org/x"\n')
    with pytest.raises(ConfigError, match=r"web\.base_url"):
        load_settings(config)


def test_a_taken_web_port_stops_the_daemon_with_one_line_naming_the_web_table(settings):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = dataclasses.replace(settings,
                                   web=dataclasses.replace(settings.web, port=port))
        with pytest.raises(ListservError, match=rf"cannot listen for web on 127\.0\.0\.1:{port}"
                           r".*\[web\]"):
            Daemon(busy).start()


def press_confirm(link: str) -> Answer:
    """Open a confirmation page and press its button, as a browser does (cookie and form)."""
    page = http(link)
    assert page.status == 200, page.text
    nonce = page.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    return http(link, data=f"form_token={nonce}".encode(),
                headers={"Cookie": f"listserv_form={nonce}"})


@pytest.mark.parametrize("to,body,subject,title,done", [
    ("shma-leave@lists.example.org", "", "Please confirm: leave the shma list",
     "Leave the SHMA list", "You have left the list"),
    ("shma-request@lists.example.org", "set nomail", "Please confirm: stop mail",
     "Stop mail from the SHMA list", "receives none of its messages"),
    ("shma-request@lists.example.org", "set digest plain", "Please confirm: a digest of",
     "Receive the SHMA list as a digest", "together in one digest as plain text"),
])
def test_an_unproven_leave_or_set_is_completed_on_its_page_as_a_reply_would(
        cli, shma, daemon, sink, store, to, body, subject, title, done):
    cli("members", "add", LIST, ANN, "--no-welcome")
    lmtp_send(daemon.ports["lmtp"], ANN, [to],
              make_message(sender=ANN, to=to, subject=body or "bye", body=body + "\n"))
    link = confirm_link_in(wait_mail(sink, ANN, subject))
    assert title in http(link).text
    answer = press_confirm(link)
    assert answer.status == 200 and done in answer.text
    with store.reading() as session:
        member = session.scalar(select(Member).where(Member.email == ANN))
        assert (member is None) if "leave" in to else (
            member.delivery == {"set nomail": "nomail", "set digest plain": "digest-plain"}[body])
