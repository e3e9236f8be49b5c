"""Who does what in each beat: an explicit subject for every beat, with pronouns resolved to whom they stand for.

A frame cannot say "it sleeps" or "he laughs": an image model has no earlier sentence to look back at. So every
beat starts with the character (or thing) that acts, by the one name the plan uses for it:

- a beat that starts with a verb ("... and sleeps") shares the subject of the beat before it;
- "he"/"she" stand for the current subject when it fits (a person or animal of that gender or of an unknown
  one), else the main character, else the most recent character that fits;
- "it" stands for the current subject or main character when that is an animal or a thing (not in "it was late",
  "it starts to rain");
- "they" stands for a plural subject, the group last named ("Mira and Bolt"), or the subject with the character
  it was last seen with ("meets Tazsha and they race" -> "aldar_kose_man and Tazsha race");
- "his/her/its/their X" at the start of a beat becomes "<owner>'s X"; "him/her/them" after a verb or preposition
  becomes the character meant, when that is not the subject itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from services.planner.banned import banned_words
from services.planner.clauses import strip_openers
from services.planner.lexicon import (
    ANIMAL_NOUNS,
    APPEARANCE_ADJECTIVES,
    COLLECTIVE_NOUNS,
    DETERMINERS,
    FEMALE_NOUNS,
    GENERIC_NOUNS,
    IRREGULAR_PLURALS,
    LIGHTING,
    MALE_NOUNS,
    NUMBER_WORDS,
    OBJECT_PRONOUNS,
    PERSON_NOUNS,
    PLACES,
    POSSESSIVE_PRONOUNS,
    PRONOUNS_SUBJECT,
    STOPWORDS,
    WEATHER_OR_NATURE,
    word_set,
)
from services.planner.text import has_phrase, is_word, singular, tokenize, words
from services.planner.verbs import acts_here, is_verb_form, third_person

_IMPERSONAL_IT_NEXT = word_set("is was 's seems seemed became becomes gets got grows grew feels felt looked looks")
_OBJECT_LEADS = word_set(
    """
    to at with beside behind for near toward towards after past around before from over under into onto of
    """
)
_SECOND_SUBJECT = word_set("while when as because until whereas though although who that which whom")
_GENDERS = {"he": "male", "she": "female"}
_POSSESSIVE_OF_GENDER = {"male": "his", "female": "her"}


@dataclass
class Referent:
    """Someone or something a beat can be about, and how a description names it."""

    phrase: str  # "the fox", "aldar_kose_man", "Tazsha", "the girl's brother", "mira_girl and bolt_robot"
    kind: str  # "person", "animal", "thing" or "group"
    gender: str = ""  # "male", "female", or "" when the story has not said
    plural: bool = False
    members: tuple[str, ...] = ()  # the phrases of a group's members
    collective: bool = False  # "the crew": people, but never "he" or "she"

    @property
    def animate(self) -> bool:
        return self.kind in ("person", "animal", "group")

    @property
    def possessive(self) -> str:
        """ "the fox's", "the two children'"."""
        if self.plural and self.phrase.endswith("s") and not self.phrase.endswith("ss"):
            return f"{self.phrase}'"
        return f"{self.phrase}'s"

    def fits(self, pronoun: str) -> bool:
        """Whether ``pronoun`` (a subject pronoun) can stand for this referent."""
        if pronoun == "they":
            return self.plural or self.collective
        if self.plural:
            return False
        if pronoun == "it":
            return self.kind in ("animal", "thing")
        wanted = _GENDERS.get(pronoun, "")
        return self.animate and not self.collective and self.gender in ("", wanted)


def first_subject(sentence: str) -> str | None:
    """The noun phrase a sentence starts with ("The old fisherman rows..." -> "old fisherman"), or None."""
    text = without_leading_phrase(strip_openers(sentence))
    text = re.sub(r"^there\s+(?:was|were|is|are|lived)\s+", "", text, flags=re.IGNORECASE)  # "There was a mouse"
    tokens = [token for token in tokenize(text) if is_word(token)]
    if not tokens:
        return None
    lower = [token.lower() for token in tokens]
    if lower[0] in PRONOUNS_SUBJECT or lower[0] in ("i", "we", "you"):
        return None
    if _starts_with_name(tokens, lower):
        name = [tokens[0]]
        for token in tokens[1:3]:
            if not token[0].isupper():
                break
            name.append(token)
        return " ".join(name)
    start = 1 if lower[0] in DETERMINERS else 0
    phrase: list[str] = []
    for index in range(start, min(len(lower), start + 4)):
        word = lower[index]
        if word in STOPWORDS or (phrase and acts_here(lower, index)) or (not phrase and is_verb_form(word)):
            break
        phrase.append(word)
    if not phrase:
        return None
    head = phrase[-1]
    if head in WEATHER_OR_NATURE or head in PLACES or head in GENERIC_NOUNS or head in LIGHTING:
        return None
    kept = [word for word in phrase[:-1] if word not in APPEARANCE_ADJECTIVES and not banned_words(word)]
    return " ".join([*kept, head])


_LEADING_PHRASE = re.compile(
    r"^(?:after|before|during|in|on|at|from|with|without|by|for|since|until|outside|inside|near|under|across"
    r"|through|behind|beyond|despite|far away|far|deep in|high above)\b([^,]{0,40}),\s*",
    re.IGNORECASE,
)


def without_leading_phrase(text: str) -> str:
    """ "After the war, the soldier walks" -> "the soldier walks": a leading phrase that is not the subject
    (and not an action: "at dawn reached the castle, where ..." keeps its verb)."""
    match = _LEADING_PHRASE.match(text)
    if match is None:
        return text
    phrase_words = words(match.group(0))
    if any(is_verb_form(word) or acts_here(phrase_words, index) for index, word in enumerate(phrase_words)):
        return text
    return text[match.end() :]


def _starts_with_name(tokens: list[str], lower: list[str]) -> bool:
    first = lower[0]
    return (
        tokens[0][0].isupper()
        and first not in DETERMINERS
        and first not in STOPWORDS
        and first not in NUMBER_WORDS
        and not is_verb_form(first)
    )


def classify(phrase: str, kind_of_head: Callable[[str], str] | None = None) -> Referent:
    """A referent for a noun phrase as a description names it ("the old woman", "Tazsha", "two kids")."""
    tokens = phrase.split()
    lower = [token.lower() for token in tokens]
    if not lower:
        return Referent(phrase, "thing")
    if " and " in f" {phrase.lower()} ":
        members = tuple(part.strip() for part in re.split(r",\s*|\s+and\s+", phrase) if part.strip())
        return Referent(phrase, "group", plural=True, members=members)
    head = lower[-1].removesuffix("'s")
    base = singular(head)
    kind = kind_of_head(head) if kind_of_head else ""
    if not kind:
        if head in PERSON_NOUNS or base in PERSON_NOUNS or "_" in head or tokens[-1][:1].isupper():
            kind = "person"
        elif head in ANIMAL_NOUNS or base in ANIMAL_NOUNS:
            kind = "animal"
        else:
            kind = "thing"
    plural = (
        lower[0] in NUMBER_WORDS
        or head in IRREGULAR_PLURALS
        or (base != head and (base in PERSON_NOUNS or base in ANIMAL_NOUNS or kind == "thing"))
    )
    gender = "male" if base in MALE_NOUNS or head in MALE_NOUNS else ""
    gender = "female" if base in FEMALE_NOUNS or head in FEMALE_NOUNS else gender
    return Referent(phrase, kind, gender, plural, collective=head in COLLECTIVE_NOUNS)


def group(first: Referent, second: Referent) -> Referent:
    """ "the girl" and "the girl's brother" -> "the girl and her brother"."""
    second_phrase = second.phrase
    neuter = "its" if first.kind == "animal" else ""
    pronoun = "their" if first.plural else _POSSESSIVE_OF_GENDER.get(first.gender, neuter)
    if pronoun and second_phrase.startswith(first.possessive + " "):
        second_phrase = f"{pronoun} {second_phrase[len(first.possessive) + 1 :]}"
    phrase = f"{first.phrase} and {second_phrase}"
    return Referent(phrase, "group", plural=True, members=(first.phrase, second.phrase))


@dataclass
class Referents:
    """The state of a story as it is read beat by beat: the current subject, the main character, recent ones."""

    main: Referent | None
    known: dict[str, Referent] = field(default_factory=dict)  # by head word (lower case): the story's characters
    things: dict[str, Referent] = field(default_factory=dict)  # by head word: objects "it" may stand for
    subject: Referent | None = None
    last_group: Referent | None = None
    recent: list[Referent] = field(default_factory=list)  # animate referents, most recent first
    last_mentions: list[Referent] = field(default_factory=list)  # others the previous beat showed
    last_things: list[Referent] = field(default_factory=list)  # things the previous beat showed, last first

    def __post_init__(self) -> None:
        if self.subject is None:
            self.subject = self.main

    def resolve(self, text: str) -> tuple[str, Referent | None]:
        """``text`` (a beat, openers already removed) with an explicit subject, and that subject."""
        tokens = text.split()
        if not tokens:
            return text, self.subject
        first = tokens[0].lower().strip(",")
        rest = tokens[1:]
        subject: Referent | None
        if first in PRONOUNS_SUBJECT:
            subject = self._for_pronoun(first, rest)
            text = self._with_subject(subject, rest) if subject is not None else text
        elif first in POSSESSIVE_PRONOUNS and rest and rest[0].lower() not in STOPWORDS:
            owner = self._for_pronoun(POSSESSIVE_PRONOUNS[first], rest)
            if owner is not None:
                text = " ".join([owner.possessive, *rest])
            subject = self._owned(owner, tokens[0], rest)
        elif acts_here([t.lower() for t in tokens], 0) and self.subject is not None:
            subject = self.subject
            text = self._with_subject(subject, tokens)
        else:
            subject = self._explicit(text)
            text = self._canonical_subject(text, subject)
        text = self._resolve_object(text, subject)
        self._remember(text, subject)
        return text, subject

    # -- pronouns --------------------------------------------------------------------------------------------

    def _candidates(self) -> list[Referent]:
        found: list[Referent] = []
        for referent in (self.subject, self.main, *self.recent):
            if referent is not None and all(referent is not other for other in found):
                found.append(referent)
        return found

    def _for_pronoun(self, pronoun: str, rest: list[str]) -> Referent | None:
        if pronoun == "they":
            return self._they()
        if pronoun == "it":
            if _impersonal(rest):
                return None
            candidates = (self.subject, self.main, *self.last_things)  # "Tom kicked the ball. It flew ..."
            return next((r for r in candidates if r is not None and r.fits("it")), None)
        chosen = _best_fit(self._candidates(), pronoun)
        if chosen is None and self.subject is not None and self.subject.kind == "thing" and not self.subject.plural:
            chosen = self.subject  # "the lifeguard shouted. She swam ...": a role the word lists do not know
            chosen.kind = "person"
        if chosen is not None and not chosen.gender and pronoun in _GENDERS:
            chosen.gender = _GENDERS[pronoun]  # the story has now said
        return chosen

    def _they(self) -> Referent | None:
        """A plural subject; else the subject with whom the last beat showed it; else the last group named; else
        the main or a recent character that is several people; else the subject with its latest companion."""
        subject = self.subject
        if subject is not None and subject.plural:
            return subject
        others = [r for r in self.last_mentions if r.animate and r is not subject]
        if subject is not None and others:
            return self._pair(subject, others[0])
        if self.last_group is not None:
            return self.last_group
        plural = [r for r in (self.main, *self.recent) if r is not None and r.animate and r.fits("they")]
        if plural:
            return plural[0]  # "the team ... they run onto the field", "two kids ... a storm ... they rebuild"
        companions = [r for r in self.recent if r is not subject and r.animate and not r.plural]
        if subject is not None and subject.animate and companions:
            return self._pair(subject, companions[0])
        return None

    def _pair(self, first: Referent, second: Referent) -> Referent:
        """The group of two referents, the main character named first."""
        if second is self.main:
            first, second = second, first
        self.last_group = group(first, second)
        return self.last_group

    def _resolve_object(self, text: str, subject: Referent | None) -> str:
        """The first "him"/"her"/"them" after a verb or preposition, as the character meant."""
        tokens = text.split()
        lower = [token.lower().strip(",.") for token in tokens]
        if any(word in _SECOND_SUBJECT for word in lower):
            return text  # a second clause inside: whose "her" it is cannot be told
        for index in range(1, len(tokens)):
            pronoun = lower[index]
            if pronoun not in OBJECT_PRONOUNS:
                continue
            following = lower[index + 1] if index + 1 < len(lower) else ""
            if pronoun == "her" and following and following not in STOPWORDS:
                continue  # "her lantern": a possessive
            if not (acts_here(lower, index - 1) or lower[index - 1] in _OBJECT_LEADS):
                continue
            wanted = OBJECT_PRONOUNS[pronoun]
            meant = _best_fit([r for r in self._candidates() if r is not subject], wanted)
            if meant is None:
                return text
            if not meant.gender and wanted in _GENDERS:
                meant.gender = _GENDERS[wanted]  # "the cat saw her": whoever she is, she is a she
            trailing = tokens[index][len(tokens[index].rstrip(",.")) :]
            tokens[index] = meant.phrase + trailing
            return " ".join(tokens)
        return text

    # -- explicit subjects -----------------------------------------------------------------------------------

    def _explicit(self, text: str) -> Referent | None:
        group_phrase = _leading_group(text)
        if group_phrase:
            found = classify(group_phrase)
            self.last_group = found
            return found
        phrase = first_subject(text) or _leading_noun_phrase(text)
        if not phrase:
            return self.subject
        head = phrase.split()[-1].lower().removesuffix("'s")
        if self.main is not None and head == self.main.phrase.split()[-1].lower() and "'" not in phrase:
            return self.main
        known = self.known.get(head)
        if known is not None and "'" not in phrase:
            return known
        if phrase[:1].isupper() or "_" in phrase or "'" in phrase:
            return classify(phrase)
        return classify(f"the {phrase}")

    def _owned(self, owner: Referent | None, pronoun: str, rest: list[str]) -> Referent | None:
        """The subject of "her brother slept ...": "the girl's brother", who "the brother" also means now."""
        phrase = first_subject(" ".join(rest))
        if not phrase:
            return self.subject
        owned = classify(f"{owner.possessive if owner is not None else pronoun} {phrase}")
        head = phrase.split()[-1].lower()
        known = self.known.get(head)
        if known is not None:
            owned.kind = known.kind
        self.known[head] = owned
        return owned

    def _canonical_subject(self, text: str, subject: Referent | None) -> str:
        """ "A fox crosses ..." -> "the fox crosses ..." when the fox is a character the plan already names."""
        if subject is None or subject.kind == "group" or subject.phrase[:1].isupper() or "_" in subject.phrase:
            return text
        head = subject.phrase.split()[-1]
        match = re.match(rf"^(?:(?:a|an|the)\s+)?(?:[\w-]+\s+){{0,3}}?{re.escape(head)}\b", text, re.IGNORECASE)
        if match is None:
            return text
        return subject.phrase + text[match.end() :]

    def _with_subject(self, subject: Referent | None, predicate: list[str]) -> str:
        if subject is None:
            return " ".join(predicate)
        if predicate and not subject.plural:
            predicate = [third_person(predicate[0]), *predicate[1:]]
        return " ".join([subject.phrase, *predicate])

    def _remember(self, text: str, subject: Referent | None) -> None:
        everyone = dict(self.known)
        if self.main is not None:
            everyone[self.main.phrase] = self.main
        mentions = [
            referent
            for head, referent in everyone.items()
            if referent is not subject and referent.animate and has_phrase(text, head)
        ]
        if subject is not None:
            self.subject = subject
        latest = [*mentions, *([subject] if subject is not None and subject.animate else [])]
        self.recent = [*latest, *[r for r in self.recent if all(r is not other for other in latest)]]
        self.last_mentions = mentions
        things = [(text.lower().rfind(head), r) for head, r in self.things.items() if has_phrase(text, head)]
        self.last_things = [r for _position, r in sorted(things, key=lambda pair: -pair[0])]


def _leading_noun_phrase(text: str) -> str:
    """ "A storm breaks his mast" -> "storm": a subject ``first_subject`` leaves out (weather, the sky ...)."""
    lower = [token.lower() for token in tokenize(text) if is_word(token)]
    if len(lower) < 3 or lower[0] not in ("a", "an", "the"):
        return ""
    for index in range(2, min(len(lower), 5)):
        if acts_here(lower, index):
            return " ".join(lower[1:index])
        if lower[index] in STOPWORDS:
            return ""
    return ""


def _best_fit(candidates: list[Referent], pronoun: str) -> Referent | None:
    """The candidate ``pronoun`` most likely means: one the story has called that, then a person, then anyone."""
    fitting = [r for r in candidates if r.fits(pronoun)]
    wanted = _GENDERS.get(pronoun, "")
    for tier in (
        [r for r in fitting if wanted and r.gender == wanted],
        [r for r in fitting if r.kind in ("person", "group")],
        fitting,
    ):
        if tier:
            return tier[0]
    return None


def is_impersonal(text: str) -> bool:
    """Whether ``text`` is about the weather or the time ("it was raining", "it is late"), not a character."""
    tokens = text.split()
    return bool(tokens) and tokens[0].lower() == "it" and _impersonal(tokens[1:])


def _impersonal(rest: list[str]) -> bool:
    """ "it was late", "it starts to rain": an "it" that stands for no one."""
    lower = [word.lower() for word in rest]
    if any(word in WEATHER_OR_NATURE or word in LIGHTING for word in lower[:4]):
        return True
    if lower and lower[0] in _IMPERSONAL_IT_NEXT:
        return not (len(lower) > 1 and lower[1].endswith("ing"))
    return False


def _leading_group(text: str) -> str:
    """ "Mira and Bolt explore ..." -> "Mira and Bolt": a subject of several characters, before the verb."""
    tokens = text.split()
    lower = [token.lower().strip(",") for token in tokens]
    if "and" not in lower[:8]:
        return ""
    for index in range(1, min(len(lower), 10)):
        if lower[index] in ("and",) or tokens[index - 1].endswith(","):
            continue
        if acts_here(lower, index) and lower[index] not in STOPWORDS:
            subject = " ".join(tokens[:index]).strip(" ,")
            if " and " in f" {subject.lower()} " and not any(
                acts_here(lower, position) for position in range(index) if lower[position] != "and"
            ):
                return subject
            return ""
    return ""
