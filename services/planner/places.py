"""Where and when a beat happens: the places a text names and the light its time of day or weather calls for.

A place is a known place word ("forest", "yurt", "den") or a noun a place preposition leads to ("into the
henhouse"), with the adjectives and compound words the text gives it ("the snowy forest", "a palm tree"), the
preposition that puts something there when it is not plain "in" ("under the old oak"), and a following place it
is described by ("its den under an old oak" -> "den under the old oak").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.planner.banned import banned_words
from services.planner.lexicon import (
    ABSTRACT_NOUNS,
    ANIMAL_NOUNS,
    DESCRIPTOR_ADJECTIVES,
    DETERMINERS,
    DIRECTIONAL_PREPOSITIONS,
    GENERIC_NOUNS,
    LIGHTING,
    LOCATIVE_PREPOSITIONS,
    MOVEMENT_VERBS,
    MULTIWORD_PLACES,
    PERSON_NOUNS,
    PLACES,
    STOPWORDS,
    WEATHER_OR_NATURE,
    word_set,
)
from services.planner.text import is_word, phrase_pattern, singular, tidy, tokenize
from services.planner.verbs import is_verb_form

PLACE_ADJECTIVES = word_set(
    """
    vast open endless wide busy crowded bustling quiet silent dark dense deep snowy sandy rocky grassy misty
    foggy frozen distant narrow empty lush green golden old ancient small little big great high steep tall wild
    windy dusty muddy sunny shady hidden abandoned ruined royal northern southern eastern western lonely
    peaceful stormy calm icy shallow
    """
)
_ON_PLACES = word_set(
    """
    steppe steppes plain plains prairie field fields meadow road path trail street bridge hill hills beach shore
    coast island mountain ridge summit peak rooftop roof platform pier deck ship grassland pasture savanna
    tundra glacier moon planet asteroid riverbank sea ocean lake river pond ice
    """
)
_PLACE_VERBS = word_set(
    """
    reach reaches reached reaching enter enters entered entering leave leaves left leaving explore explores
    explored exploring visit visits visited visiting cross crosses crossed crossing search searches searched
    searching approach approaches approached approaching guard guards guarded fill fills filled find finds found
    finding discover discovers discovered discovering
    """
)
# Leads that put a character next to a place rather than in it: a description says so ("under the old oak").
_POSITION_LEADS = word_set("outside above beside near behind under beneath below by")
_HOME_LEADS = word_set("at his her their my our the back")
_AT_PLACES = word_set("well campfire fireplace fountain crossroads station door gate edge entrance")
# "laughs at the bai", "looks at the door": "at" names a target, not where the beat happens.
_AIMING_VERBS = word_set(
    """
    look looks looked looking laugh laughs laughed laughing stare stares stared staring smile smiles smiled
    point points pointed shout shouts shouted yell yells yelled bark barks barked glance glances glanced wave
    waves waved aim aims aimed throw throws threw gaze gazes gazed growl growls growled grin grins grinned nod
    nods nodded peer peers peered scream screams screamed wink winks winked frown frowns frowned
    """
)
# Prepositions that lead to a place the word lists do not know ("into the henhouse", "under the bridge").
_PATTERN_LEADS = word_set("in inside into at under beneath to toward towards onto within")
_TOWARD = word_set("to toward towards onto")
_SMALL_THINGS = word_set(
    """
    bottle box bag sack pocket basket jar cup pot bowl mouth purse envelope drawer hat pan kettle bucket barrel
    hands hand arms paws claws beak teeth fingers glass mirror picture photo book letter note map water ashes
    daze dream circle line row whisper flash instant heap pile panic rage state mess voice hole net trap
    """
)
_NOT_MODIFIERS = word_set("whole entire same other next last first only own very")
_SKY = word_set("moon sky stars sun")
_COMPOUND_LINKS = word_set("under beneath beside near behind below by")
# Parts of a place: "under the kitchen floor" is in the kitchen, not under it.
_PLACE_PARTS = word_set("floor floors door doors window windows wall walls table roof steps gate corner stairs")


@dataclass(frozen=True)
class Place:
    """A place the story names: the phrase used for it, its head noun and whether it is indoors."""

    phrase: str
    head: str
    indoor: bool
    position: int = 0
    preposition: str = ""  # how a description puts something there, when the place's head does not say
    end: int = 0  # the token after the phrase, in the text it was found in

    def located(self) -> str:
        """The place with the preposition a description uses: "on the vast steppe", "in the yurt", "at home"."""
        if self.phrase == "home":
            return "at home"
        if self.preposition:
            return f"{self.preposition} the {self.phrase}"
        if self.head in _ON_PLACES:
            return f"on the {self.phrase}"
        if self.head in _AT_PLACES:
            return f"at the {self.phrase}"
        return f"in the {self.phrase}"


def find_places(text: str, strict: bool = True) -> list[Place]:
    """The places ``text`` names, in order, each with the adjectives the text gives it.

    ``strict``: only places the text is in or goes to ("across the steppe", "reaches the cottage"), not places it
    merely talks about ("a story about the sea", "the city lights").
    """
    tokens = tokenize(text)
    lower = [token.lower() for token in tokens]
    found: list[Place] = []
    index = 0
    while index < len(lower):
        phrase_len, indoor = _place_at(lower, index)
        if phrase_len:
            start = _phrase_start(lower, index)
            place = _known_place(lower, start, index, phrase_len, indoor)
            if place is not None and (not strict or _has_place_lead(lower, start)):
                found.append(place)
            index += phrase_len
            continue
        place = _pattern_place(lower, index)
        if place is not None:
            found.append(place)
        index += 1
    return _compounds(lower, _merge_adjacent(found))


def _phrase_start(lower: list[str], index: int) -> int:
    """Where the place phrase whose head starts at ``index`` begins: its adjectives, or one compound word
    after a determiner ("a palm tree")."""
    start = index
    while start > 0 and lower[start - 1] in PLACE_ADJECTIVES and index - start < 2:
        start -= 1
    if (
        start == index
        and index >= 2
        and lower[index - 2] in DETERMINERS
        and _modifier_like(lower[index - 1])
        and lower[index - 1] not in PLACES
    ):
        start -= 1
    return start


def _modifier_like(word: str) -> bool:
    return (
        word.isalpha()
        and word not in STOPWORDS
        and word not in _NOT_MODIFIERS
        and word not in PERSON_NOUNS
        and word not in ANIMAL_NOUNS
        and not is_verb_form(word)
        and not banned_words(word)
    )


def _known_place(lower: list[str], start: int, index: int, phrase_len: int, indoor: bool) -> Place | None:
    head = singular(lower[index + phrase_len - 1])
    phrase = " ".join(lower[start : index + phrase_len])
    lead = _lead_word(lower, start)
    if lead in ("under", "beneath") and head in _SKY:
        return None  # "dances under the moon": the light of the scene, not where it is
    preposition = ""
    following = lower[index + phrase_len] if index + phrase_len < len(lower) else ""
    if lead in _POSITION_LEADS and following not in _PLACE_PARTS:
        preposition = lead  # "under the old oak", "by the fireplace"
        indoor = indoor and lead not in ("outside", "behind", "above")  # outside the station: out of doors
    return Place(phrase, head, indoor, position=index, preposition=preposition, end=index + phrase_len)


def _lead_word(lower: list[str], start: int) -> str:
    cursor = start - 1
    while cursor >= 0 and lower[cursor] in DETERMINERS:
        cursor -= 1
    return lower[cursor] if cursor >= 0 else ""


def _has_place_lead(lower: list[str], start: int) -> bool:
    """Whether a preposition or a verb of going leads to the place phrase starting at ``start``."""
    cursor = start - 1
    skipped = 0
    while (
        cursor >= 0
        and skipped < 3
        and (
            lower[cursor] in DETERMINERS
            or lower[cursor] in PLACE_ADJECTIVES
            or lower[cursor] in DESCRIPTOR_ADJECTIVES
            or lower[cursor].endswith("'s")
        )
    ):
        cursor, skipped = cursor - 1, skipped + 1
    if cursor < 0:
        return False
    lead = lower[cursor]
    if lead == "at" and cursor > 0 and lower[cursor - 1] in _AIMING_VERBS:
        return False
    return (
        lead in LOCATIVE_PREPOSITIONS
        or lead in DIRECTIONAL_PREPOSITIONS
        or lead in _PLACE_VERBS
        or lead in MOVEMENT_VERBS
        or lead in _POSITION_LEADS
        or lead in ("from", "back", "aboard", "within", "out", "down", "up")
    )


def _place_at(lower: list[str], index: int) -> tuple[int, bool]:
    """(number of words, indoors) of the known place starting at ``index``; (0, False) when there is none."""
    if index + 1 < len(lower):
        pair = f"{lower[index]} {lower[index + 1]}"
        if pair in MULTIWORD_PLACES:
            return 2, MULTIWORD_PLACES[pair]
    word = lower[index]
    if index > 0 and _plural_noun(lower[index - 1]):
        return 0, False  # "the ships pass", "the villagers camp": a verb here, not a place
    if word == "home" and (index == 0 or not (lower[index - 1] in MOVEMENT_VERBS or lower[index - 1] in _HOME_LEADS)):
        return 0, False  # "radios home" is not a scene at home; "returns home", "at home" are
    if word in PLACES:
        # "the village elder" is a person, not a place: a place word followed by a person or animal noun is not one.
        following = lower[index + 1] if index + 1 < len(lower) else ""
        if following in PERSON_NOUNS or following in ANIMAL_NOUNS:
            return 0, False
        if following in PLACES and following not in ("space",) and _place_at(lower, index + 1)[0] == 1:
            return 2, PLACES[following]  # "village marketplace", "palace kitchen"
        return 1, PLACES[word]
    return 0, False


def _plural_noun(word: str) -> bool:
    return (
        len(word) > 3
        and word.endswith("s")
        and not word.endswith(("ss", "us", "'s"))
        and word not in STOPWORDS
        and word not in PLACES
        and word not in PLACE_ADJECTIVES
        and word not in DESCRIPTOR_ADJECTIVES
        and not is_verb_form(word)
    )


def _pattern_place(lower: list[str], index: int) -> Place | None:
    """A place the word lists do not know, from "in/into/at/under/to the <noun>" (e.g. "in the greenhouse")."""
    lead = lower[index]
    if lead not in _PATTERN_LEADS or index + 2 >= len(lower):
        return None
    article = lower[index + 1]
    if article != "the" and not (article in ("a", "an") and lead in ("in", "inside", "into")):
        return None  # "in a junkyard" is somewhere; "to a friend" or "at a glance" is not
    if lead == "at" and index > 0 and lower[index - 1] in _AIMING_VERBS:
        return None
    if lead in _TOWARD and not any(word in MOVEMENT_VERBS for word in lower[:index]):
        return None  # "tells it to the king", "listens to the music": no one goes anywhere
    cursor = index + 2
    while cursor < len(lower) - 1 and lower[cursor] in PLACE_ADJECTIVES:
        cursor += 1
    noun = lower[cursor]
    if not _could_be_place(noun) or _place_at(lower, cursor)[0] or noun in PLACES:
        return None  # not a place, or one the word lists know (found with its own wording)
    if cursor + 1 < len(lower) and is_word(lower[cursor + 1]) and lower[cursor + 1] not in STOPWORDS:
        return None  # "in the old man's ..." or an unknown compound: too unsure to call it a place
    preposition = lead if lead in _POSITION_LEADS else "at" if lead in ("at", *_TOWARD) else ""
    phrase = " ".join(lower[index + 2 : cursor + 1])
    return Place(phrase, singular(noun), indoor=False, position=index + 2, preposition=preposition, end=cursor + 1)


def _could_be_place(noun: str) -> bool:
    return not (
        not is_word(noun)
        or not noun.isalpha()
        or noun in STOPWORDS
        or noun in GENERIC_NOUNS
        or noun in LIGHTING
        or noun in PERSON_NOUNS
        or noun in ANIMAL_NOUNS
        or noun in ABSTRACT_NOUNS
        or noun in WEATHER_OR_NATURE
        or noun in _SMALL_THINGS
        or is_verb_form(noun)
        or bool(banned_words(noun))
    )


def _merge_adjacent(places: list[Place]) -> list[Place]:
    merged: list[Place] = []
    for place in places:
        if (
            merged
            and merged[-1].position + len(merged[-1].phrase.split()) >= place.position
            and place.head == merged[-1].head
        ):
            continue
        merged.append(place)
    return merged


def _compounds(lower: list[str], places: list[Place]) -> list[Place]:
    """ "its den under an old oak": one place, the den, described by where it is."""
    out: list[Place] = []
    for place in places:
        previous = out[-1] if out else None
        if previous is not None and previous.end and _links(lower, previous.end, place):
            link = lower[previous.end]
            out[-1] = Place(
                f"{previous.phrase} {link} the {place.phrase}",
                previous.head,
                previous.indoor,
                previous.position,
                previous.preposition,
                place.end,
            )
            continue
        out.append(place)
    return out


def _links(lower: list[str], end: int, following: Place) -> bool:
    if end >= len(lower) or lower[end] not in _COMPOUND_LINKS:
        return False
    cursor = end + 1
    while cursor < len(lower) and lower[cursor] in DETERMINERS:
        cursor += 1
    first_word = following.position - (len(following.phrase.split()) - 1)
    return cursor <= following.position and cursor >= first_word - 2


# ---------------------------------------------------------------------------------------------------------------
# Time of day and weather


def find_lighting(text: str) -> str | None:
    """The lighting the first time-of-day or weather word in ``text`` calls for, or None."""
    best: tuple[int, str] | None = None
    for word, lighting in LIGHTING.items():
        match = phrase_pattern(word).search(text)
        if match and (best is None or match.start() < best[0]):
            best = (match.start(), lighting)
    return best[1] if best else None


_TIME_PHRASE = re.compile(
    r"\b(?:at|in|during|by|before|after|until|till|under|early in|late in|later that|that|this|one|each|every|all)\s+"
    r"(?:the\s+)?(?:(?:setting|rising|golden|late|early|first|cold|dark|starry|quiet)\s+)?"
    r"(?:"
    + "|".join(sorted((re.escape(w) for w in LIGHTING if " " not in w), key=len, reverse=True))
    + r"|golden hour)\b",
    re.IGNORECASE,
)


def strip_time_phrases(text: str) -> str:
    """``text`` without "at sunset", "in the morning", "under the stars": the frame's lighting carries those."""
    return tidy(_TIME_PHRASE.sub(" ", text))
