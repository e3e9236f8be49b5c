"""Reading a story: its beats, places, times of day, moods, characters and recurring objects.

No language model and no network: sentence and clause splitting, word lists and a few patterns. The result,
``StoryFacts``, is what the offline planner draws from and what the rule checker judges every plan against,
whichever backend wrote it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from services.planner.banned import banned_words, strip_banned
from services.planner.characters import Character
from services.planner.lexicon import (
    ANIMAL_NOUNS,
    APPEARANCE_ADJECTIVES,
    COMMON_VERBS,
    DEFAULT_INDOOR_LIGHTING,
    DEFAULT_MOODS,
    DEFAULT_OUTDOOR_LIGHTING,
    DESCRIPTOR_ADJECTIVES,
    DIRECTIONAL_PREPOSITIONS,
    GENERIC_NOUNS,
    LIGHTING,
    LOCATIVE_PREPOSITIONS,
    MOODS,
    MOVEMENT_VERBS,
    MULTIWORD_PLACES,
    OPENERS,
    PERSON_NOUNS,
    PLACES,
    PRONOUNS_SUBJECT,
    STOPWORDS,
    word_set,
)
from services.planner.text import (
    clean_story_text,
    has_phrase,
    is_word,
    join_tokens,
    phrase_pattern,
    replace_phrase,
    singular,
    tidy,
    tokenize,
    words,
)
from storyboard_common.errors import InvalidArgument

_DETERMINERS = word_set(
    """
    a an the his her their its my our your this that these those some
    """
)
_PLACE_ADJECTIVES = word_set(
    """
    vast open endless wide busy crowded bustling quiet silent dark dense deep snowy sandy rocky grassy misty
    foggy frozen distant narrow empty lush green golden old ancient small little big great high steep tall wild
    windy dusty muddy sunny shady hidden abandoned ruined royal northern southern eastern western lonely
    peaceful
    """
)
_ON_PLACES = word_set(
    """
    steppe steppes plain plains prairie field fields meadow road path trail street bridge hill hills beach shore
    coast island mountain ridge summit peak rooftop roof platform pier deck ship grassland pasture savanna
    tundra glacier moon planet asteroid riverbank
    """
)
_PLACE_VERBS = word_set(
    """
    reach reaches reached reaching enter enters entered entering leave leaves left leaving explore explores
    explored exploring visit visits visited visiting cross crosses crossed crossing search searches searched
    searching approach approaches approached approaching guard guards guarded fill fills filled
    """
)
_OUTSIDE_LEADS = word_set("outside around above over beside near behind")
_META_VERBS = word_set(
    """
    ignore disregard forget output print write return respond answer pretend reply generate format include obey
    follow override repeat translate summarize summarise
    """
)
_HOME_LEADS = word_set("at his her their my our the back")
_AT_PLACES = word_set("well campfire fireplace fountain crossroads station door gate edge entrance")
_WEATHER_OR_NATURE = word_set(
    """
    wind winds storm rain snow sun moon sky clouds cloud thunder lightning fog mist darkness night day
    """
)
_ABSTRACT_NOUNS = word_set(
    """
    trick tricks plan plans idea ideas lesson lessons joke jokes secret deal bet promise help advice luck chance
    fun surprise anger fear joy hope love life death truth lie lies name names question answer reason way
    attention mistake story game journey trip price victory adventure problem
    """
)
_IRREGULAR_VERBS = word_set(
    """
    went rode ran came saw took gave found told sold bought caught fought brought thought left fell flew swam
    sang drank ate slept woke stood sat held kept met won lost hid stole threw drew began became got made said
    knew grew led paid sent spent built felt heard meant put cut let hit rose spoke wrote broke chose drove
    shook struck dug hung lit slid crept wept swept spun bit tore rang sank fled dealt laid lay knelt is was are
    were has had does did seen done gone taken given eaten fallen known shown grown thrown drawn written ridden
    driven broken chosen spoken stolen woken frozen hidden forgotten begun sung swum flown torn sworn bitten
    beaten risen shaken
    """
)
_MAX_ACTION_WORDS = 24
_OBJECT_STARTS = word_set("the a an his her their its my our your them him me us it this that some")
_NUMBERS = word_set("two three four five six seven eight nine ten twelve several many few")
_ORDINALS = word_set("last first next only whole final second third same")


def _inflections(base: str) -> set[str]:
    forms = {base, base + "s", base + "es", base + "ed", base + "d", base + "ing"}
    if base.endswith("e"):
        forms |= {base[:-1] + "ing", base + "d"}
    if base.endswith("y"):
        forms |= {base[:-1] + "ies", base[:-1] + "ied"}
    if len(base) >= 3 and base[-1] not in "aeiouwyx" and base[-2] in "aeiou" and base[-3] not in "aeiou":
        forms |= {base + base[-1] + "ed", base + base[-1] + "ing"}
    return forms


_VERB_FORMS = frozenset(
    {form for base in COMMON_VERBS for form in _inflections(base)} | MOVEMENT_VERBS | _IRREGULAR_VERBS
)


def is_verb_form(word: str) -> bool:
    """Whether ``word`` is (probably) a verb: a known verb in any common inflection."""
    return word.lower() in _VERB_FORMS


def acts_here(words_: list[str], index: int) -> bool:
    """Whether ``words_[index]`` is a verb here: a known one, or an unknown "-s"/"-ed" word that a determiner,
    pronoun or preposition follows ("the detective examines the footprints")."""
    word = words_[index].lower()
    if is_verb_form(word):
        return True
    following = words_[index + 1].lower() if index + 1 < len(words_) else ""
    return (
        len(word) > 3
        and word.endswith(("s", "ed"))
        and not word.endswith(("ss", "us", "'s"))
        and word not in PERSON_NOUNS
        and word not in ANIMAL_NOUNS
        and word not in PLACES
        and (following in _OBJECT_STARTS or following == "")
    )


@dataclass(frozen=True)
class Place:
    """A place the story names: the phrase used for it, its head noun and whether it is indoors."""

    phrase: str
    head: str
    indoor: bool
    position: int = 0
    preposition: str = ""  # how a description puts something there, when the place's head does not say

    def located(self) -> str:
        """The place with the preposition a description uses: "on the vast steppe", "in the yurt"."""
        if self.preposition:
            return f"{self.preposition} the {self.phrase}"
        if self.head in _ON_PLACES:
            return f"on the {self.phrase}"
        if self.head in _AT_PLACES:
            return f"at the {self.phrase}"
        return f"in the {self.phrase}"


@dataclass
class Entity:
    """A character or object the story mentions, with the one descriptor every frame must use for it."""

    head: str
    modifiers: tuple[str, ...]
    kind: str  # "person", "animal" or "object"
    mentions: int = 1
    position: int = 0

    @property
    def descriptor(self) -> str:
        return " ".join((*self.modifiers, self.head))


@dataclass
class Beat:
    """One thing that happens in the story, ready to be drawn."""

    action: str
    setting: Place
    lighting: str
    mood: str
    destination: Place | None = None
    moving: bool = False
    subject_is_main: bool = True
    place_named: bool = False  # the story names the place in this beat (rather than the planner inferring it)
    others: list[str] = field(default_factory=list)  # descriptors or trigger tokens of other characters present
    objects: list[str] = field(default_factory=list)  # descriptors of objects present
    characters: list[str] = field(default_factory=list)  # trigger tokens of registered characters present


@dataclass
class Cast:
    """Who the plan features: the registered characters (main first) and how descriptions name the main one."""

    characters: list[Character]
    main_ref: str  # a trigger token, or a descriptor such as "young fox"; "" when the story has no character
    main_character: Character | None = None

    @property
    def main_phrase(self) -> str:
        """How a description names the main character: its trigger token, its name, or "the young fox"."""
        if not self.main_ref or self.main_character is not None or self.main_ref[:1].isupper():
            return self.main_ref
        return f"the {self.main_ref}"

    @property
    def main_possessive(self) -> str:
        """ "aldar_kose_man's", "the two kids'"."""
        phrase = self.main_phrase
        if self.main_character is None and phrase.endswith("s") and not phrase.endswith("ss"):
            return f"{phrase}'"
        return f"{phrase}'s"

    @property
    def trigger_tokens(self) -> list[str]:
        return [character.trigger_token for character in self.characters]

    def person_refs(self) -> set[str]:
        """Words that name a person of this cast, for telling appearance words about people from others."""
        refs = {word for character in self.characters for word in character.name_words}
        if self.main_ref:
            refs.update(word.lower() for word in self.main_ref.split())
        return refs


@dataclass
class StoryFacts:
    """What the planner and the rule checker know about a story."""

    story: str
    cast: Cast
    beats: list[Beat]
    places: list[Place]
    entities: dict[str, Entity]
    key_elements: list[str]  # descriptors frame 1 shows besides the main character
    warnings: list[str] = field(default_factory=list)

    def story_mentions_place(self, text: str) -> bool:
        """Whether the story itself names a place that ``text`` (a setting) also names."""
        heads = {place.head for place in self.places} | {
            singular(w) for place in self.places for w in words(place.phrase)
        }
        return any(singular(word) in heads or has_phrase(self.story, word) for word in _setting_nouns(text))


def _setting_nouns(text: str) -> list[str]:
    return [
        word
        for word in words(text)
        if word not in STOPWORDS and word not in _PLACE_ADJECTIVES and word not in DESCRIPTOR_ADJECTIVES
    ]


# ---------------------------------------------------------------------------------------------------------------
# Beats


_CLAUSE_BREAKS = re.compile(
    r",\s*(?:and\s+)?then\s+|\s+and\s+then\s+|(?<=\w)\s+then\s+|,\s*but\s+|\s*;\s*|,\s*(?:and\s+)?finally\s+"
    r"|,\s*so\s+|,\s*while\s+",
    re.IGNORECASE,
)
_SUBORDINATE_START = re.compile(r"^(when|as|after|before|once|while|because|since|as soon as)\b", re.IGNORECASE)


def split_beats(story: str) -> list[str]:
    """The story cut into sentences and clauses, each one thing that happens."""
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", story) if s.strip()]
    clauses: list[str] = []
    for sentence in sentences:
        sentence = sentence.rstrip(".!?").strip()
        if _SUBORDINATE_START.match(sentence) and "," in sentence:
            head, tail = sentence.split(",", 1)
            parts = [head, *_CLAUSE_BREAKS.split(tail)]
        else:
            parts = _CLAUSE_BREAKS.split(sentence)
        for part in parts:
            for piece in _split_on_commas(part.strip(" ,")):
                clauses.extend(_split_on_and(piece))
    beats: list[str] = []
    for clause in clauses:
        if len(words(clause)) < 2 and beats:
            beats[-1] = f"{beats[-1]} {clause}"
        elif words(clause):
            beats.append(clause)
    return beats


def _split_on_commas(clause: str) -> list[str]:
    """Split "finds an oasis, rests under a palm tree, and reaches the city" into its actions."""
    segments = [segment.strip() for segment in clause.split(",")]
    pieces: list[str] = []
    for segment in segments:
        body = re.sub(r"^(?:and|then)\s+", "", segment, flags=re.IGNORECASE)
        segment_words = words(body)
        acts = any(is_verb_form(word) for word in segment_words)
        if pieces and acts and len(segment_words) >= 2 and any(is_verb_form(w) for w in words(pieces[-1])):
            pieces.append(body)
        elif pieces:
            pieces[-1] = f"{pieces[-1]}, {segment}"
        else:
            pieces.append(segment)
    return [piece for piece in pieces if piece]


def _split_on_and(clause: str) -> list[str]:
    """Split "rides to the market and sells the pot" where "and" starts a new verb phrase."""
    tokens = clause.split()
    for index, token in enumerate(tokens):
        if token.lower().strip(",") != "and" or index < 3 or index + 1 >= len(tokens):
            continue
        following = tokens[index + 1].lower().strip(",.")
        if following.endswith("ly") and index + 2 < len(tokens):
            following = tokens[index + 2].lower().strip(",.")
        before = tokens[:index]
        if is_verb_form(following) and any(is_verb_form(t.lower().strip(",")) for t in before):
            return [" ".join(before).strip(" ,"), *_split_on_and(" ".join(tokens[index + 1 :]))]
    return [clause] if clause else []


# ---------------------------------------------------------------------------------------------------------------
# Places, light, mood


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
            start = index
            while start > 0 and lower[start - 1] in _PLACE_ADJECTIVES and index - start < 2:
                start -= 1
            phrase_words = lower[start : index + phrase_len]
            head = singular(lower[index + phrase_len - 1])
            if not strict or _has_place_lead(lower, start):
                place = Place(" ".join(phrase_words), head, indoor, position=index)
                if indoor and _lead_word(lower, start) in _OUTSIDE_LEADS:
                    place = Place(place.phrase, head, False, index, preposition="outside")  # outside the station
                found.append(place)
            index += phrase_len
            continue
        place = _pattern_place(lower, index)
        if place is not None:
            found.append(place)
        index += 1
    return _merge_adjacent(found)


def _lead_word(lower: list[str], start: int) -> str:
    cursor = start - 1
    while cursor >= 0 and lower[cursor] in _DETERMINERS:
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
            lower[cursor] in _DETERMINERS
            or lower[cursor] in _PLACE_ADJECTIVES
            or lower[cursor] in DESCRIPTOR_ADJECTIVES
            or lower[cursor].endswith("'s")
        )
    ):
        cursor, skipped = cursor - 1, skipped + 1
    if cursor < 0:
        return False
    lead = lower[cursor]
    return (
        lead in LOCATIVE_PREPOSITIONS
        or lead in DIRECTIONAL_PREPOSITIONS
        or lead in _PLACE_VERBS
        or lead in MOVEMENT_VERBS
        or lead in ("from", "back", "aboard", "within", "out", "down", "up")
    )


def _place_at(lower: list[str], index: int) -> tuple[int, bool]:
    """(number of words, indoors) of the known place starting at ``index``; (0, False) when there is none."""
    if index + 1 < len(lower):
        pair = f"{lower[index]} {lower[index + 1]}"
        if pair in MULTIWORD_PLACES:
            return 2, MULTIWORD_PLACES[pair]
    word = lower[index]
    if word == "home" and (index == 0 or not (lower[index - 1] in MOVEMENT_VERBS or lower[index - 1] in _HOME_LEADS)):
        return 0, False  # "radios home" is not a scene at home; "returns home", "at home" are
    if word in PLACES:
        # "the village elder" is a person, not a place: a place word followed by a person or animal noun is not one.
        if index + 1 < len(lower) and (lower[index + 1] in PERSON_NOUNS or lower[index + 1] in ANIMAL_NOUNS):
            return 0, False
        if index + 1 < len(lower) and lower[index + 1] in PLACES and lower[index + 1] not in ("space",):
            return 2, PLACES[lower[index + 1]]  # "village marketplace", "palace kitchen"
        return 1, PLACES[word]
    return 0, False


def _pattern_place(lower: list[str], index: int) -> Place | None:
    """A place the word lists do not know, from "in/inside/into/at the <noun>" (e.g. "in the greenhouse")."""
    if lower[index] not in ("in", "inside", "into", "at") or index + 2 >= len(lower) or lower[index + 1] != "the":
        return None
    cursor = index + 2
    while cursor < len(lower) - 1 and lower[cursor] in _PLACE_ADJECTIVES:
        cursor += 1
    noun = lower[cursor]
    if (
        not is_word(noun)
        or noun in STOPWORDS
        or noun in GENERIC_NOUNS
        or noun in LIGHTING
        or noun in PERSON_NOUNS
        or noun in ANIMAL_NOUNS
        or noun in _ABSTRACT_NOUNS
        or noun in _WEATHER_OR_NATURE
        or is_verb_form(noun)
        or banned_words(noun)
    ):
        return None
    if cursor + 1 < len(lower) and is_word(lower[cursor + 1]) and lower[cursor + 1] not in STOPWORDS:
        return None  # "in the old man's ..." or an unknown compound: too unsure to call it a place
    return Place(" ".join(lower[index + 2 : cursor + 1]), singular(noun), indoor=False, position=index + 2)


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


def find_lighting(text: str) -> str | None:
    """The lighting the first time-of-day or weather word in ``text`` calls for, or None."""
    best: tuple[int, str] | None = None
    for word, lighting in LIGHTING.items():
        match = phrase_pattern(word).search(text)
        if match and (best is None or match.start() < best[0]):
            best = (match.start(), lighting)
    return best[1] if best else None


def find_mood(text: str) -> str | None:
    """The mood the words of ``text`` suggest, or None."""
    text_words = set(words(text))
    for mood, cue_words in MOODS:
        if text_words & cue_words:
            return mood
    return None


_TIME_PHRASE = re.compile(
    r"\b(?:at|in|during|by|before|after|until|till|under|early in|late in|later that|that|this|one|each|every)\s+"
    r"(?:the\s+)?(?:(?:setting|rising|golden|late|early|first|cold|dark|starry|quiet)\s+)?"
    r"(?:"
    + "|".join(sorted((re.escape(w) for w in LIGHTING if " " not in w), key=len, reverse=True))
    + r"|golden hour)\b",
    re.IGNORECASE,
)


def strip_time_phrases(text: str) -> str:
    """``text`` without "at sunset", "in the morning", "under the stars": the frame's lighting carries those."""
    return tidy(_TIME_PHRASE.sub(" ", text))


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


# ---------------------------------------------------------------------------------------------------------------
# Characters and objects


def find_entities(text: str, person_refs: set[str]) -> dict[str, Entity]:
    """Characters and objects introduced with a determiner ("a wealthy merchant", "his brown horse"), by head noun.

    Each keeps the descriptor with the most adjectives the story gives it. A head described two different ways
    ("a white horse", "a black horse") is two things, so it is not tracked at all.
    """
    tokens = [token.lower() for token in tokenize(text)]
    entities: dict[str, Entity] = {}
    ambiguous: set[str] = set()
    for index, token in enumerate(tokens):
        if token not in _DETERMINERS and not token.endswith("'s"):
            continue
        phrase = _noun_phrase(tokens, index + 1)
        if phrase is None:
            continue
        modifiers, head = phrase
        head_key = singular(head)
        if _not_an_entity(head, person_refs):
            continue
        if head in PERSON_NOUNS or head_key in PERSON_NOUNS:
            modifiers = tuple(m for m in modifiers if m not in APPEARANCE_ADJECTIVES)
        kind = "person" if head in PERSON_NOUNS else "animal" if head in ANIMAL_NOUNS else "object"
        known = entities.get(head)
        if known is None:
            entities[head] = Entity(head, modifiers, kind, mentions=0, position=index)
        elif modifiers and known.modifiers and not _compatible(set(modifiers), set(known.modifiers)):
            ambiguous.add(head)
        if modifiers and len(modifiers) > len(entities[head].modifiers):
            entities[head].modifiers = modifiers
    for index, token in enumerate(tokens):
        bare = token in PERSON_NOUNS or token in ANIMAL_NOUNS
        if bare and token not in entities and token not in person_refs:
            entities[token] = Entity(token, (), "person" if token in PERSON_NOUNS else "animal", 0, index)
    for head, entity in entities.items():
        entity.mentions = len(phrase_pattern(head).findall(text))
    return {head: entity for head, entity in entities.items() if head not in ambiguous}


def _compatible(first: set[str], second: set[str]) -> bool:
    """Whether two descriptions can be of one thing ("horse" / "brown horse" yes, "white" / "black" no)."""
    return first <= second or second <= first


def _noun_phrase(tokens: list[str], start: int) -> tuple[tuple[str, ...], str] | None:
    modifiers: list[str] = []
    cursor = start
    while cursor < len(tokens) and tokens[cursor] in _ORDINALS:
        cursor += 1  # "the last loaf": "last" says which, not what it looks like
    while cursor < len(tokens) and (tokens[cursor] in DESCRIPTOR_ADJECTIVES or tokens[cursor] in APPEARANCE_ADJECTIVES):
        modifiers.append(tokens[cursor])
        cursor += 1
    if cursor >= len(tokens) or not is_word(tokens[cursor]):
        return None
    head = tokens[cursor].removesuffix("'s")
    following = tokens[cursor + 1] if cursor + 1 < len(tokens) else ""
    if following in PLACES or f"{head} {following}" in MULTIWORD_PLACES:
        return None  # part of a place ("the silent space station")
    if following in PERSON_NOUNS or following in ANIMAL_NOUNS:
        modifiers.append(head)  # "the village elder"
        head = following
    elif (
        _adjective_like(head)
        and head not in PERSON_NOUNS
        and is_word(following)
        and following not in STOPWORDS
        and not is_verb_form(following)
    ):
        modifiers.append(head)  # "a sleeping dragon", "the retired baker"
        head = following.removesuffix("'s")
    if not modifiers and head in DESCRIPTOR_ADJECTIVES:
        return None
    return tuple(modifiers), head


def _adjective_like(word: str) -> bool:
    suffixes = ("ous", "ful", "ive", "ic", "al", "ent", "ant", "less", "ish", "ing", "ed", "y")
    return len(word) > 4 and word.endswith(suffixes)


def _not_an_entity(head: str, person_refs: set[str]) -> bool:
    return (
        head in STOPWORDS
        or head in person_refs
        or head in GENERIC_NOUNS
        or head in _ABSTRACT_NOUNS
        or head in _WEATHER_OR_NATURE
        or head in LIGHTING
        or head in PLACES
        or singular(head) in PLACES
        or is_verb_form(head)
        or bool(banned_words(head))
        or len(head) < 3
        or not head.isalpha()
    )


def first_subject(sentence: str) -> str | None:
    """The noun phrase a sentence starts with ("The old fisherman rows..." -> "old fisherman"), or None."""
    tokens = [token for token in tokenize(strip_openers(sentence)) if is_word(token)]
    if not tokens:
        return None
    original = tokens
    lower = [token.lower() for token in tokens]
    if lower[0] in PRONOUNS_SUBJECT or lower[0] in ("i", "we", "you"):
        return None
    if (
        original[0][0].isupper()
        and lower[0] not in _DETERMINERS
        and lower[0] not in STOPWORDS
        and lower[0] not in _NUMBERS
    ):
        name = [original[0]]
        for token in original[1:3]:
            if token[0].isupper():
                name.append(token)
            else:
                break
        if not is_verb_form(lower[0]):
            return " ".join(name)
    start = 1 if lower[0] in _DETERMINERS else 0
    phrase: list[str] = []
    for index in range(start, min(len(lower), start + 4)):
        word = lower[index]
        if word in STOPWORDS or (phrase and acts_here(lower, index)) or (not phrase and is_verb_form(word)):
            break
        phrase.append(word)
    if not phrase:
        return None
    head = phrase[-1]
    if head in _WEATHER_OR_NATURE or head in PLACES or head in GENERIC_NOUNS or head in LIGHTING:
        return None
    kept = [word for word in phrase[:-1] if word not in APPEARANCE_ADJECTIVES and not banned_words(word)]
    return " ".join([*kept, head])


# ---------------------------------------------------------------------------------------------------------------
# The whole analysis


def analyse_story(story: str, mentioned: list[Character], requested: list[Character]) -> StoryFacts:
    """Read ``story``: cast, beats with their setting, lighting and mood, recurring objects and key elements.

    ``mentioned`` are the registered characters the story names (in order); ``requested`` those the caller asked to
    feature, which take precedence and may include characters the story does not name.
    """
    text = clean_story_text(_without_dialogue(story))
    if not any(token[0].isalpha() for token in tokenize(text) if is_word(token)):
        raise InvalidArgument("story", "has no words to draw a storyboard from")
    warnings: list[str] = []
    cast, text = _cast(text, mentioned, requested)
    person_refs = cast.person_refs()
    entities = find_entities(text, person_refs)
    if cast.main_ref and cast.main_character is None:
        main_words = cast.main_ref.split()
        entities.pop(main_words[-1].lower(), None)
        entities[main_words[-1].lower()] = Entity(main_words[-1], tuple(main_words[:-1]), "person", mentions=2)
    places = find_places(text) or find_places(text, strict=False)
    places = list({place.head: place for place in reversed(places)}.values())[::-1]  # first wording of each place
    if not places:
        fallback = _fallback_place(text)
        places = [fallback]
        warnings.append(
            f"the story names no place, so every frame is set in '{fallback.phrase}'; name a place to choose one"
        )
    place_words = {word for place in places for word in place.phrase.split()} | {place.head for place in places}
    entities = {head: entity for head, entity in entities.items() if singular(head) not in place_words}
    beats, dropped = _beats(text, cast, places, entities, strict=bool(find_places(text)))
    if dropped:
        warnings.append(f"left out {dropped} sentence(s) that read as instructions rather than story")
    key_elements = _key_elements(entities, beats, cast)
    return StoryFacts(story, cast, beats, places, entities, key_elements, warnings)


_QUOTED = re.compile(r"[“\"][^”\"]{0,300}[”\"]\s*")
_SPEECH_VERBS = "said|says|shouted|shouts|cried|cries|asked|asks|whispered|whispers|called|calls|yelled|yells|replied"
_INVERTED_SPEECH = re.compile(rf"(^|[.!?]\s+|,\s*)({_SPEECH_VERBS})\s+((?:[A-Z]\w+\s*){{1,3}}|\w+_\w+)", re.I)


def _without_dialogue(story: str) -> str:
    """The story without quoted speech, which no frame can draw ("'Wait!' shouted Tomas" -> "Tomas shouted")."""
    text = _QUOTED.sub(" ", story).strip()
    return _INVERTED_SPEECH.sub(lambda m: f"{m.group(1)}{m.group(3).strip()} {m.group(2)} ", text)


def _cast(text: str, mentioned: list[Character], requested: list[Character]) -> tuple[Cast, str]:
    featured = list(requested) if requested else list(mentioned)
    for character in featured:
        for name in character.names:
            text = replace_phrase(text, name, character.trigger_token)
    if featured:
        named = [c for c in featured if c.first_mention(text) is not None]
        main = named[0] if named else featured[0]
        ordered = [main, *[c for c in featured if c is not main]]
        if not named:
            # The caller asked for a character the story does not name: its first subject becomes that character.
            subject = first_subject(text)
            if subject:
                text = _replace_first_subject(text, subject, main.trigger_token)
        return Cast(ordered, main.trigger_token, main), _drop_appositive(text, main.trigger_token)
    subject = first_subject(text)
    if subject:
        text = _drop_appositive(text, subject)
    return Cast([], subject or "", None), text


def _drop_appositive(text: str, ref: str) -> str:
    """ "Maria, a retired baker, opens her shop" -> "Maria opens her shop": the appositive is no second person."""
    text = re.sub(rf"({re.escape(ref)}),\s+(?:a|an|the)\s+[^,.;]{{1,40}},\s*", r"\1 ", text, count=1)
    nouns = "|".join(sorted(PERSON_NOUNS | ANIMAL_NOUNS))
    return re.sub(rf"\b({re.escape(ref)})\s+the\s+(?:\w+\s+)?(?:{nouns})\b", r"\1", text, count=1, flags=re.I)


def _replace_first_subject(text: str, subject: str, replacement: str) -> str:
    pattern = re.compile(r"^(?:(?:a|an|the)\s+)?(?:\w+\s+){0,3}?" + re.escape(subject.split()[-1]) + r"\b", re.I)
    stripped = strip_openers(text)
    return pattern.sub(replacement, stripped, count=1)


_FALLBACK_PLACES: list[tuple[frozenset[str], Place]] = [
    (
        word_set(
            """
    robot robots astronaut spaceship planet alien aliens rocket galaxy laser lasers
    """
        ),
        Place("space station", "station", indoor=True),
    ),
    (
        word_set("pirate pirates sail sails sailed boat waves captain anchor"),
        Place("open sea", "sea", indoor=False),
    ),
    (
        word_set("chef cook cooks soup stove oven bakes baked recipe dish pan"),
        Place("kitchen", "kitchen", indoor=True),
    ),
    (
        word_set("teacher student students lesson homework exam pupils"),
        Place("classroom", "classroom", indoor=True),
    ),
    (
        word_set("desk computer laptop meeting email phone boss presentation"),
        Place("office", "office", indoor=True),
    ),
    (
        word_set("king queen prince princess throne knight emperor"),
        Place("palace hall", "hall", indoor=True),
    ),
    (
        word_set("merchant bai trader gold coins sack bargain sells buys"),
        Place("busy bazaar", "bazaar", indoor=False),
    ),
]


def _fallback_place(text: str) -> Place:
    """A place for a story that names none, from what its words suggest."""
    lowered = set(words(text))
    for cues, place in _FALLBACK_PLACES:
        if lowered & cues:
            return place
    return Place("open countryside", "countryside", indoor=False)


def _beats(
    text: str, cast: Cast, places: list[Place], entities: dict[str, Entity], strict: bool = True
) -> tuple[list[Beat], int]:
    canonical = {place.head: place for place in places}
    raw, dropped = _story_beats(text, cast)
    # A time of day named in the first beat holds from the start; one named later starts where it is named.
    story_lighting = find_lighting(raw[0]) if raw else None
    lighting_now = None
    setting_now = places[0]
    pending: Place | None = None  # where the story is heading, until it gets there
    beats: list[Beat] = []
    subject_now = cast.main_ref
    group_now = ""
    for position, clause in enumerate(raw):
        clause_places = [_canonical(place, canonical) for place in find_places(clause, strict)]
        destination = _destination(clause, clause_places)
        here = [p for p in clause_places if destination is None or p is not destination]
        moving = any(word in MOVEMENT_VERBS for word in words(clause))
        if here:
            setting_now, pending = here[0], None
        elif pending is not None and not moving:
            setting_now, pending = pending, None  # the next thing that happens there: the story has arrived
        elif destination is not None and position == 0:
            setting_now = _on_the_way(destination, clause)
        if destination is not None and destination.head != setting_now.head:
            pending = destination
        lighting_now = find_lighting(clause) or lighting_now or story_lighting
        action, subject_now = _action_text(clause, cast, subject_now, entities, group_now)
        if group_of(subject_now, cast):
            group_now = subject_now
        beat = Beat(
            action=action,
            setting=setting_now,
            lighting=lighting_now or (DEFAULT_INDOOR_LIGHTING if setting_now.indoor else DEFAULT_OUTDOOR_LIGHTING),
            mood=find_mood(clause) or "",
            destination=destination if destination is not None and destination.head != setting_now.head else None,
            moving=moving,
            subject_is_main=has_phrase(subject_now, cast.main_ref) if cast.main_ref else False,
            place_named=bool(clause_places),
        )
        _people_and_objects(beat, action, cast, entities)
        beats.append(beat)
    _fill_moods(beats)
    return beats, dropped


def _story_beats(text: str, cast: Cast) -> tuple[list[str], int]:
    """The story's beats, without sentences that address the reader rather than tell the story."""
    raw = split_beats(text)
    kept = [beat for beat in raw if not _is_instruction(beat, cast)]
    return (kept, len(raw) - len(kept)) if kept else (raw, 0)


def _is_instruction(clause: str, cast: Cast) -> bool:
    first = (words(clause) or [""])[0]
    return first in _META_VERBS and not any(ref in words(clause) for ref in cast.person_refs())


def _canonical(place: Place, canonical: dict[str, Place]) -> Place:
    known = canonical.get(place.head)
    if known is None:
        return place
    return Place(known.phrase, known.head, known.indoor, place.position, known.preposition)


def _on_the_way(destination: Place, clause: str) -> Place:
    """Where a story that starts by going somewhere begins: on the way there (or at once inside, for "into")."""
    if destination.indoor and has_phrase(clause, "into"):
        return destination
    return Place(f"way to the {destination.phrase}", "way", indoor=False, preposition="on")


def _destination(clause: str, places: list[Place]) -> Place | None:
    lower = [token.lower() for token in tokenize(clause)]
    for place in places:
        before = lower[max(0, place.position - 4) : place.position]
        if any(word in DIRECTIONAL_PREPOSITIONS for word in before) and not any(
            word in LOCATIVE_PREPOSITIONS for word in before[-2:]
        ):
            return place
    return None


_LEADING_PLACE_ADVERB = re.compile(r"^(?:there|here|inside|outside|now|soon)\s+(?=(?:he|she|they)\b)", re.I)
_LEADING_ASIDE = re.compile(r"^([A-Za-z]+(?:\s+[A-Za-z]+){0,2}),\s+")


def _action_text(clause: str, cast: Cast, subject: str, entities: dict[str, Entity], they: str = "") -> tuple[str, str]:
    """The clause as a frame's action: openers and times removed, subject explicit, descriptors unified."""
    text = strip_time_phrases(strip_openers(clause))
    text = re.sub(r"^[A-Z][a-z]+ly,?\s+", "", text)  # "Slowly, he ..." -> "he ..."
    text = _LEADING_PLACE_ADVERB.sub("", text)  # "There he meets ..." -> "he meets ..."
    text = re.sub(r"^(?:as|while|when|and|but|so|because|where|until)\s+", "", text, flags=re.IGNORECASE)
    aside = _LEADING_ASIDE.match(text)
    if aside and not any(_names_someone(word, cast) for word in words(aside.group(1))):
        text = text[aside.end() :]  # "Far away, he laughs" -> "he laughs"
    tokens = text.split()
    if not tokens:
        return subject, subject
    first = tokens[0].lower()
    group = _group_subject(text, cast)
    if first == "they" and they:
        subject = they  # the last group the story named ("Mira and Bolt ... They escape")
        text = f"{subject} {' '.join(tokens[1:])}"
    elif first in PRONOUNS_SUBJECT and first != "it" and (cast.main_ref or subject):
        subject = cast.main_phrase or subject  # the protagonist: stories rarely say "he" of anyone else
        text = f"{subject} {' '.join(tokens[1:])}"
    elif acts_here(tokens, 0) and subject:
        text = f"{subject} {text}"
    elif group:
        subject = group
    else:
        new_subject = first_subject(text)
        if new_subject and cast.main_ref and has_phrase(new_subject, cast.main_ref.split()[-1]):
            subject = cast.main_phrase
        elif tokens[0] in cast.trigger_tokens:
            subject = tokens[0]
        elif new_subject:
            subject = _with_descriptor(new_subject, entities)
    text = apply_descriptors(strip_banned(text, cast.person_refs()), entities)
    text = _lower_first(text)
    action_words = text.split()
    if len(action_words) > _MAX_ACTION_WORDS:
        text = " ".join(action_words[:_MAX_ACTION_WORDS])
    return tidy(text), subject


def _names_someone(word: str, cast: Cast) -> bool:
    """Whether a word of a leading aside makes it more than an aside ("A tall, ...", "Mira, ...")."""
    return (
        is_verb_form(word)
        or word in cast.person_refs()
        or word in _DETERMINERS
        or word in DESCRIPTOR_ADJECTIVES
        or word in APPEARANCE_ADJECTIVES
        or word in PERSON_NOUNS
        or word in ANIMAL_NOUNS
    )


def _group_subject(text: str, cast: Cast) -> str:
    """ "mira_girl and bolt_robot explore ..." -> "mira_girl and bolt_robot"; "" when one character leads."""
    triggers = "|".join(re.escape(token) for token in cast.trigger_tokens)
    if not triggers:
        return ""
    match = re.match(rf"^((?:{triggers})(?:\s*,\s*(?:{triggers}))*\s*,?\s+and\s+(?:{triggers}))\b", text)
    return match.group(1) if match else ""


def group_of(subject: str, cast: Cast) -> list[str]:
    """The trigger tokens of a group subject ("mira_girl and bolt_robot"); empty for a single one."""
    found = [token for token in cast.trigger_tokens if has_phrase(subject, token)]
    return found if len(found) > 1 else []


def _with_descriptor(phrase: str, entities: dict[str, Entity]) -> str:
    head = phrase.split()[-1].lower()
    return entities[head].descriptor if head in entities else phrase


def _lower_first(text: str) -> str:
    if text and text[0].isupper() and (len(text) == 1 or not text[1].isupper()):
        first = text.split(" ", 1)[0]
        if first.lower() in STOPWORDS or first.lower() in _NUMBERS:
            return text[0].lower() + text[1:]
    return text


def apply_descriptors(text: str, entities: dict[str, Entity]) -> str:
    """``text`` with every tracked head noun carrying its one descriptor ("his horse" -> "his brown horse")."""
    tokens = tokenize(text)
    out: list[str] = []
    for token in tokens:
        head = token.lower()
        entity = entities.get(head)
        if entity is None or not entity.modifiers:
            out.append(token)
            continue
        while out and out[-1].lower() in DESCRIPTOR_ADJECTIVES and out[-1].lower() not in _lowered(entity.modifiers):
            out.pop()  # a conflicting adjective ("white" where the horse is brown)
        wanted = [word.lower() for word in entity.modifiers]
        present = [word.lower() for word in out[-len(wanted) :]]
        if present != wanted:
            while out and out[-1].lower() in wanted:
                out.pop()
            out.extend(entity.modifiers)
        out.append(token)
    return join_tokens(out)


def _lowered(items: tuple[str, ...]) -> set[str]:
    return {item.lower() for item in items}


def _people_and_objects(beat: Beat, action: str, cast: Cast, entities: dict[str, Entity]) -> None:
    for character in cast.characters:
        if has_phrase(action, character.trigger_token):
            beat.characters.append(character.trigger_token)
    if cast.main_character is not None and not beat.characters:
        beat.characters.append(cast.main_character.trigger_token)
    for head, entity in entities.items():
        if not has_phrase(action, head) or (cast.main_ref and head == cast.main_ref.split()[-1].lower()):
            continue
        (beat.others if entity.kind in ("person", "animal") else beat.objects).append(entity.descriptor)


def _fill_moods(beats: list[Beat]) -> None:
    for index, beat in enumerate(beats):
        if beat.mood:
            continue
        previous = beats[index - 1].mood if index else ""
        if index == 0:
            beat.mood = DEFAULT_MOODS[0]
        elif index == len(beats) - 1 and len(beats) > 2:
            beat.mood = DEFAULT_MOODS[2]
        else:
            beat.mood = previous or DEFAULT_MOODS[1]


def _key_elements(entities: dict[str, Entity], beats: list[Beat], cast: Cast) -> list[str]:
    """Up to two things frame 1 shows with the main character: companions of the first beat, then recurring ones."""
    main_head = cast.main_ref.split()[-1].lower() if cast.main_ref else ""
    first = beats[0] if beats else None
    ranked: list[tuple[int, int, str]] = []
    for head, entity in entities.items():
        if head == main_head:
            continue
        in_first = first is not None and entity.descriptor in (*first.others, *first.objects)
        if not in_first and entity.mentions < 2:
            continue
        companion = entity.kind in ("person", "animal")
        ranked.append((0 if in_first and companion else 1 if in_first else 2, entity.position, entity.descriptor))
    elements = [descriptor for _rank, _position, descriptor in sorted(ranked)[:2]]
    for character in cast.characters[1:]:
        if first is not None and character.trigger_token in first.characters:
            elements.insert(0, character.trigger_token)
    return elements[:2]
