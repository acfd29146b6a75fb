"""A yes to an invitation to join: "Yes please, count me in!" above the chair's quoted "If
you'd like to join the list, just email shma-request@... and ask to be added".

The chair invites people she meets by a personal mail; many answer it with a yes and no verb
of joining at all ("Ja, sehr gerne, ich bin dabei", "Sim, com todo o gosto"), to -request as
she asked or to the list. Neither reader sees a request in the yes alone; with the invitation
quoted below it, it is one.
"""

from __future__ import annotations

from listserv.intent.model import prepared_quote
from listserv.intent.phrases import languages
from listserv.intent.stems import sentence_words
from listserv.mail.text import fold, match_any

#: A yes is a short answer: the author's own text has at most this many words ...
ACCEPT_WORDS = 80
#: ... and says yes in its first this many characters (after the greeting and the thanks).
ACCEPT_CHARS = 300
#: How much of the quoted history is read for the invitation.
INVITATION_CHARS = 2_000

_JOINING = frozenset({"join", "join_alone"})
_LIST = frozenset({"list_words", "named"})


def accepts_invitation(own: str, words: int, quoted: str) -> bool:
    """Does the author's own text `own` (of `words` words, as the reader counts them) say yes,
    briefly, to an invitation to join a list quoted below it (`quoted`)? A yes in any
    language: a short one is easily misread."""
    if not quoted or words > ACCEPT_WORDS:
        return False
    if match_any(languages(), "accept", fold(own[:ACCEPT_CHARS])) is None:
        return False
    return _invited(quoted)


def _invited(quoted: str) -> bool:
    """Does the quoted history invite its reader to join a list: a sentence of joining, about
    no other object (a panel, a workshop), and a list named in it (any language: the chair
    writes in hers)?"""
    text, original, sentences = prepared_quote(quoted, INVITATION_CHARS)
    for ph in languages():
        if ph.lexicon is None:
            continue
        found = [sentence_words(ph.lexicon, text, original, s0, s1)[1] for s0, s1 in sentences]
        joining = any(classes & _JOINING and not (ph.other_object is not None
                                                  and ph.other_object.search(text[s0:s1]))
                      for (s0, s1), classes in zip(sentences, found, strict=True))
        if joining and any(classes & _LIST for classes in found):
            return True
    return False
