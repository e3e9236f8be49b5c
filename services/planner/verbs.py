"""Recognising verbs without a tagger: known verbs in their common inflections, plus a guess from the context.

Clause splitting, subject finding and pronoun resolution all ask the same question ("does a new verb phrase start
here?"), so the answer lives in one place.
"""

from __future__ import annotations

from services.planner.lexicon import ANIMAL_NOUNS, COMMON_VERBS, MOVEMENT_VERBS, PERSON_NOUNS, PLACES, word_set

IRREGULAR_VERBS = word_set(
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
# Past forms that are also the base form: never turned into "-s" forms, the tense cannot be told.
_SAME_IN_PAST = word_set("put cut let set read hit hurt cost shut spread quit bet")
# Words that look like verbs but, after a determiner, start most noun phrases in stories.
_OBJECT_STARTS = word_set(
    """
    the a an his her their its my our your them him me us it this that some up down out away off over into onto
    back through across
    """
)
SPEECH_VERBS = word_set(
    """
    say says said ask asks asked shout shouts shouted cry cries cried whisper whispers whispered call calls called
    yell yells yelled reply replies replied answer answers answered exclaim exclaims exclaimed mutter mutters
    muttered
    """
)


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
    {form for base in COMMON_VERBS for form in _inflections(base)} | MOVEMENT_VERBS | IRREGULAR_VERBS | SPEECH_VERBS
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


def third_person(verb: str) -> str:
    """The "-s" form of a base-form verb ("go" -> "goes", "carry" -> "carries"); other forms come back unchanged.

    For sentences whose subject the planner rewrote from "I" or "we" to a singular one ("I climb" -> "the
    narrator climbs").
    """
    lower = verb.lower()
    irregular = {"am": "is", "are": "is", "have": "has", "do": "does", "go": "goes", "were": "was"}
    if lower in irregular:
        return irregular[lower]
    if lower not in COMMON_VERBS or lower in _SAME_IN_PAST:
        return verb
    if lower.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    if lower.endswith("y") and len(lower) > 1 and lower[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"
