"""Word-level text helpers: whole-word matching, token lists that can be edited and joined back, similarity.

Every match in the planner is by whole word or whole phrase, so "background" never counts as "back" and
"Aldar" inside "aldar_kose_man" never counts as a mention of Aldar.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from services.planner.lexicon import STOPWORDS, word_set
from services.planner.verbs import is_verb_form

_TOKEN = re.compile(r"[\w]+(?:['’-][\w]+)*|[^\w\s]")
_NO_SPACE_BEFORE = frozenset(",.;:!?)]}'’")
_NO_SPACE_AFTER = frozenset("([{")


def tokenize(text: str) -> list[str]:
    """Words (with inner hyphens and apostrophes) and single punctuation marks, in order."""
    return _TOKEN.findall(text)


def join_tokens(tokens: Iterable[str]) -> str:
    """Tokens joined back into text with ordinary spacing around punctuation."""
    out: list[str] = []
    for token in tokens:
        if out and token not in _NO_SPACE_BEFORE and out[-1] not in _NO_SPACE_AFTER:
            out.append(" ")
        out.append(token)
    return "".join(out)


def is_word(token: str) -> bool:
    """Whether a token is a word rather than punctuation."""
    return bool(token) and (token[0].isalnum() or token[0] == "_")


def words(text: str) -> list[str]:
    """The lower-cased words of ``text``."""
    return [token.lower() for token in tokenize(text) if is_word(token)]


@lru_cache(maxsize=4096)
def phrase_pattern(phrase: str) -> re.Pattern[str]:
    """A case-insensitive pattern for ``phrase`` as whole words; spaces match any run of whitespace."""
    parts = [re.escape(part) for part in phrase.strip().split()]
    return re.compile(r"(?<![\w])" + r"\s+".join(parts) + r"(?![\w])", re.IGNORECASE)


def has_phrase(text: str, phrase: str) -> bool:
    """Whether ``text`` contains ``phrase`` as whole words (case-insensitive)."""
    return bool(phrase.strip()) and phrase_pattern(phrase).search(text) is not None


def find_phrases(text: str, phrases: Iterable[str]) -> list[str]:
    """The phrases that ``text`` contains as whole words, in the order given."""
    return [phrase for phrase in phrases if has_phrase(text, phrase)]


def remove_phrase(text: str, phrase: str) -> str:
    """``text`` without any whole-word occurrence of ``phrase``."""
    return tidy(phrase_pattern(phrase).sub(" ", text))


def replace_phrase(text: str, phrase: str, replacement: str) -> str:
    """``text`` with every whole-word occurrence of ``phrase`` replaced."""
    return phrase_pattern(phrase).sub(lambda _match: replacement, text)


def content_words(text: str) -> set[str]:
    """The words of ``text`` that carry meaning (no articles, pronouns, prepositions...), crudely singularised."""
    return {singular(word) for word in words(text) if word not in STOPWORDS and len(word) > 1}


def singular(word: str) -> str:
    """A crude singular form, good enough to compare words ("horses" ~ "horse")."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def similarity(first: str, second: str) -> float:
    """Jaccard similarity of the content words of two texts, 0 to 1."""
    a, b = content_words(first), content_words(second)
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


# Words a description never ends on ("her" may: "follows her").
_DANGLING_END = word_set(
    """
    and or with in on at to of by from for into onto under through across toward towards without
    wearing a an the his their its
    """
)


# Particles that end phrasal verbs ("comes in", "looks up"): kept at the end after a verb.
_PARTICLES = word_set("in on out up down off away back over through")


def tidy(text: str) -> str:
    """Text with collapsed whitespace, no empty comma segments, and no dangling joining words at either end."""
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    text = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", text)
    text = re.sub(r"\(\s*\)", "", text)
    changed = True
    while changed:
        before = text
        text = text.strip(" ,;:-")
        tokens = text.split(" ")
        while tokens and tokens[-1].lower().strip(",;:") in _DANGLING_END and not _ends_phrasal_verb(tokens):
            tokens.pop()
        while tokens and tokens[0].lower() in {"and", "or", "with", ","}:
            tokens.pop(0)
        text = " ".join(tokens)
        text = re.sub(r"\b(and|or|with)\s*([,.;:])", r"\2", text, flags=re.IGNORECASE)
        changed = text != before
    return text


def _ends_phrasal_verb(tokens: list[str]) -> bool:
    """ "the shepherd comes in": a particle after a verb ends the phrase; "the shepherd walks to" does not."""
    last = tokens[-1].lower().strip(",;:")
    return len(tokens) > 1 and last in _PARTICLES and is_verb_form(tokens[-2].lower().strip(",;:"))


def capitalise_first(text: str) -> str:
    """``text`` with its first letter upper-cased (trigger tokens, which start lower-case, are left alone)."""
    if not text or "_" in text.split(" ", 1)[0]:
        return text
    return text[0].upper() + text[1:]


def clean_story_text(text: str) -> str:
    """Story text made safe for a prompt: no brackets or weighting syntax, plain quotes, single spaces."""
    text = text.replace("“", "").replace("”", "").replace('"', "").replace("‘", "'").replace("’", "'")
    text = re.sub(r"[\[\]{}()<>|\\*#^~`=+]", " ", text)
    return re.sub(r"\s+", " ", text).strip()
