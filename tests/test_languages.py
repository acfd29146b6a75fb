"""Every member in their own language (issue 20; SPEC §2, §3 "Languages"), through LMTP, the CLI
and the strict SMTP sink.

Acceptance 2 (a reminder in es, pt and en with one .ics), 3 (expiry, column and peer-input
answers in the language of the mail they answer) and 4 (`templates check`, per-list overrides).
Acceptance 1 (the built-in templates in five languages) is tests/test_template_languages.py.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from babel.dates import format_date, format_time

from .helpers import LIST, lmtp_send, make_message, parse, wait_until
from .test_column import COLUMN, submission
from .test_meetings import ics, meeting_mails, schedule

ANA, JOAO, BEN = "ana@example.net", "joao@example.net", "ben@example.net"
OTHER = "other@lists.example.org"
PEER_INPUT = "shma-peer-input@lists.example.org"


@pytest.fixture
def config_path(config_path: Path, tmp_path: Path) -> Path:
    """The test config with an operator's templates folder (empty until a test writes one)."""
    folder = tmp_path / "templates"
    folder.mkdir()
    config_path.write_text(f'templates_dir = "{folder}"\n' + config_path.read_text())
    return config_path


@pytest.fixture
def templates_dir(config_path: Path) -> Path:
    return config_path.parent / "templates"


def text_of(msg) -> str:
    return msg.get_body(("plain",)).get_content().replace("\r\n", "\n")


def mails_to(sink, address: str) -> list:
    return [parse(d.data) for d in sink.messages_for(address)]


# -- acceptance 2 ------------------------------------------------------------------------------


def test_a_reminder_reaches_each_member_in_their_language_with_one_calendar_entry(
        cli, shma, daemon, sink, clock, tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text(f"email;name;idioma\n{JOAO};João Silva;pt\n{BEN};Ben;\n")
    cli("members", "import", shma, str(roster))
    cli("members", "add", shma, ANA, "--name", "Ana", "--no-welcome")
    cli("members", "set", shma, ANA, "--language", "es")
    cli("lists", "set", shma, "meetings.extra_zones", "Asia/Tokyo")
    start = (clock.now() + timedelta(days=20)).replace(hour=18, minute=0, second=0,
                                                       microsecond=0)
    meeting_id = schedule(cli, start, "America/Chicago", 60, "--dial-in",
                          "Call +1 555 0100\\nPIN 4321#")
    cli("meetings", "remind", meeting_id, "--yes")
    sink.wait_for(lambda s: all(meeting_mails(s, m) for m in (ANA, JOAO, BEN)),
                  description="the reminder to the three members")
    mail = {m: meeting_mails(sink, m)[0] for m in (ANA, JOAO, BEN)}
    local = start.astimezone(ZoneInfo("America/Chicago"))
    tokyo = start.astimezone(ZoneInfo("Asia/Tokyo"))
    words = {ANA: ("Recordatorio", "Cuándo:", "es"), JOAO: ("Lembrete", "Quando:", "pt"),
             BEN: ("Reminder", "When:", "en_GB")}
    for member, (subject_word, when_word, locale) in words.items():
        msg = mail[member]
        body = text_of(msg)
        assert subject_word in str(msg["Subject"]) and when_word in body, body
        # The date in the member's language; the times in the meeting's zone, UTC, Tokyo.
        assert format_date(local, "full", locale=locale) in body, body
        def span(at, loc=locale):  # the 24-hour clock as the language writes it (es: 3:00)
            end = at + timedelta(hours=1)
            return f"{format_time(at, 'short', locale=loc)}\u2013" \
                   f"{format_time(end, 'short', locale=loc)}"

        assert f"{span(local)} {local:%Z} (America/Chicago)" in body, body
        assert f"{format_date(start, 'full', locale=locale)}, {span(start)} UTC" in body
        assert f"{span(tokyo)} JST (Asia/Tokyo)" in body
        # The dial-in keeps its line breaks.
        assert "  Call +1 555 0100\n  PIN 4321#" in body
    assert "Reminder" not in str(mail[ANA]["Subject"]) + str(mail[JOAO]["Subject"])
    assert ics(mail[ANA]) == ics(mail[JOAO]) == ics(mail[BEN])
    assert "METHOD:PUBLISH" in ics(mail[BEN])
    # The built-in footer in each member's language too.
    assert "Para darse de baja" in text_of(mail[ANA])
    assert "Para sair da lista" in text_of(mail[JOAO])
    sink.assert_no_refusals()


# -- acceptance 3 ------------------------------------------------------------------------------


SPANISH_POST = (
    "Hola a todos:\n\nLes escribo para contarles que el próximo sábado vamos a organizar una "
    "reunión en la biblioteca del barrio para hablar de los huertos comunitarios. "
    "Estamos buscando personas que quieran ayudar con las semillas y con el riego. "
    "Si pueden venir, por favor avísenme por correo. ") * 6 + "\nUn saludo,\nAna\n"


def test_a_spanish_members_held_post_expires_with_a_notice_in_spanish(
        cli, shma, daemon, sink, clock):
    cli("members", "add", shma, ANA, "--name", "Ana", "--no-welcome")
    cli("lists", "set", shma, "max_post_kb", "1")
    lmtp_send(daemon.ports["lmtp"], ANA, [LIST],
              make_message(sender=f"Ana <{ANA}>", subject="Huertos comunitarios este sábado",
                           body=SPANISH_POST))
    sink.wait_for(lambda s: any("held" in str(m["Subject"])
                                for m in mails_to(s, "chair@example.org")),
                  description="the held-post notice to the chair")
    [held] = json.loads(cli("held", "list", "--json").output)
    assert (held["sender"], held["lang"]) == (ANA, "es")
    clock.advance(timedelta(days=15))
    daemon.run_scheduler()
    sink.wait_for(lambda s: any("no se ha publicado" in str(m["Subject"])
                                for m in mails_to(s, ANA)),
                  description="the expiry notice in Spanish")
    [notice] = [m for m in mails_to(sink, ANA) if "no se ha publicado" in str(m["Subject"])]
    assert "nadie lo aprobó a tiempo" in " ".join(text_of(notice).split())


def test_a_french_column_submission_is_acknowledged_in_french(cli, shma, daemon, sink, store):
    cli("members", "add", shma, "claire@example.net", "--name", "Claire", "--no-welcome")
    data = submission("Claire <claire@example.net>", "Notre jardin partagé",
                      "Bonjour,\n\nVoici notre article pour la rubrique : nous avons créé un "
                      "jardin partagé dans le quartier et nous voulons raconter comment les "
                      "voisins se sont organisés.\n\nMerci et bonne journée,\nClaire\n",
                      [("jardin.pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")])
    lmtp_send(daemon.ports["lmtp"], "claire@example.net", [COLUMN], data)
    sink.wait_for(lambda s: any(str(m["Subject"]).startswith("Votre contribution SHMA-")
                                for m in mails_to(s, "claire@example.net")),
                  description="the acknowledgement in French")
    [ack] = [m for m in mails_to(sink, "claire@example.net")
             if str(m["Subject"]).startswith("Votre contribution SHMA-")]
    body = " ".join(text_of(ack).split())
    assert "Merci pour votre contribution" in body and "Numéro de suivi" in body
    assert "jardin.pdf" in body and "Thank you" not in body


def test_a_german_peer_input_request_is_answered_in_german(cli, shma, daemon, sink, clock):
    cli("members", "add", shma, "jonas@example.net", "--name", "Jonas", "--no-welcome")
    schedule(cli, clock.now() + timedelta(days=20), "Europe/Berlin", 60)
    lmtp_send(daemon.ports["lmtp"], "jonas@example.net", [PEER_INPUT],
              make_message(sender="Jonas <jonas@example.net>", to=PEER_INPUT,
                           subject="Reparaturcafé im Stadtteil",
                           body="Hallo zusammen,\n\nich würde gerne beim nächsten Treffen "
                                "über unser Reparaturcafé sprechen. Wir suchen Ideen, wie "
                                "wir mehr Nachbarn erreichen können.\n\nminutes: 20\n\n"
                                "Viele Grüße\nJonas\n"))
    sink.wait_for(lambda s: mails_to(s, "jonas@example.net"), description="the first answer")
    first = mails_to(sink, "jonas@example.net")[0]
    if str(first["Subject"]).startswith("Bitte bestätigen"):
        # Nothing proved the sender (SPEC §2): the confirmation, in German, comes first.
        assert "Anfrage für 20 Minuten Beratung" in " ".join(text_of(first).split())
        lmtp_send(daemon.ports["lmtp"], "jonas@example.net", [first["Reply-To"]],
                  make_message(sender="jonas@example.net", to=first["Reply-To"],
                               subject=f"Re: {first['Subject']}", body="OK\n",
                               In_Reply_To=first["Message-ID"]))
    sink.wait_for(lambda s: any(str(m["Subject"]).startswith("Ihre Anfrage für Beratung")
                                for m in mails_to(s, "jonas@example.net")),
                  description="the acknowledgement in German")
    [ack] = [m for m in mails_to(sink, "jonas@example.net")
             if str(m["Subject"]).startswith("Ihre Anfrage für Beratung")]
    body = " ".join(text_of(ack).split())
    assert "20 Minuten beim Treffen am" in body and "Thank you" not in body
    local = (clock.now() + timedelta(days=20)).astimezone(ZoneInfo("Europe/Berlin"))
    assert format_date(local, "full", locale="de") in body  # "Donnerstag, 24. Dezember 2026"


# -- acceptance 4 ------------------------------------------------------------------------------


def test_templates_check_refuses_an_unknown_variable_naming_file_and_line(cli, templates_dir):
    assert "no problems" in cli("templates", "check").output
    folder = templates_dir / LIST / "es"
    folder.mkdir(parents=True)
    override = folder / "welcome.txt"
    override.write_text("From: {{ owner_address }}\nTo: {{ to }}\nSubject: Hola\n\n"
                        "¡Bienvenida a {{ list_name }}!\n\nEscriba a {{ list_adress }}.\n")
    result = cli("templates", "check", ok=False)
    assert result.exit_code == 1
    assert f"{override}:7: unknown variable 'list_adress'" in result.output
    # A file that replaces no template, and a syntax error, are named too.
    (templates_dir / "welcom.txt").write_text("From: x\n\nHello\n")
    (templates_dir / "goodbye.txt").write_text("Subject: Bye\n\n{% if to %}\nno end\n")
    lines = cli("templates", "check", ok=False).output
    assert f"{templates_dir / 'welcom.txt'}:1: no built-in template is named welcom.txt" in lines
    assert f"{templates_dir / 'goodbye.txt'}:" in lines
    override.write_text(override.read_text().replace("list_adress", "list_address"))
    (templates_dir / "welcom.txt").unlink()
    (templates_dir / "goodbye.txt").unlink()
    assert "no problems" in cli("templates", "check").output


def test_a_per_list_override_is_used_for_that_list_only(cli, shma, daemon, sink, templates_dir):
    cli("lists", "create", OTHER, "--owner", "chair@example.org")
    folder = templates_dir / LIST
    folder.mkdir()
    (folder / "welcome.txt").write_text(
        "From: {{ owner_address }}\nTo: {{ to }}\nSubject: Welcome to the circle\n"
        "Auto-Submitted: auto-generated\n\nOur own words for {{ list_address }}.\n")
    shown = json.loads(cli("templates", "list", "--list", "shma", "--lang", "en",
                           "--json").output)
    assert {"name": "welcome.txt", "lang": "en", "origin": "list",
            "file": str(folder / "welcome.txt")} in shown
    cli("members", "add", shma, BEN)
    cli("members", "add", OTHER, "zoe@example.net")
    sink.wait_for(lambda s: s.messages_for(BEN) and s.messages_for("zoe@example.net"),
                  description="both welcomes")
    [ours] = mails_to(sink, BEN)
    [theirs] = mails_to(sink, "zoe@example.net")
    assert ours["Subject"] == "Welcome to the circle"
    assert text_of(ours).strip() == f"Our own words for {LIST}."
    assert theirs["Subject"] != "Welcome to the circle"
    assert "Our own words" not in text_of(theirs)
    assert "(list)" not in cli("templates", "show", "welcome", "--list", "other").output
    assert str(folder / "welcome.txt") in cli("templates", "show", "welcome", "--list",
                                               "shma").output


# -- a member's language -----------------------------------------------------------------------


def reply_ok(daemon, sender: str, asked) -> None:
    """Confirm by replying "OK" to a confirmation, as a mail client does."""
    lmtp_send(daemon.ports["lmtp"], sender, [asked["Reply-To"]],
              make_message(sender=sender, to=asked["Reply-To"], subject=f"Re: {asked['Subject']}",
                           body="OK\n", In_Reply_To=asked["Message-ID"]))


def member_row(cli, email: str) -> dict:
    rows = json.loads(cli("members", "list", LIST, "--json").output)
    return next(r for r in rows if r["email"] == email)


def test_joining_in_spanish_records_spanish_and_set_language_changes_it(cli, shma, daemon, sink):
    """The language of the request is the member's (SPEC §2); `set language pt` from an
    unproven sender is confirmed first, the confirmation already in Portuguese."""
    lmtp_send(daemon.ports["lmtp"], ANA, ["shma-request@lists.example.org"],
              make_message(sender=f"Ana <{ANA}>", to="shma-request@lists.example.org",
                           subject="Suscripción",
                           body="Hola, por favor quiero suscribirme a la lista. Gracias.\n"))
    sink.wait_for(lambda s: mails_to(s, ANA), description="the confirmation")
    reply_ok(daemon, ANA, mails_to(sink, ANA)[0])
    sink.wait_for(lambda s: any("Bienvenid" in str(m["Subject"]) for m in mails_to(s, ANA)),
                  description="the welcome in Spanish")
    assert member_row(cli, ANA)["language"] == "es"

    seen = len(mails_to(sink, ANA))
    lmtp_send(daemon.ports["lmtp"], ANA, ["shma-request@lists.example.org"],
              make_message(sender=ANA, to="shma-request@lists.example.org", subject="",
                           body="set language pt\n"))
    sink.wait_for(lambda s: any(str(m["Subject"]).startswith("Confirme, por favor: receber")
                                for m in mails_to(s, ANA)[seen:]),
                  description="the confirmation in Portuguese")
    asked = next(m for m in mails_to(sink, ANA)[seen:]
                 if str(m["Subject"]).startswith("Confirme, por favor: receber"))
    assert member_row(cli, ANA)["language"] == "es"  # nothing changes before she confirms
    reply_ok(daemon, ANA, asked)
    wait_until(lambda: member_row(cli, ANA)["language"] == "pt")
    # A language we have no texts in is refused politely, and nothing changes (the one-line
    # command has no words of any language: the answer is in her own, now Portuguese).
    seen = len(mails_to(sink, ANA))
    lmtp_send(daemon.ports["lmtp"], ANA, ["shma-request@lists.example.org"],
              make_message(sender=ANA, to="shma-request@lists.example.org", subject="",
                           body="set language xx\n"))
    sink.wait_for(lambda s: len(mails_to(s, ANA)) > seen, description="the answer to xx")
    assert "não temos textos nesse idioma" in " ".join(text_of(mails_to(sink, ANA)[-1]).split())
    assert member_row(cli, ANA)["language"] == "pt"


def test_notices_to_the_chair_are_in_the_chairs_language(cli, shma, daemon, sink):
    cli("lists", "set", shma, "owner_language", "fr")
    lmtp_send(daemon.ports["lmtp"], "stranger@else.org", [LIST],
              make_message(sender="stranger@else.org", subject="Hello"))
    sink.wait_for(lambda s: mails_to(s, "chair@example.org"), description="the held notice")
    notice = mails_to(sink, "chair@example.org")[0]
    assert "en attente de votre approbation" in str(notice["Subject"])
    # Her own language (`members set` on the owner, who is not a member) wins over the
    # list's owner_language; nothing else of an owner can be set that way.
    cli("members", "set", shma, "chair@example.org", "--language", "de")
    refused = cli("members", "set", shma, "chair@example.org", "--name", "Chair", ok=False)
    assert refused.exit_code == 1 and "only --language" in refused.output
    lmtp_send(daemon.ports["lmtp"], "other@else.org", [LIST],
              make_message(sender="other@else.org", subject="Hallo"))
    sink.wait_for(lambda s: any("wartet auf Ihre Freigabe" in str(m["Subject"])
                                for m in mails_to(s, "chair@example.org")),
                  description="the held notice in German")


def test_a_post_carries_the_built_in_footer_in_each_members_language_in_batches(
        cli, shma, daemon, sink):
    """Batched mode (`personalize = false`): one copy per language, each batched on its own;
    the post itself is the same in both. A footer the chair set is used as written."""
    cli("lists", "set", shma, "personalize", "false")
    for member in (ANA, BEN, "carla@example.net", "dan@example.net"):
        cli("members", "add", shma, member, "--no-welcome")
    cli("members", "set", shma, ANA, "--language", "es")
    cli("members", "set", shma, "carla@example.net", "--language", "es")
    lmtp_send(daemon.ports["lmtp"], BEN, [LIST],
              make_message(sender=BEN, subject="Garden day", body="See you on Saturday.\n"))
    readers = (ANA, BEN, "carla@example.net", "dan@example.net")
    sink.wait_for(lambda s: all(s.messages_for(m) for m in readers), description="the post")
    spanish = [d for d in sink.deliveries if ANA in d.rcpt_tos]
    assert len(spanish) == 1 and set(spanish[0].rcpt_tos) == {ANA, "carla@example.net"}
    assert "Para darse de baja" in text_of(parse(spanish[0].data))
    english = text_of(mails_to(sink, BEN)[0])
    assert "To leave the list" in english and "Para darse" not in english
    assert all("See you on Saturday." in text_of(mails_to(sink, m)[0]) for m in readers)

    cli("lists", "set", shma, "footer", "-- shma, the garden group")
    sink.clear()
    lmtp_send(daemon.ports["lmtp"], BEN, [LIST],
              make_message(sender=BEN, subject="Tools", body="Who has a rake?\n"))
    sink.wait_for(lambda s: all(s.messages_for(m) for m in readers), description="the post")
    assert len(sink.deliveries) == 1  # one copy for everyone
    assert all(text_of(mails_to(sink, m)[0]).rstrip().endswith("-- shma, the garden group")
               for m in readers)
