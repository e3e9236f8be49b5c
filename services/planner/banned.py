"""Finding and removing clothing and physical-appearance words, with the little phrase around them.

"aldar_kose_man in a colourful chapan rides" becomes "aldar_kose_man rides"; "a tall, handsome merchant" becomes
"a merchant"; "tall grass" stays, because "tall" only counts as appearance when it describes a person.
"""

from __future__ import annotations

from collections.abc import Iterable

from services.planner.lexicon import (
    ANIMAL_NOUNS,
    APPEARANCE_ADJECTIVES,
    APPEARANCE_WORDS,
    CLOTHING_WORDS,
    DESCRIPTOR_ADJECTIVES,
    EYE_COLOURS,
    PERSON_NOUNS,
    PLACES,
    STOPWORDS,
    word_set,
)
from services.planner.text import is_word, join_tokens, tidy, tokenize

CLOTHING_VERBS = word_set("wearing wears wore wear dressed clad outfitted garbed")
_DETERMINERS = word_set("a an the his her their its some my your our")
_INTRODUCERS = word_set("in with wearing wears wore and or dressed clad")
# "puts on the hat", "took off his boots": the verb goes with the clothing it is about.
_DRESSING_VERBS = word_set(
    "put puts putting take takes took taking pull pulls pulled try tries tried slip slips slipped"
)
_COPULAS = word_set(
    """
    is was are were be being been looks looked looking appears appeared seems seemed
    """
)
_INTENSIFIERS = word_set("very quite so rather extremely really fairly")
_COMPOUND_SUFFIXES = ("-eyed", "-haired", "-skinned", "-bearded", "-faced")
_MAX_MODIFIERS = 3


def _is_banned_noun(word: str) -> bool:
    if word in CLOTHING_WORDS and word not in CLOTHING_VERBS:
        return True
    if word in APPEARANCE_WORDS or word.endswith(_COMPOUND_SUFFIXES):
        return True
    if "-" in word:
        last = word.rsplit("-", 1)[1]
        return last in CLOTHING_WORDS or last in APPEARANCE_WORDS
    return False


def _is_modifier(word: str, person_refs: frozenset[str]) -> bool:
    """A word that can sit between a determiner and a clothing noun ("a colourful silk chapan")."""
    return (
        is_word(word)
        and word not in STOPWORDS
        and word not in person_refs
        and word not in PERSON_NOUNS
        and word not in ANIMAL_NOUNS
        and word not in PLACES
        and word not in CLOTHING_VERBS
    )


class _Scan:
    """One pass over a text's tokens that marks banned words and the phrase around each for removal."""

    def __init__(self, text: str, person_refs: Iterable[str]) -> None:
        self.tokens = tokenize(text)
        self.lower = [token.lower() for token in self.tokens]
        self.remove = [False] * len(self.tokens)
        self.found: list[str] = []
        self.person_refs = frozenset(ref.lower() for ref in person_refs)

    def run(self) -> _Scan:
        for index, word in enumerate(self.lower):
            if not is_word(word):
                continue
            if word.endswith(_COMPOUND_SUFFIXES):
                self._note(index)  # an adjective ("red-haired girl"): the noun it describes stays
            elif _is_banned_noun(word):
                self._mark_noun(index)
            elif word in CLOTHING_VERBS:
                self._mark_clothing_verb(index)
            elif word in APPEARANCE_ADJECTIVES and self._describes_person(index):
                self._mark_adjective(index)
            elif word == "eyes" and index > 0 and self.lower[index - 1] in EYE_COLOURS:
                self._mark_noun(index, label=f"{self.lower[index - 1]} eyes")
        return self

    def _note(self, index: int, label: str = "") -> None:
        self.remove[index] = True
        label = label or self.lower[index]
        if label not in self.found:
            self.found.append(label)

    def _mark_noun(self, index: int, label: str = "") -> None:
        self._note(index, label)
        start = index - 1
        count = 0
        while start >= 0 and count < _MAX_MODIFIERS and _is_modifier(self.lower[start], self.person_refs):
            self.remove[start] = True
            start, count = start - 1, count + 1
        if start >= 0 and self.lower[start] in _DETERMINERS:
            self.remove[start] = True
            start -= 1
        if start >= 0 and self.lower[start] in _INTRODUCERS:
            self.remove[start] = True
            if self.lower[start] == "in" and start > 0 and self.lower[start - 1] in ("dressed", "clad"):
                self.remove[start - 1] = True
        elif start > 0 and self.lower[start] in ("on", "off") and self.lower[start - 1] in _DRESSING_VERBS:
            self.remove[start] = self.remove[start - 1] = True

    def _mark_clothing_verb(self, index: int) -> None:
        self._note(index)
        cursor = index + 1
        if cursor < len(self.lower) and self.lower[cursor] in ("in", "up"):
            self.remove[cursor] = True
            cursor += 1
        if cursor < len(self.lower) and self.lower[cursor] in _DETERMINERS:
            self.remove[cursor] = True
            cursor += 1
        count = 0
        while cursor < len(self.lower) and count < _MAX_MODIFIERS:
            word = self.lower[cursor]
            if not (_is_modifier(word, self.person_refs) or _is_banned_noun(word)):
                break
            self.remove[cursor] = True
            cursor, count = cursor + 1, count + 1

    def _describes_person(self, index: int) -> bool:
        def adjective(at: int) -> bool:
            return 0 <= at < len(self.lower) and (
                self.lower[at] in APPEARANCE_ADJECTIVES or self.lower[at] in DESCRIPTOR_ADJECTIVES
            )

        cursor = index + 1
        # "a tall, handsome man": commas and "and" only join adjectives, they do not end the phrase.
        while adjective(cursor) or (
            cursor < len(self.lower) and self.lower[cursor] in (",", "and") and adjective(cursor + 1)
        ):
            cursor += 1
        if cursor < len(self.lower):
            following = self.lower[cursor]
            if following in PERSON_NOUNS or following in self.person_refs:
                return True
        cursor = index - 1
        while cursor >= 0 and (
            self.lower[cursor] in _INTENSIFIERS
            or self.lower[cursor] in APPEARANCE_ADJECTIVES
            or (self.lower[cursor] in (",", "and") and cursor > 0 and self.lower[cursor - 1] in APPEARANCE_ADJECTIVES)
        ):
            cursor -= 1
        return cursor >= 0 and self.lower[cursor] in _COPULAS

    def _mark_adjective(self, index: int) -> None:
        self._note(index)
        if index > 0 and self.lower[index - 1] in _INTENSIFIERS:
            self.remove[index - 1] = True
        following = index + 1
        if following < len(self.lower) and self.lower[following] in (",", "and"):
            self.remove[following] = True

    def text(self) -> str:
        remove = list(self.remove)
        # "Mira, wearing a red cloak, walks": a removed aside takes one of its two commas with it.
        index = 0
        while index < len(remove):
            if remove[index]:
                end = index
                while end < len(remove) and remove[end]:
                    end += 1
                if index > 0 and end < len(remove) and self.tokens[index - 1] == "," and self.tokens[end] == ",":
                    remove[end] = True
                    if index > 1 and self.lower[index - 2] in self.person_refs:
                        remove[index - 1] = True  # "Mira, wearing a cloak, walks" -> "Mira walks"
                index = end
            index += 1
        kept = [token for token, drop in zip(self.tokens, remove, strict=True) if not drop]
        return tidy(join_tokens(kept))


def banned_words(text: str, person_refs: Iterable[str] = ()) -> list[str]:
    """The clothing and appearance words in ``text``, lower-cased, in order of first appearance."""
    return _Scan(text, person_refs).run().found


def strip_banned(text: str, person_refs: Iterable[str] = ()) -> str:
    """``text`` without clothing or appearance words and the short phrase that carries each."""
    scan = _Scan(text, person_refs).run()
    return scan.text() if scan.found else text
