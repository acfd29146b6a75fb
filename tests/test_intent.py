"""Request understanding (listserv/intent/): commands, free text, stripping, guard, language.

The phrasings here are deliberately not the corpus's (tests/data/requests), so these tests also
check that the phrase files generalise beyond the messages they were tuned on.
"""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from listserv.intent.guard import (
    GUARD_FREE_TEXT,
    GUARD_MAX_WORDS,
    Guard,
    _enough_for_guard,  # the guard's reading limit, tested on its own
    guard,
)
from listserv.intent.language import detect_language
from listserv.intent.model import CLASSES, Model, word_count
from listserv.intent.phrases import load_phrases
from listserv.intent.request import understand
from listserv.intent.understanding import Command, Kind
from listserv.mail.text import html_to_text, message_text

from .helpers import RULES_ONLY

LIST = "shma"
REQUEST = "shma-request@lists.example.org"
POST = "shma@lists.example.org"
TOKEN = "abcdefgh23456789klmnopqr"


def mail(body: str = "", subject: str = "", to: str = REQUEST, html: str | None = None,
         html_only: bool = False, sender: str = "jane@uni.example.edu") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    if html_only:
        msg.set_content(html or "", subtype="html")
    else:
        msg.set_content(body)
        if html is not None:
            msg.add_alternative(html, subtype="html")
    return msg


def first(body: str = "", subject: str = "", **kw) -> Command:
    return understand(mail(body, subject, **kw), LIST).commands[0]



def on_list(body: str, subject: str = "A question", *,
            reader: Model | None = None) -> tuple[Guard, Command | None]:
    decision, u = guard(mail(body, subject, to=POST), LIST, reader=reader)
    return decision, (u.commands[0] if u.commands else None)


# --- classic commands ------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "kind", "delivery"), [
    ("subscribe", Kind.SUBSCRIBE, None),
    ("SUBSCRIBE", Kind.SUBSCRIBE, None),
    ("join", Kind.SUBSCRIBE, None),
    ("Join shma", Kind.SUBSCRIBE, None),
    ("subscribe digest", Kind.SUBSCRIBE, "digest"),
    ("unsubscribe", Kind.UNSUBSCRIBE, None),
    ("Unsubscribe SHMA", Kind.UNSUBSCRIBE, None),
    ("leave", Kind.UNSUBSCRIBE, None),
    ("SIGNOFF SHMA", Kind.UNSUBSCRIBE, None),
    ("signoff shma@lists.example.org", Kind.UNSUBSCRIBE, None),
    ("help", Kind.HELP, None),
    ("HELP", Kind.HELP, None),
    ("info", Kind.INFO, None),
    ("INFO SHMA", Kind.INFO, None),
    ("set digest", Kind.SET, "digest"),
    ("SET SHMA DIGEST", Kind.SET, "digest"),
    ("set digest plain", Kind.SET, "digest-plain"),
    ("SET SHMA DIGEST PLAIN", Kind.SET, "digest-plain"),
    ("set plaindigest", Kind.SET, "digest-plain"),
    ("set digest mime", Kind.SET, "digest"),
    ("subscribe digest=plain", Kind.SUBSCRIBE, "digest-plain"),
    ("set shma nomail", Kind.SET, "nomail"),
    ("SET SHMA MAIL", Kind.SET, "regular"),
    ("set regular", Kind.SET, "regular"),
    ("set shma nodigest", Kind.SET, "regular"),
    ("set delivery off", Kind.SET, "nomail"),
])
def test_classic_command(line: str, kind: Kind, delivery: str | None) -> None:
    u = understand(mail(line), LIST)
    assert [(c.kind, c.delivery) for c in u.commands] == [(kind, delivery)]
    assert u.commands[0].line == line
    assert u.unrecognised == () and u.ignored == ()


def test_listserv_subscribe_with_name() -> None:
    c = first("SUBSCRIBE SHMA Jane Doe")
    assert (c.kind, c.name, c.address) == (Kind.SUBSCRIBE, "Jane Doe", None)
    c = first("sub shma Ana María Ruiz")
    assert (c.kind, c.name) == (Kind.SUBSCRIBE, "Ana María Ruiz")


def test_subscribe_with_a_name_but_no_list_name() -> None:
    assert first("subscribe Jane Doe").name == "Jane Doe"
    c = first("Subscribe Me Please")
    assert (c.kind, c.name) == (Kind.SUBSCRIBE, None)  # free text, not a person called "Me"


def test_subscribe_another_address() -> None:
    c = first("subscribe address=Maria@Uni.Example.EDU")
    assert (c.kind, c.address) == (Kind.SUBSCRIBE, "maria@uni.example.edu")
    c = first("unsubscribe shma old.me@mail.example.com")
    assert (c.kind, c.address) == (Kind.UNSUBSCRIBE, "old.me@mail.example.com")


def test_confirm_token_in_body() -> None:
    c = first(f"confirm {TOKEN.upper()}")
    assert (c.kind, c.token) == (Kind.CONFIRM, TOKEN)


def test_several_commands_in_order_and_end() -> None:
    u = understand(mail("set shma digest\ninfo\nend\nunsubscribe\nwhatever"), LIST)
    assert [c.kind for c in u.commands] == [Kind.SET, Kind.INFO]
    assert u.ignored == ("unsubscribe", "whatever")


def test_signature_delimiter_stops_commands() -> None:
    u = understand(mail("help\n-- \nJane Doe\nunsubscribe"), LIST)
    assert [c.kind for c in u.commands] == [Kind.HELP]
    assert u.unrecognised == ()


def test_signature_without_delimiter_is_ignored_not_unrecognised() -> None:
    u = understand(mail("subscribe\n\nTobias Example\nSelbsthilfe-Kontaktstelle Nordheim"), LIST)
    assert [c.kind for c in u.commands] == [Kind.SUBSCRIBE]
    assert u.unrecognised == ()
    assert "Tobias Example" in u.ignored


def test_unrecognised_lines_are_reported() -> None:
    u = understand(mail("subscribe\nfrobnicate the list\nset shma sometimes\nhelp"), LIST)
    assert [c.kind for c in u.commands] == [Kind.SUBSCRIBE, Kind.HELP]
    assert u.unrecognised == ("frobnicate the list", "set shma sometimes")


def test_a_command_mail_with_nothing_understood() -> None:
    u = understand(mail("set shma sometimes\nconfirm this please"), LIST)
    assert [c.kind for c in u.commands] == [Kind.UNCLEAR]
    assert u.unrecognised == ("set shma sometimes", "confirm this please")


def test_a_500_line_command_mail_is_processed_up_to_the_limit() -> None:
    lines = [("help", "info", "set digest", "bogus")[i % 4] for i in range(500)]
    u = understand(mail("\n".join(lines)), LIST, max_commands=50)
    # one Understanding (so one reply): repeated commands collapse, 50 lines processed
    assert [c.kind for c in u.commands] == [Kind.HELP, Kind.INFO, Kind.SET]
    assert len(u.unrecognised) == 12  # "bogus" among the first 50 lines
    assert len(u.ignored) == 450
    # By default, SPEC §2's limit: 10 command lines per message.
    assert understand(mail("\n".join(["help"] * 500)), LIST).ignored == ("help",) * 490


@pytest.mark.parametrize("body,address", [
    ("subscribe address=Maria@Uni.Example.EDU", "maria@uni.example.edu"),
    ("subscribe shma address=<maria@uni.example.edu>", "maria@uni.example.edu"),
    ('subscribe address="maria@uni.example.edu"', "maria@uni.example.edu"),
    ("unsubscribe address=maria@uni.example.edu", "maria@uni.example.edu"),
    ("Please subscribe address=maria@uni.example.edu to this list.", "maria@uni.example.edu"),
])
def test_mailmans_address_form_is_read_in_commands_and_free_text(body, address) -> None:
    assert first(body).address == address
    assert first("", body).address == address  # as the Subject of an empty mail
    decision, command = on_list(body)
    assert decision is Guard.REQUEST and command.address == address


def test_a_long_command_mail_on_the_list_is_a_request_within_the_limit() -> None:
    body = "help\n" + "subscribe address=x@example.net\n" * 500
    decision, u = guard(mail(body, "commands", to=POST), LIST)
    assert decision is Guard.REQUEST
    assert [(c.kind, c.address) for c in u.commands] == [
        (Kind.HELP, None), (Kind.SUBSCRIBE, "x@example.net")]
    assert len(u.ignored) == 491  # every line past the first 10, though the guard read fewer
    # a post that merely starts with a command word stays a post
    prose = "help\n" + "We are looking for volunteers for the spring meeting.\n" * 40
    assert on_list(prose)[0] is Guard.POST


def test_the_guard_reads_a_long_body_only_as_far_as_can_change_its_verdict() -> None:
    long_post = "Our spring meeting will be in Lisbon this year.\n" * 5000
    read = _enough_for_guard(long_post)
    assert GUARD_FREE_TEXT <= len(read) < GUARD_FREE_TEXT + 1_000
    assert long_post.startswith(read)
    reply = "Please remove me.\n\n" + "> an old post\n" * 5000
    assert _enough_for_guard(reply) == reply  # quoted lines do not count
    assert on_list(long_post)[0] is Guard.POST


def test_command_in_subject_when_body_is_empty() -> None:
    assert first("", "unsubscribe").kind is Kind.UNSUBSCRIBE
    assert first("", "SUBSCRIBE SHMA Jane Doe").name == "Jane Doe"


# --- confirmations -----------------------------------------------------------------------------

CONFIRM_SUBJECT = f"Re: Confirm your subscription to shma (confirm {TOKEN})"


@pytest.mark.parametrize("body", ["yes", "OK", "ok", "Yes!", "confirm", "", "Sí", "oui", "Ja",
                                  "sim"])
def test_reply_to_a_confirmation(body: str) -> None:
    c = first(body, CONFIRM_SUBJECT)
    assert (c.kind, c.token) == (Kind.CONFIRM, TOKEN)


def test_reply_to_a_confirmation_with_quoted_text() -> None:
    body = (f"OK\n\nOn Mon, 3 Mar 2025 at 10:00, shma-request@lists.example.org wrote:\n"
            f"> To confirm, reply to this message.\n> confirm {TOKEN}\n")
    c = first(body, CONFIRM_SUBJECT)
    assert (c.kind, c.token) == (Kind.CONFIRM, TOKEN)


def test_bare_ok_without_token() -> None:
    c = first("OK", "Re: your request")
    assert (c.kind, c.token) == (Kind.CONFIRM, None)


def test_no_to_a_confirmation_is_not_a_confirmation() -> None:
    c = first("Please unsubscribe me, I never asked for this.", CONFIRM_SUBJECT)
    assert c.kind is Kind.UNSUBSCRIBE


# --- free text -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "kind", "delivery"), [
    ("Hello, please subscribe me to the list. Thanks, Jo", Kind.SUBSCRIBE, None),
    ("Could you add me? I heard about SHMA at a conference.", Kind.SUBSCRIBE, None),
    ("Hi, I'd love to be on the SHMA mailing list.", Kind.SUBSCRIBE, None),
    ("Please sign me up for the digest.", Kind.SUBSCRIBE, "digest"),
    ("Please subscribe me; the daily digest would suit me best.", Kind.SUBSCRIBE, "digest"),
    ("I want off this list.", Kind.UNSUBSCRIBE, None),
    ("Please stop emailing me.", Kind.UNSUBSCRIBE, None),
    ("I keep getting these emails. Unsubscribe.", Kind.UNSUBSCRIBE, None),
    ("Send me the digest instead, please.", Kind.SET, "digest"),
    ("I'd like individual messages instead of the digest.", Kind.SET, "regular"),
    ("Can I get the digest version instead?", Kind.SET, "digest"),
    ("Please stop sending me mail while I'm on leave.", Kind.SET, "nomail"),
    ("Could you put my membership on hold until March?", Kind.SET, "nomail"),
    ("Please put me back to normal delivery.", Kind.SET, "regular"),
    ("I'd like to go back to receiving individual messages.", Kind.SET, "regular"),
    ("How does this list work? Which commands can I send?", Kind.HELP, None),
    ("When is the next meeting?", Kind.INFO, None),
    ("I'd like to request peer input time at the next meeting.", Kind.PEER_INPUT, None),
    ("Hola, quiero darme de alta en la lista. Saludos", Kind.SUBSCRIBE, None),
    ("Por favor quitadme de la lista, gracias", Kind.UNSUBSCRIBE, None),
    ("Ya no quiero recibir estos correos.", Kind.UNSUBSCRIBE, None),
    ("Prefiero recibir el resumen en lugar de cada mensaje.", Kind.SET, "digest"),
    ("Bonjour, pourriez-vous me retirer de la liste ? Merci", Kind.UNSUBSCRIBE, None),
    ("Je voudrais m'abonner à la liste de diffusion.", Kind.SUBSCRIBE, None),
    ("Bonjour, comment je fais pour me désabonner de cette liste ?", Kind.UNSUBSCRIBE, None),
    ("Hallo, bitte nehmt mich in den Verteiler auf. Danke", Kind.SUBSCRIBE, None),
    ("Könnten Sie mich bitte vom Verteiler nehmen?", Kind.UNSUBSCRIBE, None),
    ("Bitte keine Mails mehr schicken.", Kind.UNSUBSCRIBE, None),
    ("Bitte stellen Sie mich auf die Zusammenfassung um.", Kind.SET, "digest"),
    ("Olá, gostaria de me inscrever na lista. Obrigado", Kind.SUBSCRIBE, None),
    ("Por favor, me removam da lista de e-mails.", Kind.UNSUBSCRIBE, None),
    ("Gostaria de receber a lista em modo resumo.", Kind.SUBSCRIBE, "digest"),
    ("Nothing to see here, just saying hello.", Kind.UNCLEAR, None),
])
def test_free_text(body: str, kind: Kind, delivery: str | None) -> None:
    c = first(body)
    assert (c.kind, c.delivery) == (kind, delivery)


def test_pause_is_not_an_unsubscribe() -> None:
    body = ("I'm on sabbatical until June. Can you stop sending me list mail until then? "
            "Please don't unsubscribe me.")
    c = first(body)
    assert (c.kind, c.delivery) == (Kind.SET, "nomail")
    c = first("Me voy de baja por maternidad. ¿Podéis dejar de enviarme los correos hasta "
              "octubre? No quiero darme de baja.")
    assert (c.kind, c.delivery) == (Kind.SET, "nomail")


def test_another_address_is_returned() -> None:
    c = first("please add my colleague Maria@Uni.Example.edu -- she just started.\n\n"
              "-- \nJo Bloggs\njo@uni.example.edu")
    assert (c.kind, c.address) == (Kind.SUBSCRIBE, "maria@uni.example.edu")
    c = first("Could you remove my old address, jo@old.example.com, from the list?")
    assert (c.kind, c.address) == (Kind.UNSUBSCRIBE, "jo@old.example.com")


def test_address_named_just_before_the_request() -> None:
    c = first("My late husband's account, ian@old.example.org, still gets the list. "
              "Please remove that address.")
    assert (c.kind, c.address) == (Kind.UNSUBSCRIBE, "ian@old.example.org")
    c = first("Please unsubscribe me. If you need me, write to me at jo@home.example.net.")
    assert (c.kind, c.address) == (Kind.UNSUBSCRIBE, None)


def test_stop_mail_until_now_is_not_a_pause() -> None:
    c = first("I have enjoyed the list until now, but please stop sending me these emails.")
    assert (c.kind, c.delivery) == (Kind.UNSUBSCRIBE, None)


def test_addresses_in_signatures_and_quotes_are_not_taken() -> None:
    body = ("Please subscribe me.\n\nBest regards,\nJo Bloggs\n"
            "Office: jo.office@uni.example.edu\n\n"
            "On Tue, 4 Mar 2025, Someone <someone@else.example.org> wrote:\n> hello")
    c = first(body)
    assert (c.kind, c.address) == (Kind.SUBSCRIBE, None)


def test_request_only_in_subject() -> None:
    assert first("", "Please add me to the SHMA listserv").kind is Kind.SUBSCRIBE
    assert first("", "Bitte in die SHMA-Liste aufnehmen").kind is Kind.SUBSCRIBE


def test_reply_subject_words_are_not_the_request() -> None:
    # the subject of the message replied to is not this author's request
    assert first("Thanks, very useful.", "Re: [shma] unsubscribe").kind is Kind.UNCLEAR


def test_join_address_means_subscribe() -> None:
    c = first("Jo Bloggs\nLecturer", "", to="shma-join@lists.example.org")
    assert c.kind is Kind.SUBSCRIBE
    assert first("Jo Bloggs\nLecturer", "").kind is Kind.UNCLEAR


def test_free_text_line_is_the_request_sentence() -> None:
    c = first("Dear colleagues,\n\nI have enjoyed the list for years. Please unsubscribe me as "
              "I am retiring.\n\nRegards,\nJo")
    assert c.line == "Please unsubscribe me as I am retiring."


# --- the author's own words --------------------------------------------------------------------


def test_html_only_mail() -> None:
    html = ("<html><head><style>p {color: red}</style></head><body>"
            "<div class=WordSection1><p class=MsoNormal>Dear team,<o:p></o:p></p>"
            "<p class=MsoNormal><o:p>&nbsp;</o:p></p>"
            "<p class=MsoNormal>Kindly remove me from the mailing list.<o:p></o:p></p>"
            "<p class=MsoNormal>Thanks &amp; regards,</p><p class=MsoNormal>A. Sharma</p>"
            "<p class=MsoNormal>CONFIDENTIALITY NOTICE: This email is confidential.</p>"
            "</div></body></html>")
    msg = mail(html=html, html_only=True)
    assert message_text(msg) == "Dear team,\n\nKindly remove me from the mailing list."
    assert understand(msg, LIST).commands[0].kind is Kind.UNSUBSCRIBE


def test_html_blockquote_is_quoted_history() -> None:
    html = ('<div dir="ltr">Sign me up please</div><br><div class="gmail_quote">'
            '<div class="gmail_attr">On Mon, Jan 6, 2025 at 9:00 AM Ann &lt;ann@x.example&gt; '
            'wrote:<br></div><blockquote class="gmail_quote">Please remove me from the list'
            '</blockquote></div><div class="gmail_signature">Jo<br>jo@sig.example</div>')
    assert html_to_text(html).splitlines()[0] == "Sign me up please"
    assert "> Please remove me from the list" in html_to_text(html)
    msg = mail(html=html, html_only=True)
    assert message_text(msg) == "Sign me up please"
    assert understand(msg, LIST).commands[0].kind is Kind.SUBSCRIBE


def test_plain_part_preferred() -> None:
    msg = mail("unsubscribe", html="<p>help</p>")
    assert message_text(msg) == "unsubscribe"


@pytest.mark.parametrize("history", [
    "On Mon, Nov 18, 2024 at 1:30 PM Ann Example <ann@x.example> wrote:\n\n> Please subscribe me",
    "On Mon, Nov 18, 2024 at 1:30 PM Ann Example\n<ann@x.example> wrote:\n> Please subscribe me",
    "El lun, 27 ene 2025 a las 16:44, Ann (<ann@x.example>) escribió:\n> Please subscribe me",
    "Le lun. 18 nov. 2024 à 19:30, Ann <ann@x.example> a écrit :\n> Please subscribe me",
    "Am Mo., 18. Nov. 2024 um 19:30 Uhr schrieb Ann <ann@x.example>:\n> Please subscribe me",
    "Em seg., 18 de nov. de 2024 às 15:30, Ann <ann@x.example> escreveu:\n> Please subscribe me",
    "________________________________\nFrom: Ann <ann@x.example>\nSent: Tuesday, 1 April 2025\n"
    "To: SHMA <shma@lists.example.org>\nSubject: hello\n\nPlease subscribe me",
    "De : Ann <ann@x.example>\nEnvoyé : lundi 3 février 2025 14:10\nÀ : SHMA\nObjet : x\n\n"
    "Please subscribe me",
    "-----Original Message-----\nFrom: Ann\nPlease subscribe me",
    "-----Mensaje original-----\nPlease subscribe me",
    "-----Ursprüngliche Nachricht-----\nVon: Ann\nPlease subscribe me",
    "---------- Forwarded message ---------\nFrom: Ann\nPlease subscribe me",
])
def test_quoted_history_is_removed(history: str) -> None:
    msg = mail("Please unsubscribe me.\n\n" + history)
    assert message_text(msg) == "Please unsubscribe me."
    assert understand(msg, LIST).commands[0].kind is Kind.UNSUBSCRIBE


def test_bottom_posted_reply_keeps_the_authors_words() -> None:
    body = ("On Mon, Nov 18, 2024 at 1:30 PM Ann <ann@x.example> wrote:\n> Any news?\n\n"
            "Please remove me from the list.")
    assert message_text(mail(body)) == "Please remove me from the list."


@pytest.mark.parametrize("footer", [
    "Sent from my iPhone", "Enviado desde mi Android", "Envoyé de mon iPhone",
    "Von meinem iPhone gesendet", "Enviado do meu iPhone", "Get Outlook for Android",
    "Obtener Outlook para iOS", "Outlook für Android herunterladen",
    "Obter o Outlook para Android",
])
def test_mobile_footers_are_removed(footer: str) -> None:
    assert message_text(mail(f"unsubscribe\n\n{footer}")) == "unsubscribe"


def test_closing_words_inside_the_text_are_kept() -> None:
    body = ("Here is my summary.\nBest practice is to ask the group first.\n"
            "Thanks to all of you who replied.")
    assert message_text(mail(body)) == body


def test_signatures_closings_and_disclaimers_are_removed() -> None:
    body = ("Please add me to the list.\n\nKind regards,\nDr Jo Bloggs\nSchool of Health\n\n"
            "This email and any attachments are confidential and intended solely for ...")
    assert message_text(mail(body)) == "Please add me to the list."
    body = "Hola, alta por favor.\n\nUn saludo,\nPau\n\nAVISO LEGAL: Este mensaje es confidencial."
    assert message_text(mail(body)) == "Hola, alta por favor."


@pytest.mark.parametrize("ps", ["PS: I'm not on the list yet, could you add me?",
                                "P.-S. : pourriez-vous m'ajouter à la liste ?",
                                "P.S. Könnt ihr mich in den Verteiler aufnehmen?"])
def test_a_postscript_below_the_closing_is_the_authors(ps: str) -> None:
    body = f"Here is my question about the study.\n\nBest wishes,\nFatou\n\n{ps}\n\n--\nDakar"
    assert message_text(mail(body)) == f"Here is my question about the study.\n\n{ps}"
    # a signature line below a postscript stays cut
    body = f"Thanks!\n\nBest,\nFatou\n\n{ps}\nSent from my iPhone"
    assert message_text(mail(body)) == f"Thanks!\n\n{ps}"


def test_a_letter_below_an_out_of_office_note_and_a_line_is_the_authors() -> None:
    # the line ends the note, not the letter: a greeting opens the letter, alone on its line or
    # at the start of it
    note = ("Me encuentro fuera de la oficina hasta el lunes.\n\n________________________________"
            "\n\n")
    body = note + "Buenas tardes, les pido que me retiren de la lista.\n\nSaludos,\nFernando"
    assert message_text(mail(body)).endswith("les pido que me retiren de la lista.")
    body = note + "Hola Carol,\n\nles pido que me retiren de la lista."
    assert message_text(mail(body)).endswith("les pido que me retiren de la lista.")
    # ... and so does a letter that opens with no greeting, below a note that says it is one
    body = ("Ich bin bis 25.04. nicht im Hause. In dringenden Fällen wenden Sie sich an das "
            "Sekretariat.\n\n__________\n\nSorry, der Text oben ist aus Versehen mit "
            "reingerutscht. Bitte nehmen Sie mich aus dem Verteiler.\n\nS. Kuhn")
    assert "Bitte nehmen Sie mich aus dem Verteiler." in message_text(mail(body))
    # a signature below a line stays cut, below a post that says its author will be away too
    body = "Please add me to the list.\n\n________________________________\nDr Jo Bloggs, PhD"
    assert message_text(mail(body)) == "Please add me to the list."
    body = ("I will be on leave in May, so please send the minutes to Sam.\n\n--\n"
            "Dr Jo Bloggs, PhD\nSchool of Health, University of Example")
    assert message_text(mail(body)).endswith("to Sam.")


# --- the administrivia guard ---------------------------------------------------------------------


@pytest.mark.parametrize(("body", "kind"), [
    ("Please remove me from this list. Thank you.", Kind.UNSUBSCRIBE),
    ("please add me to the listserv", Kind.SUBSCRIBE),
    ("UNSUBSCRIBE", Kind.UNSUBSCRIBE),
    ("SIGNOFF SHMA", Kind.UNSUBSCRIBE),
    ("Könnten Sie mich bitte aus dem Verteiler nehmen?", Kind.UNSUBSCRIBE),
    ("What is this list about, and who runs it?", Kind.INFO),
])
def test_guard_requests(body: str, kind: Kind) -> None:
    decision, command = on_list(body)
    assert decision is Guard.REQUEST
    assert command is not None and command.kind is kind


def test_guard_request_above_quoted_post() -> None:
    body = ("Please unsubscribe me\n\nOn Mon, Nov 18, 2024 at 1:30 PM Marcus <m@x.example> "
            "wrote:\n> Reminder: webinar tomorrow at noon.\n> Marcus")
    assert on_list(body, "Re: [shma] Webinar tomorrow")[0] is Guard.REQUEST


@pytest.mark.parametrize("body", [
    "Naomi - please add me as a discussant if you're still looking!",
    "Honestly, please remove me from the author list - I'd rather be in the acknowledgements.",
    "Off topic: how do I unsubscribe from the SCRA newsletter? I want to stay on this list.",
    "Please don't remove me! My address was bouncing for a week but it is fixed now.",
    "Could you add me to the panel? I'd like to present our findings.",
    "Sign me up for the symposium! Is there a fee?",
    "Bitte fügt mich zur AG hinzu, das Thema interessiert mich sehr.",
    "Leider muss ich mich von der Tagung am 12. Juni wieder abmelden.",
    "¿Me pueden agregar al panel sobre apoyo entre iguales?",
    "Merci de me retirer de la liste des auteurs, ma contribution est trop limitée.",
    "Podem me adicionar como debatedor na mesa-redonda?",
    "We subscribe to the view that these are different things.",
    "If you want to unsubscribe, send a message to shma-request.",
    "Thanks for adding me to the list, everyone - glad to be here!",
    "Help! Does anyone have a copy of the 1998 clearinghouse report?",
    # everyday sentences that share words with delivery requests
    "Things will go back to normal after the holidays.",
    "Just a note: we've moved the meeting to a regular slot on Thursdays.",
    "If you're going away, set your subscription to nomail.",
    "We will temporarily pause the meetings over the summer.",
    "I no longer want to get involved in that debate, sorry.",
    "Ich habe die Unterlagen nicht mehr bekommen. Hat sie jemand?",
    "Wir lassen das Projekt bis Herbst ruhen.",
    "Vamos pausar o projeto até setembro.",
    "Le projet est en pause jusqu'en mai.",
    "Je vais passer au résumé des discussions de la semaine.",
    "Voy a pasar al resumen del debate de ayer.",
    "Ya no quiero recibir críticas por el informe, gracias.",
])
def test_guard_discussion_posts(body: str) -> None:
    for subject in ("Re: [shma] symposium planning", "A question"):
        assert on_list(body, subject)[0] is Guard.POST, subject


def test_guard_keyword_led_discussion() -> None:
    body = ("Help\n\nDoes anyone know a validated scale for perceived reciprocity in peer "
            "relationships? The Social Provisions Scale subscale is too generic for us.")
    assert on_list(body)[0] is Guard.POST
    assert on_list("help")[0] is Guard.REQUEST


def test_guard_topic_in_subject() -> None:
    body = ("I'm happy to share our new paper on exit, lurking and return in online peer "
            "support communities. Open access link below.")
    decision, _ = on_list(body, "New paper: Unsubscribe culture in online support groups")
    assert decision is Guard.POST


def test_guard_request_words_only_in_quoted_text() -> None:
    body = ("Welcome, Isabel! Great to have you here.\n\n"
            "On Sat, Mar 8, 2025 at 5:20 PM Isabel <i@x.example> wrote:\n"
            "> please add me to the list")
    assert on_list(body, "Re: please add me")[0] is Guard.POST


def test_guard_long_post_with_a_request_is_held_unless_the_reader_is_as_sure() -> None:
    body = ("Please remove me from this list. " + "I have many thoughts about peer support "
            "and mutual aid that I want to share with all of you at some length. " * 8)
    decision, command = on_list(body, reader=RULES_ONLY)
    assert decision is Guard.UNSURE
    assert command is not None and command.kind is Kind.UNSUBSCRIBE
    decision, command = on_list(body)
    assert decision is Guard.REQUEST
    assert command is not None and command.kind is Kind.UNSUBSCRIBE


def test_guard_bare_phrase() -> None:
    # "sign me up!" replying to a thread is about the thread; a bare one is held by the rules,
    # and acted on (its sender asked to confirm) when the reader is as sure it is a join
    assert on_list("Sign me up! I can do Thursday.", "Re: Volunteers for the desk")[0] \
        is Guard.POST
    assert on_list("can I join?", "Joining SHMA", reader=RULES_ONLY)[0] is Guard.UNSURE
    assert on_list("can I join?", "Joining SHMA")[0] is Guard.REQUEST


INTRODUCTION = (
    "Hello everyone, my name is Ines and I am a lecturer in community psychology in Porto. For "
    "the last six years I have studied peer support groups for family carers of people living "
    "with dementia, most recently the informal groups that grow around day centres and parish "
    "halls. A colleague told me about your quarterly calls and the column you write together, "
    "and I read the last three pieces with great interest. ")


def sure_of(kind: Kind) -> Model:
    """A reader sure of `kind`, whatever the mail says."""
    return Model(CLASSES, tuple(10.0 if c == kind.value else 0.0 for c in CLASSES), {})


@pytest.mark.parametrize(("ending", "kind"), [
    ("I would love to join and learn from you all.", Kind.SUBSCRIBE),
    ("It is time for me to step away, so please take me off.", Kind.UNSUBSCRIBE),
])
def test_guard_long_post_ending_in_a_join_or_leave(ending: str, kind: Kind) -> None:
    # past GUARD_MAX_WORDS the rules distribute a join or leave that names no list; when the
    # reader is sure of it too (LONG_REQUEST_CONFIDENCE) its sender is asked to confirm
    body = INTRODUCTION + ending
    assert word_count(body) > GUARD_MAX_WORDS
    assert on_list(body, "Hello from Porto", reader=RULES_ONLY)[0] is Guard.POST
    decision, command = on_list(body, "Hello from Porto", reader=sure_of(kind))
    assert decision is Guard.REQUEST
    assert command is not None and command.kind is kind


def test_guard_long_post_joining_something_else_stays_a_post() -> None:
    workshop = INTRODUCTION + "I would love to join the workshop in May and learn from you all."
    assert on_list(workshop, "Hello from Porto", reader=sure_of(Kind.SUBSCRIBE))[0] is Guard.POST


def test_guard_automatic_reply() -> None:
    msg = mail("I am on parental leave until September.", "Automatic reply: [shma] hello",
               to=POST)
    assert guard(msg, LIST)[0] is Guard.POST


def test_guard_bare_ok_is_a_post() -> None:
    assert on_list("OK", "Re: dinner on Thursday?")[0] is Guard.POST


# --- language ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "lang"), [
    ("Please take me off the list, thanks", "en"),
    ("Hola, por favor darme de baja de la lista. Gracias", "es"),
    ("Bonjour, merci de me désinscrire de la liste.", "fr"),
    ("Hallo, bitte tragt mich aus der Liste aus. Danke", "de"),
    ("Oi, por favor me tirem da lista. Obrigada", "pt"),
    ("nao quero mais receber emails dessa lista", "pt"),
    ("me gustaria suscribirme a la lista", "es"),
    ("", "en"),
    ("12345 ???", "en"),
])
def test_detect_language(text: str, lang: str) -> None:
    assert detect_language(text) == lang


def test_language_of_a_request_comes_from_the_footer_when_the_body_is_bare() -> None:
    u = understand(mail("Enviado do meu iPhone", "", to="shma-join@lists.example.org"), LIST)
    assert u.lang == "pt"
    assert understand(mail("subscribe"), LIST).lang == "en"


def test_reply_language_follows_the_author_not_the_quote() -> None:
    body = ("Quiero desuscribirme de esta lista, ¿cómo hago?\n\n"
            "On Mon, Jan 27, 2025 at 4:44 PM Marcus <m@x.example> wrote:\n"
            "> Dear all, we are hiring a postdoc. Details at the link below.")
    assert understand(mail(body), LIST).lang == "es"


# --- phrase files ----------------------------------------------------------------------------


def test_phrase_files_load() -> None:
    phrases = load_phrases()
    assert list(phrases)[0] == "en"
    assert set(phrases) >= {"en", "es", "fr", "de", "pt"}
    for ph in phrases.values():
        assert ph.words and ph.groups["subscribe"] and ph.groups["unsubscribe"]
        assert ph.reply_header is not None and ph.mobile is not None


def test_a_chair_can_add_a_language(tmp_path: Path) -> None:
    src = Path(__file__).parents[1] / "listserv" / "phrases"
    for p in src.glob("*.toml"):
        (tmp_path / p.name).write_text(p.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "it.toml").write_text(
        'name = "Italiano"\n[detect]\nwords = ["il", "della", "grazie", "vorrei", "iscrivermi"]\n'
        "[request]\nsubscribe = ['\\bvorrei iscrivermi\\b']\n", encoding="utf-8")
    phrases = load_phrases(tmp_path)
    assert "it" in phrases
    assert phrases["it"].groups["subscribe"][0].search("Vorrei iscrivermi alla lista")


def test_unreadable_charset_does_not_crash() -> None:
    raw = (b"From: a@b.example\r\nTo: shma-request@lists.example.org\r\nSubject: x\r\n"
           b"Content-Type: text/plain; charset=x-unknown-charset\r\n\r\nunsubscribe\r\n")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert understand(msg, LIST).commands[0].kind is Kind.UNSUBSCRIBE


INVITATION = ("\n\nOn Tue, 3 Mar 2026 at 14:02, Carol Hendry <carol@example.org> wrote:\n"
              "> It was lovely to meet you in Leeds. Our group has an email list where we share\n"
              "> papers and calls. If you'd like to join, just email and ask to be added.\n")


@pytest.mark.parametrize("yes", ["Yes please, count me in!", "Ja, sehr gerne, ich bin dabei.",
                                 "Oui, avec plaisir !", "Sí, encantada. Gracias por todo.",
                                 "Sim, com todo o gosto."])
def test_a_yes_to_a_quoted_invitation_is_a_join(yes: str) -> None:
    body = f"Dear Carol,\n\n{yes}\n\nBest,\nTom" + INVITATION
    assert understand(mail(body, "Re: Invitation"), LIST,
                      reader=RULES_ONLY).commands[0].kind is Kind.SUBSCRIBE
    decision, command = on_list(body, "Re: Invitation", reader=RULES_ONLY)
    assert decision is Guard.REQUEST
    assert command is not None and command.kind is Kind.SUBSCRIBE


def test_a_yes_without_an_invitation_or_to_list_mail_is_no_join() -> None:
    assert on_list("Yes please, count me in!\n\n> Who is free on Thursday?\n",
                   "Re: Thursday", reader=RULES_ONLY)[0] is Guard.POST
    # a reply to the list's own mail is discussion, whatever it quotes
    assert on_list("Yes please, count me in!" + INVITATION, "Re: [shma] Invitation",
                   reader=RULES_ONLY)[0] is Guard.POST
    # a yes to joining a working group is no join of the list
    panel = ("\n\nCarol wrote:\n> Would you like to join the working group on peer metrics? It "
             "meets monthly.\n> The list will hear about it later.\n")
    assert on_list("Yes please, count me in!" + panel, "Re: working group",
                   reader=RULES_ONLY)[0] is Guard.POST
