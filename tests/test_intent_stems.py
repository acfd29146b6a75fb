"""Requests read from word stems (listserv/intent/stems.py, issue 21): everyday phrasings of
joining and leaving that no phrase file spells out, in all five languages.

These development examples were written for the stem reader; they are neither the old corpus
(tests/data/requests) nor the fresh one (tests/data/requests-fresh), which are scored
separately. A join or leave to -request must be read as such; on the list address the guard
must route a short request that names the list, and every post must stay a post.
"""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest

from listserv.intent.freetext import free_text
from listserv.intent.guard import Guard, guard
from listserv.intent.lexicon import stems
from listserv.intent.model import features
from listserv.intent.request import understand

from .helpers import RULES_ONLY

LIST = "shma"

JOINS = {
    "en": [
        "Would it be possible to be added to the mailing list? My colleague forwarded me a post.",
        "I'd love to be included in the group's emails.",
        "Hello, I recently started my PhD on peer support and would be grateful to be included.",
        "Could you put me on the distribution list, please?",
        "I was wondering whether I could join the listserv.",
        "Please enrol me on the list.",
        "Can I become a member of this list?",
        "I would like to be part of the mailing list.",
        "Hi there, my supervisor suggested I sign up for this list. Thanks!",
        "Please include jamie.ng@uni.example.org in your list.",
        # an imperative after a vocative and a reply, with the sender as its object
        "Carol, aye that'd be grand, put me down for it.",
    ],
    "es": [
        "Quisiera formar parte de la lista de correo.",
        "¿Sería posible que me incluyan en la lista de distribución?",
        "Me encantaría sumarme al grupo.",
        "Por favor, agréguenme a la lista.",
        "Les escribo para pedir que me añadan a la lista de correos.",
        "Me gustaría estar en la lista, gracias.",
        "¿Me podrían inscribir en la lista?",
    ],
    "fr": [
        "Pourriez-vous m'ajouter à la liste de diffusion ?",
        "J'aimerais faire partie de la liste.",
        "Je souhaiterais être inscrite sur votre liste de diffusion.",
        "Serait-il possible de m'intégrer au groupe ?",
        "Merci de bien vouloir m'inscrire à la liste.",
        "Je voudrais rejoindre la liste de diffusion.",
    ],
    "de": [
        "Könnten Sie mich bitte in den Verteiler aufnehmen?",
        "Ich würde gerne in die Mailingliste eingetragen werden.",
        "Bitte nehmt mich in den E-Mail-Verteiler auf.",
        "Ich möchte gern Mitglied der Liste werden.",
        "Hiermit melde ich mich für die Liste an.",
        "Ich möchte der Liste beitreten.",
        "Können Sie mich bitte zum Verteiler hinzufügen?",
    ],
    "pt": [
        "Gostaria de fazer parte da lista de e-mails.",
        "Poderiam me incluir na lista de distribuição?",
        "Por favor, adicionem-me à lista.",
        "Seria possível me cadastrar na lista?",
        "Gostaria de ser incluída na lista de discussão.",
        "Quero entrar na lista, por favor.",
    ],
}

LEAVES = {
    "en": [
        "I have retired and would be grateful if you could take me off the list.",
        "Please remove my address from your distribution list.",
        "I no longer wish to receive emails from this group.",
        "Time for me to leave the list - please unsubscribe me.",
        "Could you please delete me from the listserv?",
        "I'd like to opt out of these emails.",
        "Please stop sending me messages from the list.",
        "I don't want to be on this list anymore.",
    ],
    "es": [
        "Por favor, quítenme de la lista de distribución.",
        "Ya no quiero recibir correos de esta lista.",
        "Quisiera salir de la lista, gracias.",
        "¿Me podrían sacar del grupo?",
        "Les pido que me eliminen de la lista de correo.",
        "No deseo seguir recibiendo mensajes.",
    ],
    "fr": [
        "Merci de me retirer de la liste de diffusion.",
        "Je ne souhaite plus recevoir les messages de la liste.",
        "Pourriez-vous me désinscrire ?",
        "Je voudrais quitter la liste.",
        "Veuillez supprimer mon adresse de votre liste.",
        "Je ne veux plus faire partie de la liste.",
    ],
    "de": [
        "Bitte nehmen Sie mich aus dem Verteiler.",
        "Ich möchte keine E-Mails mehr von der Liste bekommen.",
        "Könnten Sie mich bitte von der Mailingliste entfernen?",
        "Bitte tragt mich aus der Liste aus.",
        "Ich möchte mich von der Liste abmelden.",
        "Bitte löschen Sie meine Adresse aus dem Verteiler.",
    ],
    "pt": [
        "Por favor, me retirem da lista.",
        "Não quero mais receber os e-mails da lista.",
        "Gostaria de sair da lista de e-mails.",
        "Poderiam remover meu endereço da lista?",
        "Quero deixar de receber as mensagens, obrigada.",
        "Peço que me excluam da lista de distribuição.",
    ],
}

POSTS = {
    "en": [
        "Please don't remove me from the list when I move institutions next month - "
        "my new address will forward. Meanwhile, here is the reading list we discussed.",
        "Join us for the online launch of the report on Thursday. All welcome!",
        "Could you add me to the panel on peer-run crisis services?",
        "Thanks for adding me to the list last year, it has been so useful for my thesis.",
        'The poster said "please remove me from your mailing list" in big letters, which '
        "I thought was a funny choice for a conference about outreach.",
        "How do I unsubscribe from the other newsletter? It keeps arriving twice.",
        "I want to add that the list has been a lifeline for our members during the winter.",
        # "kindly" after "has" reports another's kindness
        "Carol has very kindly already switched my list subscription over to the new address, "
        "so no action needed there.",
    ],
    "es": [
        "¿Me pueden agregar al panel del congreso?",
        "Gracias por incluirme en la lista el año pasado, me ha servido mucho.",
    ],
    "fr": [
        "Merci de m'avoir ajoutée à la liste, je suis ravie de vous lire.",
        "Pourriez-vous m'ajouter au panel du colloque ?",
    ],
    "de": [
        "Danke, dass ihr mich in die Liste aufgenommen habt!",
        "Bitte nehmt mich in die Arbeitsgruppe auf, ich helfe gern.",
    ],
    "pt": [
        "Obrigada por me incluir na lista, tem sido muito útil.",
        "Podem me adicionar como debatedora na mesa-redonda?",
        # the preterite tells what was done
        "Eu entrei em 2023 do jeito mais simples: mandei um e-mail e a Carol me incluiu na "
        "lista no mesmo dia.",
    ],
}


#: More examples, one a line: want|to|text (tests/data/understanding-dev/cases.txt).
CASES = [tuple(line.split("|", 2)) for line in
         (Path(__file__).parent / "data" / "understanding-dev" / "cases.txt")
         .read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")]


def _mail(body: str, to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "someone@uni.example.org"
    msg["To"] = f"{to}@lists.example.org"
    msg["Subject"] = "Hello"
    msg.set_content(body + "\n\nSam\n")
    return msg


def _cases(table: dict[str, list[str]]) -> list[tuple[str, str]]:
    return [(lang, text) for lang, texts in table.items() for text in texts]


@pytest.mark.parametrize(("lang", "text"), _cases(JOINS))
def test_joins_are_read(lang: str, text: str) -> None:
    assert understand(_mail(text, "shma-request"), LIST).commands[0].kind == "subscribe"


@pytest.mark.parametrize(("lang", "text"), _cases(LEAVES))
def test_leaves_are_read(lang: str, text: str) -> None:
    assert understand(_mail(text, "shma-request"), LIST).commands[0].kind == "unsubscribe"


@pytest.mark.parametrize(("lang", "text"),
                         [c for c in _cases(JOINS) + _cases(LEAVES) if "list" in c[1].lower()
                          or "verteiler" in c[1].lower()])
def test_a_request_naming_the_list_on_the_list_address_is_a_request(lang: str, text: str
                                                                   ) -> None:
    decision, u = guard(_mail(text, "shma"), LIST)
    assert decision is Guard.REQUEST
    assert u.commands[0].kind in ("subscribe", "unsubscribe")


@pytest.mark.parametrize(("lang", "text"), _cases(POSTS))
def test_posts_stay_posts(lang: str, text: str) -> None:
    assert guard(_mail(text, "shma"), LIST)[0] is Guard.POST


@pytest.mark.parametrize(("want", "to", "text"), CASES)
def test_development_cases(want: str, to: str, text: str) -> None:
    if to == "post":
        decision, u = guard(_mail(text, "shma"), LIST)
        got = u.commands[0].kind.value if decision is Guard.REQUEST else decision.value
    else:
        got = understand(_mail(text, "shma-request"), LIST).commands[0].kind.value
    assert got == want


def test_one_stem_covers_the_inflections() -> None:
    assert stems("included", "english") == stems("include", "english") == stems("including",
                                                                                "english")
    assert stems("retirée", "french") & stems("retirer", "french")
    assert stems("Mailinglisten", "german") == stems("Mailingliste", "german")
    assert stems("incluída", "portuguese") & stems("incluir", "portuguese")


def _rules(text: str, lang: str, *, to_request: bool = True, subject: str = "") -> str | None:
    """What the rules alone read in `text`: the request's kind, or None."""
    command = free_text(text, subject, False, LIST, lang, to_request=to_request).command
    return command.kind.value if command else None


def test_a_sentence_opening_with_a_condition_supposes_and_asks_nothing() -> None:
    assert _rules("Si algún día vuelvo a tener tiempo, les escribo de nuevo y me vuelvo a "
                  "apuntar.", "es") is None
    assert _rules("If I ever have the time again, I will write and sign up again.", "en") is None
    # a yes is no condition; a courtesy formula or a plea still asks
    assert _rules("Sí, claro que me quiero sumar, anotame cuando puedas.", "es") == "subscribe"
    assert _rules("If possible, I would like to join the list.", "en") == "subscribe"
    assert _rules("If you can, please add me to the list.", "en") == "subscribe"


def test_on_the_request_address_a_join_in_the_body_outweighs_an_info_subject() -> None:
    text = "Buenas tardes, ¿cómo le hago para que me agreguen? Muchas gracias"
    assert _rules(text, "es", subject="Info") == "subscribe"
    assert _rules(text, "es", subject="Info", to_request=False) == "info"


def test_a_short_form_of_group_names_the_list() -> None:
    decision, u = guard(_mail("hi pls add me to the grp, thx", "shma"), LIST)
    assert decision is Guard.REQUEST and u.commands[0].kind == "subscribe"


def test_the_reader_sees_what_the_quoted_history_offers() -> None:
    reading = free_text("Yes please, put me down for it.", "", True, LIST, "en")
    invited = features(reading, "en", on_list=False, is_reply=True, words=7,
                       quoted="On Tue, Carol wrote:\n> If you'd like to be added to the mailing "
                              "list, just reply.\n")
    assert {"q:join", "q:list_words"} <= set(invited)
    assert not any(f.startswith("q:") for f in features(
        reading, "en", on_list=False, is_reply=True, words=7, quoted="> See you on Tuesday."))


@pytest.mark.parametrize(("lang", "text", "address"), [
    ("en", "Her mailbox, sarah@trust.example.org, now comes to me. Could you take her address "
           "off?", "sarah@trust.example.org"),
    ("es", "Su correo (mrios@uni.example.org) ya no existe. ¿Podrían quitar esa dirección?",
     "mrios@uni.example.org"),
    ("de", "Ihr Postfach x.y@uni.example.de wird nicht mehr gelesen. Könnten Sie ihre Adresse "
           "bitte austragen?", "x.y@uni.example.de"),
    ("pt", "O email dela (ana@uni.example.org) foi desativado. Podem remover esse endereço da "
           "lista?", "ana@uni.example.org"),
])
def test_a_leave_of_an_address_named_before_is_about_that_address(lang: str, text: str,
                                                                  address: str) -> None:
    command = free_text(text, "", False, LIST, lang, to_request=True).command
    assert command is not None and command.kind == "unsubscribe"
    assert command.address == address


def test_a_join_worded_as_a_hope_is_read() -> None:
    assert _rules("Ich würde mich wirklich freuen, wenn ich auch dabei sein und mitlesen "
                  "dürfte.", "de") == "subscribe"


def test_an_address_alone_after_the_request_is_the_one_it_is_about() -> None:
    text = ("Könnten Sie mich bitte mit meiner neuen Geschäftsadresse in die Liste aufnehmen?\n\n"
            "martina.keller@pd.example.ch\n\nDie alte Adresse dürfen Sie dann entfernen.")
    command = free_text(text, "", False, LIST, "de", to_request=True).command
    assert command is not None and command.kind == "subscribe"
    assert command.address == "martina.keller@pd.example.ch"


def test_a_join_the_reader_is_sure_of_outweighs_a_leave_the_rules_read_in_a_supposition() -> None:
    text = ("Hallo zusammen, ich bin bisher mit meiner privaten Adresse auf der Liste. Seit März "
            "arbeite ich in der Beratungsstelle und würde die Rundmails gern auch dort lesen.\n\n"
            "Bitte nehmen Sie zusätzlich meine neue Adresse auf:\n\n"
            "    j.vogt@beratung.example.de\n\n"
            "Die private Adresse kann vorerst bleiben, ich melde mich, falls ich sie später "
            "löschen möchte.")
    assert understand(_mail(text, "shma-request"), LIST,
                      reader=RULES_ONLY).commands[0].kind == "unsubscribe"
    command = understand(_mail(text, "shma-request"), LIST).commands[0]
    assert command.kind == "subscribe"
    assert command.address == "j.vogt@beratung.example.de"
    assert command.line.startswith("Hallo zusammen")


@pytest.mark.parametrize("text", [
    "Me interesa mucho el taller de junio. ¿Me podrían agregar a la lista de inscritos?",
    "Me gustaría sumarme al capítulo, ¿me pueden incluir en la lista de coautores?",
])
def test_joining_another_list_or_a_chapter_is_a_post(text: str) -> None:
    assert guard(_mail(text, "shma"), LIST)[0] is Guard.POST


@pytest.mark.parametrize(("lang", "text", "address"), [
    # the colleague as the verb's clitic ("añadirlo") or its pronoun ("l'ajouter")
    ("es", "Mi compañero Andrés facilita grupos de duelo. ¿Podrías añadirlo a la lista? Su "
           "correo es andres@red.example.net.", "andres@red.example.net"),
    ("fr", "J'aimerais recevoir la liste sur ma nouvelle adresse : l.roux@fond.example.org. "
           "Vous pouvez l'ajouter ?", "l.roux@fond.example.org"),
    ("en", "Could you add him to the mailing list? His university address is "
           "t.r@uni.example.ac.uk.",
     "t.r@uni.example.ac.uk"),
    ("pt", "A minha colega ainda não está na lista. Você poderia adicioná-la? O e-mail é "
           "renata@caps.example.br", "renata@caps.example.br"),
])
def test_a_join_of_a_colleague_is_about_the_address_given_after_it(lang: str, text: str,
                                                                   address: str) -> None:
    command = free_text(text, "", False, LIST, lang, to_request=True).command
    assert command is not None and command.kind == "subscribe"
    assert command.address == address


def test_a_stem_join_the_reader_is_sure_is_none_goes_to_the_chair() -> None:
    text = ("Hello, I've been on the list for a year and enjoy it, nothing to change there. My "
            "question is about the newsletter that carries the group's column: it comes from a "
            "different organisation, and I'd like to receive the whole thing rather than the "
            "column alone. Do you know whom I should contact?")
    assert understand(_mail(text, "shma-request"), LIST,
                      reader=RULES_ONLY).commands[0].kind == "subscribe"
    assert understand(_mail(text, "shma-request"), LIST).commands[0].kind == "unclear"


@pytest.mark.parametrize(("lang", "text", "want"), [
    # a common misspelling of "recibir" is still getting the list's mail
    ("es", "ya no quiero recivir los correos de la lista, gracias", "unsubscribe"),
    # "as well" says nothing of where to
    ("en", "I'm not on the list myself yet. Could I be added as well?", "subscribe"),
    ("en", "Could I be added as a speaker?", None),
    # "m'y joindre" joins it; "me joindre" alone is reaching someone
    ("fr", "Je ne fais pas encore partie de la liste : puis-je m'y joindre ?", "subscribe"),
    ("fr", "Vous pouvez me joindre au 06 12 34 56 78.", None),
    # "le plus simple est que": a wish, and its "plus" negates nothing
    ("fr", "Le plus simple est que vous me retiriez de la liste.", "unsubscribe"),
    # asking now ("estou ... pedindo") is no account of how it is done
    ("pt", "Estou escrevendo e pedindo pra ser incluído na lista.", "subscribe"),
    ("pt", "Basta mandar um e-mail pedindo para ser incluída na lista.", None),
    # "schon jetzt" is right away, "schon" alone already
    ("de", "Bitte tragt mich schon jetzt aus dem Verteiler aus.", "unsubscribe"),
    ("de", "Ich bin schon in der Liste eingetragen.", None),
])
def test_everyday_wordings_read_by_the_rules(lang: str, text: str, want: str | None) -> None:
    assert _rules(text, lang) == want


@pytest.mark.parametrize(("lang", "note"), [
    ("en", "I am out of the office until 3 May. For urgent matters please contact "
           "desk@uni.example.org."),
    ("de", "Ich bin bis 3. Mai nicht im Haus. Bitte wenden Sie sich an desk@uni.example.org."),
    ("fr", "Je suis absente jusqu'au 3 mai. Pour toute urgence : desk@uni.example.org."),
])
def test_the_contact_in_an_out_of_office_note_above_a_leave_is_not_its_address(
        lang: str, note: str) -> None:
    greeting, leave = {"en": ("Hello Carol,", "Please remove me from the list."),
                       "de": ("Hallo Carol,", "Bitte nehmt mich von der Liste."),
                       "fr": ("Bonjour Carol,", "Merci de me retirer de la liste.")}[lang]
    for text in (f"{note}\n\n{leave}", f"{note}\n\n--\n\n{greeting}\n\n{leave}"):
        command = understand(_mail(text, "shma-request"), LIST).commands[0]
        assert command.kind == "unsubscribe"
        assert command.address is None
    # a colleague's address given plainly is still the one the request is about
    command = understand(_mail("Please add my colleague bob@uni.example.org to the list.",
                               "shma-request"), LIST).commands[0]
    assert command.address == "bob@uni.example.org"


def test_a_german_verb_capitalised_inside_a_sentence_is_a_noun() -> None:
    # "Mitlesenden" (those who read along) has the stem of "mitlesen" (join)
    assert _rules("Mich interessiert, ob es Untersuchungen zu stillen Mitlesenden gibt.",
                  "de") is None
    assert _rules("Ich hatte Probleme beim Anmelden.", "de") is None
    assert _rules("Ich würde gern mitlesen.", "de") == "subscribe"
    assert _rules("Anmelden möchte ich mich für die Liste.", "de") == "subscribe"
