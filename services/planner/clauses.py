"""Cutting a story into beats: sentences, then the clauses inside them that each show one thing happening.

A sentence breaks at "then", "and then", "after that", "finally", ";", ", but", ", so", at a comma or "and" that
starts a new verb phrase ("crosses a river, finds its den and sleeps": three beats sharing one subject), and at
"and" that starts a new clause with its own subject ("meets Tazsha and they race to the river"). A verb on its own
("... and sleeps") is a beat: it is never glued to the beat before it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.planner.lexicon import DETERMINERS, OPENERS, STOPWORDS, word_set
from services.planner.text import words
from services.planner.verbs import acts_here, is_verb_form


@dataclass(frozen=True)
class Clause:
    """One beat's text, with where it comes from."""

    text: str
    sentence: int  # which sentence of the story (0-based)
    opens_sentence: bool  # the sentence's first clause; later ones continue it (and may share its subject)


_ABBREVIATION_END = re.compile(r"\b(?:Mr|Mrs|Ms|Dr|St|Mt|Prof|Jr|Sr|Capt|Sgt|Lt)\.$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_NOT_THEN = r"(?<!\bby)(?<!\buntil)(?<!\btill)(?<!\bsince)(?<!\bjust)(?<!\bback)(?<!\beven)(?<!\bonly)(?<!\bfrom)"
_CLAUSE_BREAKS = re.compile(
    r",\s*(?:and\s+)?(?:then|after\s+that|afterwards|finally|meanwhile)\b,?\s*"
    r"|\s+and\s+then\s+|\s+after\s+that,?\s+"
    rf"|(?<=\w){_NOT_THEN}\s+then\s+"
    r"|,\s*but\s+|\s*;\s*|,\s*so\s+|,\s*while\s+",
    re.IGNORECASE,
)
_SUBORDINATE_START = re.compile(r"^(when|as|after|before|once|while|because|since|as soon as)\b", re.IGNORECASE)
_SUBJECT_PRONOUNS = word_set("he she it they we i you")
_LEADING_CONNECTIVES = re.compile(r"^(?:and|then|but|so)\s+", re.IGNORECASE)
_RELATIVE = word_set("who whom whose which where that")
# "-ed" words that start a description of someone rather than an action ("He stopped, tired but alive").
_ED_ADJECTIVES = word_set(
    """
    tired scared frightened excited amazed surprised worried exhausted relieved pleased delighted terrified annoyed
    bored confused determined embarrassed interested satisfied shocked soaked armed wounded injured
    """
)


def split_sentences(story: str) -> list[str]:
    """The story's sentences, without their final punctuation ("Mr. Ito" does not end one)."""
    sentences: list[str] = []
    for part in _SENTENCE_END.split(story):
        part = part.strip()
        if not part:
            continue
        if sentences and _ABBREVIATION_END.search(sentences[-1]):
            sentences[-1] = f"{sentences[-1]} {part}"
        else:
            sentences.append(part)
    return [s.rstrip(".!?").strip() for s in sentences if s.rstrip(".!?").strip()]


def split_clauses(story: str) -> list[Clause]:
    """The story cut into beats, each one thing that happens, in story order."""
    clauses: list[Clause] = []
    for number, sentence in enumerate(split_sentences(story)):
        pieces = [
            piece
            for part in _sentence_parts(sentence)
            for segment in _split_on_commas(part.strip(" ,"))
            for piece in _split_on_and(segment)
        ]
        kept: list[str] = []
        for piece in pieces:
            piece_words = words(piece)
            if not piece_words:
                continue
            if len(piece_words) < 2 and kept and not is_verb_form(piece_words[0]):
                kept[-1] = f"{kept[-1]}, {piece}"  # "... he stopped, silence": not an action of its own
            else:
                kept.append(piece)
        clauses.extend(Clause(text, number, index == 0) for index, text in enumerate(kept))
    return clauses


def split_beats(story: str) -> list[str]:
    """The texts of :func:`split_clauses`."""
    return [clause.text for clause in split_clauses(story)]


def _sentence_parts(sentence: str) -> list[str]:
    """A sentence cut at its explicit breaks; "When X, Y" gives "X" and "Y" when X is itself an action."""
    if _SUBORDINATE_START.match(sentence) and "," in sentence:
        head, tail = sentence.split(",", 1)
        head_words = words(head)
        if any(acts_here(head_words, index) for index in range(1, len(head_words))):
            return [head, *_CLAUSE_BREAKS.split(tail)]
    return _CLAUSE_BREAKS.split(sentence)


def _split_on_commas(clause: str) -> list[str]:
    """Split "finds an oasis, rests under a palm tree, and reaches the city" into its actions."""
    pieces: list[str] = []
    for segment in (segment.strip() for segment in clause.split(",")):
        body = _LEADING_CONNECTIVES.sub("", segment)
        segment_words = words(body)
        acts = _has_verb(body) or _starts_with_past_verb(segment_words)
        relative = bool(segment_words) and segment_words[0] in _RELATIVE  # ", who is waiting below"
        if pieces and acts and not relative and _has_verb(pieces[-1]) and _starts_action(body):
            pieces.append(body)
        elif pieces:
            pieces[-1] = f"{pieces[-1]}, {segment}"
        else:
            pieces.append(segment)
    return [piece for piece in pieces if piece]


def _has_verb(text: str) -> bool:
    """Whether ``text`` has a verb: a known one, or an unknown "-s"/"-ed" word with an object ("kneaded the")."""
    text_words = words(text)
    return any(
        is_verb_form(word) or (index + 1 < len(text_words) and acts_here(text_words, index))
        for index, word in enumerate(text_words)
    )


def _starts_action(text: str) -> bool:
    """Whether ``text`` starts a verb phrase or a clause of its own (not "tired but alive", "a red cloak")."""
    tokens = words(text)
    return bool(tokens) and (
        _starts_verb_phrase(tokens)
        or _starts_with_past_verb(tokens)
        or _starts_new_clause(text.split())
        or len(tokens) > 3
    )


def _starts_with_past_verb(tokens: list[str]) -> bool:
    """ ", stretched its wings", ", snored loudly": an "-ed" word opening a list item is an action."""
    return bool(tokens) and len(tokens[0]) > 4 and tokens[0].endswith("ed") and tokens[0] not in _ED_ADJECTIVES


def _split_on_and(clause: str) -> list[str]:
    """Split at an "and" that starts a verb phrase ("... and sleeps") or a new clause ("... and they race")."""
    tokens = clause.split()
    for index, token in enumerate(tokens):
        if token.lower().strip(",") != "and" or index == 0 or index + 1 >= len(tokens):
            continue
        before = [t.lower().strip(",") for t in tokens[:index]]
        if not any(acts_here(before, position) for position in range(len(before))):
            continue
        if any(t.endswith(",") and tokens[i + 1].lower() in _RELATIVE for i, t in enumerate(tokens[: index - 1])):
            break  # inside ", who smile and say thank you": the relative clause keeps its "and"
        rest = tokens[index + 1 :]
        if _starts_verb_phrase([t.lower().strip(",.") for t in rest]) or _starts_new_clause(rest):
            return [" ".join(tokens[:index]).strip(" ,"), *_split_on_and(" ".join(rest))]
    return [clause] if clause else []


def _starts_verb_phrase(lower: list[str]) -> bool:
    """ "sleeps", "quickly hides the pot", "then runs": a verb, perhaps after an adverb."""
    start = 1 if lower and (lower[0].endswith("ly") or lower[0] == "then") and len(lower) > 1 else 0
    word = lower[start]
    known = is_verb_form(word) or (start + 1 < len(lower) and acts_here(lower, start))
    participle = word.endswith("ing") and len(word) > 5  # ", smiling": how, not what ("sing", "bring" are verbs)
    return known and word not in STOPWORDS and not participle


def _starts_new_clause(tokens: list[str]) -> bool:
    """ "they race ...", "the waves grow ...", "Tazsha laughs": a subject of its own, then a verb."""
    lower = [token.lower().strip(",.") for token in tokens]
    if not lower:
        return False
    if lower[0] in _SUBJECT_PRONOUNS:
        return len(lower) > 1 and _starts_verb_phrase(lower[1:])
    if lower[0] in DETERMINERS or tokens[0][:1].isupper() or "_" in tokens[0]:
        for index in range(1, min(len(lower), 5)):
            if acts_here(lower, index):
                return all(word not in STOPWORDS for word in lower[1:index])
            if lower[index] in STOPWORDS:
                return False
    return False


def strip_openers(text: str) -> str:
    """``text`` without a leading "Once upon a time," or "Then"."""
    changed = True
    while changed:
        changed = False
        for opener in OPENERS:
            match = re.match(rf"{re.escape(opener)}\b[\s,]*", text, re.IGNORECASE)
            if match:
                text = text[match.end() :]
                changed = True
    return text.strip()
