"""The statistical reader of joins and leaves (issue 21): shipped as trained, and what it adds.

The reader (`listserv.intent.model`) is trained by `tests/intent_training.py` on mails we wrote;
it speaks where the rules read nothing on -request, and overrules the administrivia guard on the
list address only when it is confident (docs/understanding.md).
"""

from __future__ import annotations

import email
import email.policy
import json
from collections.abc import Callable
from typing import Any

import pytest

from listserv.intent.guard import Guard, guard
from listserv.intent.model import CLASSES, Model, shipped
from listserv.intent.request import understand
from listserv.intent.understanding import Kind
from tests import intent_crossval, intent_training
from tests.intent_scoring import DATA, FRESH, Outcome, confusions, run

from .helpers import LIST, RULES_ONLY, make_message
from .test_membership import confirm_address, members, send, wait_mails

# The corpora are read once per run, whichever workers run these tests (`once_per_run`); a test
# that waits for another worker's reading (a minute or more on a loaded machine) may take longer
# than the default timeout.
pytestmark = pytest.mark.timeout(600)

REQUEST = "shma-request@lists.example.org"


def _message(to: str, subject: str, body: str) -> email.message.EmailMessage:
    msg = email.message_from_bytes(make_message(sender="tom@else.org", to=to, subject=subject,
                                                body=body), policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


@pytest.fixture(scope="session")
def examples(once_per_run: Callable[[str, Callable[[], Any]], Any]
             ) -> list[intent_training.Example]:
    return once_per_run("intent-examples", intent_training.examples)


def test_the_shipped_model_is_what_training_on_our_mails_makes(
        examples: list[intent_training.Example]) -> None:
    """model.json is reproducible from tests/data (``python -m tests.intent_training``)."""
    trained = Model.from_json(intent_training.train(examples).to_json())
    assert len(examples) >= 1500
    assert shipped().classes == trained.classes
    assert shipped().weights.keys() == trained.weights.keys()
    drift = max(abs(a - b) for f, w in trained.weights.items()
                for a, b in zip(w, shipped().weights[f], strict=True))
    assert drift <= 1e-3


def _is_hardest_wave(name: str) -> bool:
    return name.startswith("requests-train/") and "-e/" in name


def test_trained_without_the_hardest_wave_it_makes_fewer_mistakes_on_it_than_the_rules(
        examples: list[intent_training.Example]) -> None:
    """Held out: with a reader trained on everything but the training corpus's last wave
    (tests/data/requests-train/*-e: 400 mails written blind, mostly the hard cases), fewer
    mistakes on that wave than the rules alone make, and no join confused with a leave that
    the rules did not confuse already."""
    reader = intent_training.train([e for e in examples if not _is_hardest_wave(e.name)])
    root = DATA / "requests-train"

    def outcomes(reader: Model) -> list[Outcome]:
        return [run(root, path, lang=path[:2], to=meta["to"], want=meta["want"],
                    address=meta["address"], reader=reader)
                for manifest in sorted(root.glob("manifest-*-e.json"))
                for path, meta in sorted(json.loads(manifest.read_text("utf-8")).items())]

    def mistakes(read: list[Outcome]) -> int:
        return sum(not o.correct if o.is_request else not o.recognised_post for o in read)

    alone, together = outcomes(RULES_ONLY), outcomes(reader)
    assert len(alone) == 400
    print(f"\nhardest wave held out: rules alone {mistakes(alone)} mistakes of 400, "
          f"with the reader {mistakes(together)}")
    assert mistakes(together) < mistakes(alone)
    assert set(confusions(together)) <= set(confusions(alone))


def test_cross_validation_reads_each_mail_with_a_reader_trained_without_it(
        examples: list[intent_training.Example]) -> None:
    """`python -m tests.intent_crossval`, on the first fresh corpus in two parts: every mail is
    read once, by the reader of the other part."""
    found = [e for e in examples if e.name.startswith("requests-fresh/")]
    trained = intent_crossval.readers(found, folds=2)
    assert trained[0].weights != trained[1].weights
    read = intent_crossval.outcomes(trained, roots=[FRESH])
    assert sorted(read) == sorted(e.name for e in found)
    requests = [v for v in read.values() if v[0] != "post"]
    assert sum(v[3] for v in requests) >= 0.9 * len(requests)
    assert intent_crossval.summary(read).startswith("requests ")


UNREAD_BY_RULES = [
    ("Membership", "Hello, I came across your group at a conference and would be glad to get "
                   "your mailings from now on. Best, Tom"),
    ("", "Hola, me encantaría estar al tanto de lo que comparten en el grupo. Saludos, Tomás"),
    ("", "Bonjour, je souhaiterais recevoir vos envois désormais. Cordialement, Thomas"),
]


@pytest.mark.parametrize(("subject", "body"), UNREAD_BY_RULES)
def test_a_join_the_rules_cannot_read_is_read_by_the_model(subject: str, body: str) -> None:
    msg = _message(REQUEST, subject, body)
    assert understand(msg, LIST, reader=RULES_ONLY).commands[0].kind is Kind.UNCLEAR
    assert understand(msg, LIST).commands[0].kind is Kind.SUBSCRIBE


@pytest.mark.parametrize(("to", "subject", "body"), [
    (REQUEST, "Question about your group",
     "What time zone are you all in? I might visit Chicago next spring."),
    ("shma@lists.example.org", "", "Welcome to all the new members who joined this month!"),
    ("shma@lists.example.org", "Drive",
     "Can someone give me access to the shared drive? Thanks, Tom"),
])
def test_questions_and_posts_stay_what_they_are(to: str, subject: str, body: str) -> None:
    msg = _message(to, subject, body)
    if to == REQUEST:
        assert understand(msg, LIST).commands[0].kind is Kind.UNCLEAR
    else:
        assert guard(msg, LIST)[0] is Guard.POST


def test_commands_are_never_second_guessed() -> None:
    """A reader sure that everything is a post does not touch a command or a clear phrase."""
    sure_of_posts = Model(CLASSES, (-50.0, -50.0, 50.0), {})
    for to, body, kind in [(REQUEST, "subscribe", Kind.SUBSCRIBE),
                           (REQUEST, "Please remove me from this mailing list.",
                            Kind.UNSUBSCRIBE)]:
        assert understand(_message(to, "", body), LIST,
                          reader=sure_of_posts).commands[0].kind is kind
    verdict, understood = guard(_message("shma@lists.example.org", "", "unsubscribe"), LIST,
                                reader=sure_of_posts)
    assert (verdict, understood.commands[0].kind) == (Guard.REQUEST, Kind.UNSUBSCRIBE)


def test_a_join_only_the_model_reads_is_confirmed_by_its_sender_before_anything(
        cli, shma, daemon, sink) -> None:
    send(daemon, "tom@else.org", REQUEST, *UNREAD_BY_RULES[0])
    [confirmation] = wait_mails(sink, "tom@else.org", what="confirmation")
    assert "confirm" in str(confirmation["Subject"]).lower()
    assert "tom@else.org" not in members(cli)
    send(daemon, "tom@else.org", confirm_address(confirmation), "Re: confirm", "OK")
    wait_mails(sink, "tom@else.org", 2, "welcome")
    assert "tom@else.org" in members(cli)
    assert json.loads(cli("requests", "list", "--json").output) == []
