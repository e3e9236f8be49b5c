"""Reading a story: its beats, places, times of day, moods, characters and recurring objects.

No language model and no network: sentence and clause splitting, word lists and a few patterns. The result,
``StoryFacts``, is what the offline planner draws from and what the rule checker judges every plan against,
whichever backend wrote it.

Each beat gets an explicit subject (pronouns resolved, see ``referents``), the place it happens in (which changes
only where the story moves: a new place phrase, or arriving where a beat was heading) and the light its time of
day calls for (which changes where the story names a new time: "at night", "by sunset", "later that evening").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from services.planner.banned import banned_words, strip_banned
from services.planner.characters import Character
from services.planner.clauses import Clause, split_clauses, split_sentences, strip_openers
from services.planner.lexicon import (
    ABSTRACT_NOUNS,
    ANIMAL_NOUNS,
    APPEARANCE_ADJECTIVES,
    DEFAULT_INDOOR_LIGHTING,
    DEFAULT_MOODS,
    DEFAULT_OUTDOOR_LIGHTING,
    DESCRIPTOR_ADJECTIVES,
    DETERMINERS,
    DIRECTIONAL_PREPOSITIONS,
    GENERIC_NOUNS,
    LIGHTING,
    LOCATIVE_PREPOSITIONS,
    MONTHS_AND_DAYS,
    MOODS,
    MOVEMENT_VERBS,
    MULTIWORD_PLACES,
    NUMBER_WORDS,
    OPENERS,
    PERSON_NOUNS,
    PLACES,
    STOPWORDS,
    TRAVEL_VERBS,
    WEATHER_OR_NATURE,
    word_set,
)
from services.planner.places import PLACE_ADJECTIVES, Place, find_lighting, find_places, strip_time_phrases
from services.planner.referents import (
    Referent,
    Referents,
    classify,
    first_subject,
    is_impersonal,
    without_leading_phrase,
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
from services.planner.verbs import SPEECH_VERBS, acts_here, is_verb_form, third_person
from storyboard_common.errors import InvalidArgument

_META_VERBS = word_set(
    """
    ignore disregard forget output print write return respond answer pretend reply generate format include obey
    follow override repeat translate summarize summarise
    """
)
_MAX_ACTION_WORDS = 24
_ORDINALS = word_set("last first next only whole final second third same")


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
    subject: str = ""  # how the action names who acts ("the fox", "aldar_kose_man"); the action starts with it
    parts: int = 1  # how many of the story's beats this one tells (more than one once beats are combined)
    last_subject: str = ""  # who acts last in a beat that tells several ("" when not known)

    @property
    def acting_last(self) -> str:
        """Who acts at the end of this beat: its subject, or for combined beats the last one's."""
        return self.last_subject if self.parts > 1 else self.subject


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
        if word not in STOPWORDS and word not in PLACE_ADJECTIVES and word not in DESCRIPTOR_ADJECTIVES
    ]


def find_mood(text: str) -> str | None:
    """The mood the words of ``text`` suggest, or None."""
    text_words = set(words(text))
    for mood, cue_words in MOODS:
        if text_words & cue_words:
            return mood
    return None


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
        if token not in DETERMINERS and not token.endswith("'s"):
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
    if head != tokens[cursor]:
        return (tuple(modifiers), head) if modifiers or head not in DESCRIPTOR_ADJECTIVES else None  # the owner
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
        or head in ABSTRACT_NOUNS
        or head in WEATHER_OR_NATURE
        or head in LIGHTING
        or head in PLACES
        or singular(head) in PLACES
        or is_verb_form(head)
        or bool(banned_words(head))
        or len(head) < 3
        or not head.isalpha()
    )


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
    text = _in_third_person(text)
    text = _named_once(text, mentioned, requested)
    warnings: list[str] = []
    cast, text = _cast(text, mentioned, requested)
    person_refs = cast.person_refs()
    entities = find_entities(text, person_refs)
    if cast.main_ref and cast.main_character is None:
        main_words = cast.main_ref.split()
        entities.pop(main_words[-1].lower(), None)
        found = find_entities(text, person_refs - {main_words[-1].lower()}).get(main_words[-1].lower())
        if found is not None and set(main_words[:-1]) < set(found.modifiers):
            main_words = [*found.modifiers, main_words[-1]]  # "The fox ran. The young fox slept": the young fox
            cast = Cast(cast.characters, " ".join(main_words), None)
        entities[main_words[-1].lower()] = Entity(main_words[-1], tuple(main_words[:-1]), "person", mentions=2)
    for name in find_names(text, cast):
        entities.setdefault(name.lower(), Entity(name, (), "person", len(phrase_pattern(name).findall(text))))
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
_SPEECH_WORDS = "|".join(sorted(SPEECH_VERBS))
_INVERTED_SPEECH = re.compile(
    rf"(^|[.!?]\s+|,\s*)({_SPEECH_WORDS})\s+((?:[A-Z]\w+\s*){{1,3}}|\w+_\w+|(?:the|a|an|his|her|their)\s+(?:\w+\s+)?\w+)",
    re.I,
)
_EMPTY_SPEECH = {"said": "spoke", "says": "speaks", "asked": "asked a question", "asks": "asks a question"}


def _without_dialogue(story: str) -> str:
    """The story without quoted speech, which no frame can draw ("'Wait!' shouted Tomas" -> "Tomas shouted")."""
    text = _QUOTED.sub(" ", story).strip()
    return _INVERTED_SPEECH.sub(lambda m: f"{m.group(1)}{m.group(3).strip()} {m.group(2)} ", text)


_NAMED = re.compile(r"\b(?P<np>(?i:a|an|the)\s+(?:[\w-]+\s+){0,3}?[\w-]+)\s+(?:named|called)\s+(?P<name>[A-Z][\w-]+)")


def _named_once(text: str, mentioned: list[Character], requested: list[Character]) -> str:
    """ "A little robot named Pip ... Pip dances" -> "A little robot ... the little robot dances": a description
    says what Pip is, which an image model can draw. Registered characters keep their names (and triggers)."""
    match = _NAMED.search(text)
    if match is None or any(match.group("name") in c.names for c in (*mentioned, *requested)):
        return text
    noun_phrase = re.sub(r"^(?:a|an|the)\s+", "", match.group("np"), flags=re.IGNORECASE)
    text = text[: match.start()] + match.group("np") + text[match.end() :]
    return replace_phrase(text, match.group("name"), f"the {noun_phrase}")


_FIRST_PERSON = [
    (re.compile(r"\bI'm\b"), "I am"),
    (re.compile(r"\bI've\b"), "I have"),
    (re.compile(r"\bI'd\b"), "I would"),
    (re.compile(r"\bI'll\b"), "I will"),
    (re.compile(r"\bwe're\b", re.I), "we are"),
    (re.compile(r"\bI\b"), "the narrator"),
    (re.compile(r"\b(?:me|myself)\b", re.I), "the narrator"),
    (re.compile(r"\b(?:my|our)\b", re.I), "their"),
    (re.compile(r"\b(?:mine|ours)\b", re.I), "theirs"),
    (re.compile(r"\b(?:we|us|ourselves)\b", re.I), "the friends"),
]
_NARRATOR_VERB = re.compile(r"\bthe narrator (\w+)\b")


def _in_third_person(text: str) -> str:
    """A first-person story told about "the narrator" (and "the friends" for "we"): a frame shows someone."""
    if not re.search(r"\bI\b|\b[Ww]e\b", text):
        return text
    for pattern, replacement in _FIRST_PERSON:
        text = pattern.sub(replacement, text)
    return _NARRATOR_VERB.sub(lambda m: f"the narrator {third_person(m.group(1))}", text)


def find_names(text: str, cast: Cast) -> list[str]:
    """Names of characters the registry does not know ("Tazsha"), in order: capitalised words that act or are
    acted on, not at a place ("to Paris") and not the main character."""
    known = {word.lower() for word in cast.main_ref.split()} | {t.lower() for t in cast.trigger_tokens}
    found: list[str] = []
    for sentence in split_sentences(text):
        tokens = [token for token in tokenize(sentence) if is_word(token)]
        lower = [token.lower() for token in tokens]
        for index, token in enumerate(tokens):
            if not _name_like(token) or lower[index] in known or token in found:
                continue
            if index == 0 and not (index + 1 < len(tokens) and acts_here(lower, index + 1)):
                continue
            if index > 0 and lower[index - 1] in ("in", "at", "to", "from", "into", "toward", "towards", "of"):
                continue
            found.append(token)
    return found


def _name_like(token: str) -> bool:
    lower = token.lower()
    return (
        token[:1].isupper()
        and token.isalpha()
        and not token.isupper()
        and len(token) > 1
        and lower not in STOPWORDS
        and lower not in DETERMINERS
        and lower not in NUMBER_WORDS
        and lower not in PERSON_NOUNS
        and lower not in ANIMAL_NOUNS
        and lower not in PLACES
        and lower not in MONTHS_AND_DAYS
        and lower not in LIGHTING
        and not any(opener.split()[0] == lower for opener in OPENERS)
        and not is_verb_form(lower)
        and not lower.endswith("ly")
    )


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
    subject = first_subject(text) or _first_character(text)
    if subject:
        text = _drop_appositive(text, subject)
    else:
        subject, text = _unnamed_character(text)
    return Cast([], subject or "", None), text


_UNNAMED = {"he": "man", "she": "woman", "they": "friends"}


def _unnamed_character(text: str) -> tuple[str, str]:
    """A story that starts "She questions the butler" without saying who she is: about "the woman"."""
    lower = words(strip_openers(text))[:1]
    if not lower or lower[0] not in _UNNAMED:
        return "", text
    subject = _UNNAMED[lower[0]]
    stripped = strip_openers(text)
    return subject, f"the {subject}{stripped[len(lower[0]) :]}"


def _first_character(text: str) -> str | None:
    """The first person or animal that acts in a story whose first subject is none ("The storm hits ...")."""
    for clause in split_clauses(text):
        subject = first_subject(clause.text)
        if subject and classify(subject).kind in ("person", "animal"):
            return subject
    return None


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
        word_set("sofa couch armchair fireplace tea blanket kettle"),
        Place("living room", "room", indoor=True),
    ),
    (
        word_set("baker bakery bread dough loaf loaves pastry pastries bun buns"),
        Place("bakery", "bakery", indoor=True),
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
        word_set("king queen prince princess throne emperor"),
        Place("palace hall", "hall", indoor=True),
    ),
    (
        word_set("merchant bai trader gold coins sack bargain sells buys"),
        Place("busy bazaar", "bazaar", indoor=False),
    ),
]


_COUNTRYSIDE = Place("open countryside", "countryside", indoor=False)


def _fallback_place(text: str) -> Place:
    """A place for a story that names none, from what its words suggest."""
    lowered = set(words(text))
    for cues, place in _FALLBACK_PLACES:
        if lowered & cues:
            return place
    return _COUNTRYSIDE


# ---------------------------------------------------------------------------------------------------------------
# Beats


@dataclass
class _Scene:
    """Where and when the story is while it is read beat by beat."""

    setting: Place
    pending: Place | None = None  # where the story is heading, until it gets there
    lighting: str | None = None


def _beats(
    text: str, cast: Cast, places: list[Place], entities: dict[str, Entity], strict: bool = True
) -> tuple[list[Beat], int]:
    canonical = {place.head: place for place in places}
    clauses, dropped = _story_clauses(text, cast)
    raw = [clause.text for clause in clauses]
    # A time of day named in the first beat holds from the start; one named later starts where it is named.
    story_lighting = find_lighting(raw[0]) if raw else None
    scene = _Scene(_opening_setting(raw, places, canonical, strict))
    referents = _referents(cast, entities)
    beats: list[Beat] = []
    empty: list[Beat] = []  # beats with nothing to draw, kept only when the story has nothing else
    for clause in raw:
        clause_places = [_canonical(place, canonical) for place in find_places(clause, strict)]
        destination = _destination(clause, clause_places)
        moving = any(word in MOVEMENT_VERBS for word in words(clause))
        _move(scene, clause, clause_places, destination)
        scene.lighting = find_lighting(clause) or scene.lighting or story_lighting
        action, subject = _action_text(clause, cast, referents, entities)
        setting = scene.setting
        beat = Beat(
            action=action,
            setting=setting,
            lighting=scene.lighting or (DEFAULT_INDOOR_LIGHTING if setting.indoor else DEFAULT_OUTDOOR_LIGHTING),
            mood=find_mood(clause) or "",
            destination=destination if destination is not None and destination.head != setting.head else None,
            moving=moving,
            subject_is_main=_is_main(subject, referents.main),
            place_named=bool(clause_places),
            subject=subject.phrase if subject is not None and action.startswith(subject.phrase) else "",
        )
        _people_and_objects(beat, action, cast, entities)
        # "it was raining" is the light of the beats after it; "the merchant" (his hat removed) shows nothing
        nothing = is_impersonal(action) or (subject is not None and action == subject.phrase)
        (empty if nothing else beats).append(beat)
    beats = beats or empty
    _fill_moods(beats)
    return beats, dropped


def _move(scene: _Scene, clause: str, clause_places: list[Place], destination: Place | None) -> None:
    """Where the story is after ``clause``: a place it names, or where it was heading once it stops travelling."""
    here = [place for place in clause_places if destination is None or place is not destination]
    travelling = any(word in TRAVEL_VERBS for word in words(clause))
    if destination is not None and not here and _enters(clause, destination):
        here = [destination]  # "walks into the garden": the beat ends inside, so it shows the garden
    if here:
        scene.setting, scene.pending = here[0], None
    elif scene.pending is not None and not travelling:
        scene.setting, scene.pending = scene.pending, None  # the next thing that happens there: it has arrived
    if destination is not None and destination.head != scene.setting.head:
        scene.pending = destination


def _enters(clause: str, destination: Place) -> bool:
    lower = [token.lower() for token in tokenize(clause)]
    return any(word in ("into", "inside") for word in lower[max(0, destination.position - 4) : destination.position])


def _opening_setting(raw: list[str], places: list[Place], canonical: dict[str, Place], strict: bool) -> Place:
    """Where the story starts: its first place, or the way there when the story first names it going there.

    When the first place the story goes to comes late ("woke ... kneaded ... carried the bread to the market"),
    the beats before it happen somewhere else: a place they mention in passing ("the storm hits the village"),
    else the way there.
    """
    for position, clause in enumerate(raw):
        clause_places = [_canonical(place, canonical) for place in find_places(clause, strict)]
        if not clause_places:
            continue
        destination = _destination(clause, clause_places)
        if destination is None or clause_places[0] is not destination:
            return clause_places[0]
        mentioned = [place for earlier in raw[:position] for place in find_places(earlier, strict=False)]
        if mentioned and mentioned[0].head != destination.head:
            return mentioned[0]
        guessed = _fallback_place(" ".join(raw[:position]))
        if position > 0 and guessed.head not in (_COUNTRYSIDE.head, destination.head):
            return guessed  # "woke, kneaded the dough ... carried the bread to the market": a bakery first
        return _on_the_way(destination, clause)
    return places[0]


def _referents(cast: Cast, entities: dict[str, Entity]) -> Referents:
    main: Referent | None = None
    if cast.main_ref:
        main = classify(cast.main_phrase)
        if main.kind == "thing":
            main.kind = "person"  # whoever the story is about acts like a character
    known: dict[str, Referent] = {}
    for head, entity in entities.items():
        if entity.kind in ("person", "animal") and (main is None or head != main.phrase.split()[-1].lower()):
            phrase = entity.head if entity.head[:1].isupper() else f"the {entity.descriptor}"
            known[head] = classify(phrase, lambda _head, kind=entity.kind: kind)
    for character in cast.characters[1:]:
        known[character.trigger_token] = Referent(character.trigger_token, "person")
    things = {
        head: Referent(f"the {entity.descriptor}", "thing", plural=singular(head) != head)
        for head, entity in entities.items()
        if entity.kind == "object"
    }
    return Referents(main, known, things)


def _is_main(subject: Referent | None, main: Referent | None) -> bool:
    if subject is None or main is None:
        return False
    return subject is main or main.phrase in subject.members


def _story_clauses(text: str, cast: Cast) -> tuple[list[Clause], int]:
    """The story's beats, without sentences that address the reader rather than tell the story."""
    clauses = split_clauses(text)
    instructions = {c.sentence for c in clauses if c.opens_sentence and _is_instruction(c.text, cast)}
    kept = [clause for clause in clauses if clause.sentence not in instructions]
    return (kept, len(clauses) - len(kept)) if kept else (clauses, 0)


def _is_instruction(clause: str, cast: Cast) -> bool:
    """A sentence that opens with a bare command ("Ignore all previous instructions ..."), to no character."""
    first = (words(clause) or [""])[0]
    return first in _META_VERBS and not any(ref in words(clause) for ref in cast.person_refs())


def _canonical(place: Place, canonical: dict[str, Place]) -> Place:
    known = canonical.get(place.head)
    if known is None:
        return place
    return Place(known.phrase, known.head, known.indoor, place.position, known.preposition, place.end)


def _on_the_way(destination: Place, clause: str) -> Place:
    """Where a story that starts by going somewhere begins: on the way there (or at once inside, for "into")."""
    if destination.indoor and has_phrase(clause, "into"):
        return destination
    return Place(f"way to the {destination.phrase}", "way", indoor=False, preposition="on")


def _destination(clause: str, places: list[Place]) -> Place | None:
    """The place ``clause`` goes to ("to the castle", "into the forest", "walks home"), if any."""
    lower = [token.lower() for token in tokenize(clause)]
    for place in places:
        before = lower[max(0, place.position - 4) : place.position]
        if place.phrase == "home" and before and before[-1] in MOVEMENT_VERBS:
            return place
        if any(word in DIRECTIONAL_PREPOSITIONS for word in before) and not any(
            word in LOCATIVE_PREPOSITIONS for word in before[-2:]
        ):
            return place
    return None


_LEADING_PLACE_ADVERB = re.compile(
    r"^(?:there|here|inside|outside|now|soon|(?:from|in|on|at|inside|outside|under|behind|above|below)\s+"
    r"(?:the|a|an|his|her|its|their)\s+\w+)\s+(?=(?:he|she|they|it|the|a|an)\s|(?-i:[A-Z])|\w+_\w+)",
    re.IGNORECASE,
)  # "There he meets ...", "There Aldar tricks ...", "From the top she sees ..."
_EXISTENTIAL = re.compile(
    r"^there\s+(?:was|were|is|are|lived)\s+(?:(?:a|an|some|the)\s+)?(?P<subject>[^,]+?)\s+(?:who|that|which)\s+", re.I
)
_LEADING_ASIDE = re.compile(r"^([A-Za-z]+(?:\s+[A-Za-z]+){0,2}),\s+")
_LEADING_CONJUNCTION = re.compile(r"^(?:as|while|when|and|but|so|because|where|until)\s+", re.IGNORECASE)


def _action_text(
    clause: str, cast: Cast, referents: Referents, entities: dict[str, Entity]
) -> tuple[str, Referent | None]:
    """The clause as a frame's action: openers and times removed, subject explicit, descriptors unified."""
    text = strip_time_phrases(without_leading_phrase(strip_openers(clause)))
    text = _EXISTENTIAL.sub(r"the \g<subject> ", text)  # "there was a mouse who lived ..." -> "the mouse lived ..."
    text = re.sub(r"^[A-Z][a-z]+ly,?\s+", "", text)  # "Slowly, he ..." -> "he ..."
    text = _LEADING_PLACE_ADVERB.sub("", text)  # "There he meets ..." -> "he meets ..."
    text = _LEADING_CONJUNCTION.sub("", text)
    aside = _LEADING_ASIDE.match(text)
    if aside and not any(_names_someone(word, cast) for word in words(aside.group(1))):
        text = text[aside.end() :]  # "Far away, he laughs" -> "he laughs"
    if not text.split():
        subject = referents.subject
        return (subject.phrase if subject is not None else ""), subject
    text, subject = referents.resolve(strip_banned(text, cast.person_refs()))
    text = _speech_as_action(text)
    text = apply_descriptors(text, entities)
    text = _lower_first(text)
    action_words = text.split()
    if len(action_words) > _MAX_ACTION_WORDS:
        text = " ".join(action_words[:_MAX_ACTION_WORDS])
    return tidy(text), subject


def _speech_as_action(text: str) -> str:
    """ "the girl said" (its words removed with the quotes) -> "the girl spoke": something a frame can show."""
    tokens = text.split()
    for index in range(1, len(tokens)):
        word = tokens[index].lower()
        if word.strip(",") in _EMPTY_SPEECH and (word.endswith(",") or index == len(tokens) - 1):
            tokens[index] = _EMPTY_SPEECH[word.strip(",")] + ("," if word.endswith(",") else "")
            return " ".join(tokens)  # "Nina said, smiling" -> "Nina spoke, smiling"
    return text


def _names_someone(word: str, cast: Cast) -> bool:
    """Whether a word of a leading aside makes it more than an aside ("A tall, ...", "Mira, ...", "He frowns,")."""
    return (
        is_verb_form(word)
        or word in ("he", "she", "it", "they", "i", "we")
        or word in cast.person_refs()
        or word in DETERMINERS
        or word in DESCRIPTOR_ADJECTIVES
        or word in APPEARANCE_ADJECTIVES
        or word in PERSON_NOUNS
        or word in ANIMAL_NOUNS
    )


def _lower_first(text: str) -> str:
    if text and text[0].isupper() and (len(text) == 1 or not text[1].isupper()):
        first = text.split(" ", 1)[0]
        if first.lower() in STOPWORDS or first.lower() in NUMBER_WORDS:
            return text[0].lower() + text[1:]
    return text


def apply_descriptors(text: str, entities: dict[str, Entity]) -> str:
    """``text`` with every tracked head noun carrying its one descriptor ("his horse" -> "his brown horse")."""
    tokens = tokenize(text)
    out: list[str] = []
    for token in tokens:
        head = token.lower().removesuffix("'s")  # "the shepherd's sheep": the shepherd is still the poor one
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
