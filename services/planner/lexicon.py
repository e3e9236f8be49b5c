"""Word lists the planner reasons with: places, times of day, moods, shot types and the words a plan may not use.

Everything here is plain data. The lists are generic English, not tuned to any one story: the offline planner and
the rule checker must work on stories nobody has seen.
"""

from __future__ import annotations


def word_set(text: str) -> frozenset[str]:
    """The whitespace-separated words of ``text``: word lists stay readable paragraphs."""
    return frozenset(text.split())


# Clothing words: never in a description or prompt (the character's LoRA decides what the character wears).
CLOTHING_WORDS = word_set(
    """
    outfit outfits costume costumes clothes clothing garment garments attire apparel coat coats overcoat jacket
    jackets shirt shirts t-shirt blouse blouses trousers pants jeans shorts skirt skirts dress dresses gown
    gowns robe robes cloak cloaks cape capes hat hats cap caps hoodie hoodies sweater sweaters scarf scarves
    glove gloves mitten mittens boot boots shoe shoes sandal sandals sneaker sneakers slipper slippers sock
    socks vest vests tunic tunics uniform uniforms armor armour helmet helmets apron aprons kimono kimonos sari
    turban turbans headscarf headscarves veil necktie bowtie pajamas pyjamas overalls chapan chapans kalpak
    kalpaks tubeteika beshmet shapan poncho ponchos jumpsuit spacesuit leotard tuxedo bonnet beret fedora
    sombrero headdress headband waistcoat cardigan wearing wears wore dressed clad outfitted garbed
    """
)

# Physical-appearance nouns and participles: never allowed, whatever they describe.
APPEARANCE_WORDS = word_set(
    """
    beard beards bearded beardless mustache mustaches moustache moustaches mustached goatee sideburns hair hairs
    haired hairstyle hairdo haircut ponytail pigtails freckles freckled complexion tattoo tattoos tattooed
    eyelashes lipstick makeup physique
    """
)

# Appearance adjectives: banned when they describe a person ("tall man", "he was handsome"); allowed elsewhere
# ("tall grass", "a thin layer of ice").
APPEARANCE_ADJECTIVES = word_set(
    """
    tall short slim slender thin skinny fat chubby plump stocky muscular burly handsome beautiful pretty ugly
    cute blonde blond brunette redheaded bald balding pale tanned lanky petite gorgeous
    """
)

# Eye colours make "blue eyes" an appearance phrase; "his eyes widen" is an expression and stays.
EYE_COLOURS = word_set("blue green brown hazel grey gray dark bright amber black")

PERSON_NOUNS = word_set(
    """
    man men woman women boy boys girl girls person people figure guy lady ladies gentleman child children kid
    kids youth hero heroine stranger trickster king queen prince princess merchant farmer fisherman hunter
    warrior knight soldier sailor captain pirate wizard witch teacher student doctor nurse detective thief baker
    shepherd herder traveler traveller villager villagers musician singer dancer elder grandmother grandfather
    mother father son daughter brother sister friend friends wife husband chief ruler khan sultan judge guard
    guards robot astronaut scientist inventor girlfriend boyfriend neighbor neighbour boss worker miner monk
    priest nomad rider bai chef cook servant maid beggar peasant lord shopkeeper clerk officer pilot driver mayor
    owner customer vendor trader crew team crowd narrator keeper ranger explorer sheriff butler gardener
    lifeguard waiter waitress painter writer poet artist engineer mechanic police officer tourist
    """
)

ANIMAL_NOUNS = word_set(
    """
    horse horses camel camels dog dogs cat cats wolf wolves fox foxes eagle eagles falcon hawk owl owls bird
    birds sheep goat goats cow cows bull ox donkey mule bear bears rabbit rabbits hare deer lion tiger dragon
    dragons snake mouse mice rat crow raven duck ducks chicken chickens hen rooster pig pigs whale dolphin fish
    turtle frog monkey elephant pony foal lamb puppy kitten squirrel bee bees butterfly horses
    """
)

# Places, with whether they are indoors (lighting defaults differ). Multi-word places come first when matched.
PLACES: dict[str, bool] = {
    **{
        word: False
        for word in word_set(
            """
        steppe steppes desert dunes forest woods jungle village town city street streets alley road path
        trail marketplace market bazaar square river riverbank lake pond sea ocean beach shore coast harbor
        harbour port dock island mountain mountains hill hills valley canyon cliff cliffs cave meadow field
        fields farm farmyard orchard garden park bridge camp campsite campfire courtyard yard plain plains
        prairie savanna tundra glacier volcano waterfall swamp marsh highway battlefield graveyard cemetery
        ruins oasis well crossroads rooftop roof playground stadium racetrack airport station
        platform pier lighthouse spring grove clearing ridge pass summit peak shoreline countryside
        outskirts wilderness grassland pasture ravine gorge vineyard ranch camp crater moon planet asteroid
        orbit space den lair burrow nest tree oak pine willow birch maple lighthouse treehouse backyard
        """
        )
    },
    **{
        word: True
        for word in word_set(
            """
        yurt yurts tent house home hut cabin cottage palace castle temple mosque church cathedral library
        school classroom kitchen bedroom room hall tavern inn shop store bakery workshop forge barn stable
        stables office laboratory lab hospital courtroom prison dungeon tower attic cellar basement museum
        theater theatre factory warehouse restaurant cafe apartment train ship cockpit spaceship spacecraft
        starship submarine elevator corridor hallway chamber studio gym mall arena observatory
        greenhouse garage fireplace planetarium aquarium gallery hotel bank pub bar
        """
        )
    },
}

MULTIWORD_PLACES: dict[str, bool] = {
    "space station": True,
    "throne room": True,
    "living room": True,
    "train station": False,
    "market square": False,
    "village square": False,
    "town square": False,
    "city street": False,
    "night sky": False,
    "open sea": False,
    "mountain pass": False,
    "river bank": False,
}

# Prepositions that introduce where something happens, and those that say the story is going somewhere.
LOCATIVE_PREPOSITIONS = word_set(
    """
    in inside at on across through along near beside outside under over around by
    """
)
DIRECTIONAL_PREPOSITIONS = frozenset(["to", "toward", "towards", "into", "onto"])

# Verbs that move the story to another place. A setting may change in a frame that uses one.
MOVEMENT_VERBS = word_set(
    """
    arrive arrives arrived arriving enter enters entered entering reach reaches reached reaching return returns
    returned returning go goes went going travel travels traveled travelled traveling travelling leave leaves
    left leaving walk walks walked walking ride rides rode riding run runs ran running fly flies flew flying
    sail sails sailed sailing climb climbs climbed climbing head heads headed heading move moves moved moving
    cross crosses crossed crossing journey journeys journeyed journeying flee flees fled fleeing escape escapes
    escaped escaping drive drives drove driving gallop gallops galloped galloping wander wanders wandered
    wandering hurry hurries hurried hurrying step steps stepped stepping approach approaches approached
    approaching descend descends descended descending swim swims swam swimming rush rushes rushed rushing dash
    dashes dashed dashing follow follows followed following chase chases chased chasing float floats floated
    floating row rows rowed rowing drift drifts drifted drifting march marches marched marching sneak sneaks
    sneaked snuck sneaking race races raced racing stroll strolls strolled strolling hike hikes hiked hiking
    trek treks trekked trekking paddle paddles paddled paddling creep creeps crept creeping
    """
)
# Movement verbs that keep a character on the way somewhere (rather than arriving): "rides on for hours".
TRAVEL_VERBS = word_set(
    """
    go goes went going travel travels traveled travelled traveling travelling walk walks walked walking ride
    rides rode riding run runs ran running fly flies flew flying sail sails sailed sailing journey journeys
    journeyed journeying gallop gallops galloped galloping wander wanders wandered wandering hurry hurries
    hurried hurrying rush rushes rushed rushing drive drives drove driving row rows rowed rowing drift drifts
    drifted drifting march marches marched marching trek treks trekked trekking float floats floated floating
    swim swims swam swimming head heads headed heading race races raced racing hike hikes hiked hiking follow
    follows followed following chase chases chased chasing
    """
)

# Times of day and weather, each with the lighting phrase a prompt uses for it.
LIGHTING: dict[str, str] = {
    "dawn": "soft dawn light",
    "daybreak": "soft dawn light",
    "sunrise": "warm sunrise light",
    "morning": "bright morning light",
    "noon": "bright midday sun",
    "midday": "bright midday sun",
    "afternoon": "warm afternoon light",
    "sunset": "golden hour lighting",
    "sundown": "golden hour lighting",
    "golden hour": "golden hour lighting",
    "dusk": "blue twilight",
    "twilight": "blue twilight",
    "evening": "warm evening light",
    "night": "moonlit night",
    "nightfall": "moonlit night",
    "sun sets": "golden hour lighting",
    "sun set": "golden hour lighting",
    "sun rises": "warm sunrise light",
    "sun rose": "warm sunrise light",
    "nighttime": "moonlit night",
    "midnight": "moonlit night",
    "moonlight": "moonlit night",
    "moon": "moonlit night",
    "stars": "starry night sky",
    "storm": "stormy overcast light",
    "thunderstorm": "stormy overcast light",
    "rain": "rainy diffused light",
    "raining": "rainy diffused light",
    "rainy": "rainy diffused light",
    "snowing": "soft snowy light",
    "snow": "soft snowy light",
    "blizzard": "cold snowy light",
    "fog": "misty light",
    "mist": "misty light",
    "candle": "warm candlelight",
    "candles": "warm candlelight",
    "candlelight": "warm candlelight",
    "lantern": "warm lantern light",
    "campfire": "flickering firelight",
    "fireplace": "flickering firelight",
    "torch": "flickering torchlight",
    "torches": "flickering torchlight",
}
DEFAULT_OUTDOOR_LIGHTING = "natural daylight"
DEFAULT_INDOOR_LIGHTING = "warm interior lighting"

# Words whose presence in a beat sets its mood; the first list that matches wins.
MOODS: list[tuple[str, frozenset[str]]] = [
    (
        "tense",
        word_set(
            """
    fight fights fought battle attack attacks attacked threat threatens danger dangerous enemy soldiers guards
    angry anger argue argues argued confront confronts confronted duel
    """
        ),
    ),
    (
        "urgent",
        word_set(
            """
    chase chases chased flee flees fled escape escapes escaped run runs ran hurry hurries hurried race races
    raced rush rushes rushed storm suddenly
    """
        ),
    ),
    (
        "mysterious",
        word_set(
            """
    mysterious strange secret hidden shadow shadows fog mist cave ancient ghost whisper whispers whispered
    """
        ),
    ),
    (
        "melancholic",
        word_set(
            """
    sad cries cried crying tears lost lonely alone grief mourn mourns farewell goodbye missing
    """
        ),
    ),
    (
        "playful",
        word_set(
            """
    trick tricks tricked fool fools fooled joke jokes sly cunning clever outwits outwitted tease teases mischief
    prank
    """
        ),
    ),
    (
        "joyful",
        word_set(
            """
    celebrate celebrates celebrated celebration laugh laughs laughed dance dances danced music sings sang song
    songs feast party festival cheer cheers cheered happy joy wedding plays played playing
    """
        ),
    ),
    (
        "wondrous",
        word_set(
            """
    discover discovers discovered find finds found magic magical wonder glowing treasure reveal reveals revealed
    marvel
    """
        ),
    ),
    (
        "peaceful",
        word_set(
            """
    rest rests rested sleep sleeps slept home quiet calm gentle peace peaceful sits sat relax
    """
        ),
    ),
    (
        "adventurous",
        word_set(
            """
    ride rides rode riding journey travel travels traveled across explore explores explored climb climbs climbed
    sail sails sailed gallop gallops quest
    """
        ),
    ),
]
DEFAULT_MOODS = ("calm", "hopeful", "resolved")  # start, middle, end of a story whose words name no mood

# The face a close-up shows for each mood.
EXPRESSIONS: dict[str, str] = {
    "tense": "tense, focused expression",
    "urgent": "alarmed expression",
    "mysterious": "curious, wary expression",
    "melancholic": "sad, thoughtful expression",
    "playful": "sly, mischievous smile",
    "joyful": "joyful smile",
    "wondrous": "amazed expression",
    "peaceful": "calm, content smile",
    "adventurous": "determined expression",
    "calm": "calm expression",
    "hopeful": "hopeful expression",
    "resolved": "satisfied smile",
}

# Shot types: canonical name, then the phrases that mean it. Longer phrases are tried first when matching.
SHOT_TYPES: dict[str, tuple[str, ...]] = {
    "extreme close-up": ("extreme close-up", "extreme close up", "extreme closeup", "ecu", "macro shot"),
    "medium close-up": ("medium close-up", "medium close up", "medium closeup", "mcu"),
    "close-up": ("close-up", "close up", "closeup", "tight shot", "reaction shot"),
    "extreme wide shot": ("extreme wide shot", "extreme wide", "extreme long shot", "panoramic shot", "panorama"),
    "medium wide shot": ("medium wide shot", "medium wide", "medium long shot", "medium full shot", "cowboy shot"),
    "aerial shot": ("aerial", "bird's-eye", "birds-eye", "bird's eye", "drone shot", "overhead shot", "top-down"),
    "over-the-shoulder shot": ("over-the-shoulder", "over the shoulder", "ots"),
    "POV shot": ("pov", "point of view", "point-of-view", "first-person", "first person view"),
    "low-angle shot": ("low-angle", "low angle", "worm's-eye", "worms-eye"),
    "high-angle shot": ("high-angle", "high angle"),
    "tracking shot": ("tracking shot", "tracking", "dolly shot", "follow shot", "following shot"),
    "two-shot": ("two-shot", "two shot"),
    "insert shot": ("insert shot", "insert", "detail shot", "cutaway"),
    "dutch angle": ("dutch angle", "dutch tilt", "canted angle"),
    "full shot": ("full shot", "full-body shot", "full body shot", "full-length shot"),
    "wide shot": ("wide establishing shot", "establishing shot", "wide shot", "long shot", "wide angle", "wide view"),
    "medium shot": ("medium shot", "mid shot", "mid-shot", "waist shot", "medium"),
}

# Shots that cannot be frame 1's reference: the character is unseen, seen from behind, or too small.
NON_REFERENCE_SHOTS = frozenset(
    {"POV shot", "over-the-shoulder shot", "aerial shot", "extreme wide shot", "insert shot", "extreme close-up"}
)

FRONT_FACING_PHRASES = (
    "front-facing",
    "front facing",
    "facing the camera",
    "facing camera",
    "faces the camera",
    "facing the viewer",
    "faces the viewer",
    "looking at the camera",
    "looks at the camera",
    "looking into the camera",
    "looking at the viewer",
    "front view",
    "frontal view",
    "from the front",
    "facing forward",
    "facing front",
)

# Back views, matched as whole phrases: "background", "backdrop" or "rides back home" are not back views.
BACK_VIEW_PHRASES = (
    "from behind",
    "back view",
    "rear view",
    "view from the back",
    "seen from the back",
    "seen from behind",
    "back to the camera",
    "back to camera",
    "back turned",
    "back facing the camera",
    "with his back",
    "with her back",
    "with their back",
    "with its back",
    "facing away",
    "turned away",
    "turning away",
    "walking away from the camera",
    "silhouette",
    "silhouetted",
)

# Adjectives that can form an object's descriptor ("brown horse", "old wooden bridge"). Only these count when the
# checker compares descriptors, so "the galloping horse" and "the horse" describe the same horse.
DESCRIPTOR_ADJECTIVES = word_set(
    """
    white black brown grey gray red orange yellow green blue purple pink golden silver bronze copper chestnut
    spotted striped dappled pale dark bright big small large little tiny huge giant enormous massive old young
    ancient new wooden stone iron steel glass clay leather silk woolen wool paper magical magic enchanted
    mechanical broken rusty shiny glowing sparkling precious wealthy rich poor greedy clever wise foolish kind
    cruel brave lazy loyal faithful wild tame fierce gentle sleepy hungry angry lonely mysterious strange famous
    humble proud sly cunning noble royal painted carved cracked empty heavy light round square long tall short
    thin fat crooked fluffy furry scruffy
    """
)

# Words that never start a noun phrase's head: articles, pronouns, prepositions, conjunctions, auxiliaries.
STOPWORDS = word_set(
    """
    a an the this that these those his her hers its their theirs our ours my mine your yours he she it they them
    him we us i you me who whom whose which what where when while as and or but nor so yet then than if because
    though although until unless after before since during of in on at to from by with without into onto upon
    over under across through along around near beside between behind beyond toward towards against about above
    below is are was were be been being am has have had do does did will would can could shall should may might
    must not no very too also just only even still again back up down out off away there here now one some any
    each every all both few many much more most other another such own same
    """
)

# Nouns too general or too bodily to track as recurring objects.
GENERIC_NOUNS = word_set(
    """
    way time times moment moments day days night nights side end top front back thing things lot part parts view
    shot camera scene frame face faces eyes eye hand hands head heads arm arms leg legs foot feet finger fingers
    expression smile voice mind heart story idea plan word words place places something everything nothing
    anything someone everyone nobody anybody home distance edge middle center centre kind sort bit piece pieces
    while air ground sky light dark morning evening afternoon noon dawn dusk sunset sunrise midnight twilight
    journey trip walk ride way direction course summer winter spring autumn fall season year years week weeks
    month months days hours minute minutes
    """
)

# Discourse openers that carry no picture ("Once upon a time, ...").
OPENERS = (
    "once upon a time",
    "one day",
    "long ago",
    "later that day",
    "later",
    "then",
    "afterwards",
    "after that",
    "finally",
    "at last",
    "in the end",
    "meanwhile",
    "soon",
    "suddenly",
    "eventually",
    "next",
    "the next day",
    "the next morning",
    *(f"on {day}" for day in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")),
    "every day",
    "every night",
    "one night",
    "one morning",
    "one evening",
)

PRONOUNS_SUBJECT = frozenset(["he", "she", "they", "it"])
POSSESSIVES = {"he": "his", "she": "her", "they": "their", "it": "its"}
OBJECT_PRONOUNS = {"him": "he", "her": "she", "them": "they"}
POSSESSIVE_PRONOUNS = {"his": "he", "her": "she", "its": "it", "their": "they"}
DETERMINERS = word_set("a an the his her their its my our your this that these those some")
NUMBER_WORDS = word_set("two three four five six seven eight nine ten twelve several many few")
# Nouns that are weather, sky or time rather than a character, object or place.
WEATHER_OR_NATURE = word_set(
    """
    wind winds storm rain snow sun moon sky clouds cloud thunder lightning fog mist darkness night day
    """
)

MONTHS_AND_DAYS = word_set(
    """
    january february march april may june july august september october november december monday tuesday
    wednesday thursday friday saturday sunday christmas easter
    """
)

# Nouns for ideas and events, never a place, character or object to draw.
ABSTRACT_NOUNS = word_set(
    """
    trick tricks plan plans idea ideas lesson lessons joke jokes secret deal bet promise help advice luck chance
    fun surprise anger fear joy hope love life death truth lie lies name names question answer reason way
    attention mistake story game journey trip price victory adventure problem hurry rush silence music rhythm
    """
)

# Who "he" and "she" can stand for; person and animal nouns in neither list fit both.
MALE_NOUNS = word_set(
    """
    man men boy boys gentleman king prince father grandfather brother son husband boyfriend monk priest wizard
    khan sultan emperor uncle nephew lord duke
    """
)
FEMALE_NOUNS = word_set(
    """
    woman women girl girls lady ladies queen princess mother grandmother sister daughter wife girlfriend witch
    heroine aunt niece duchess nun mare hen
    """
)
# Plural nouns that do not end in "s".
IRREGULAR_PLURALS = word_set("men women children people mice geese cattle police")

# Common verbs in base form, used to tell where a subject ends and a clause begins ("the old fisherman rows").
COMMON_VERBS = word_set(
    """
    be have do say go get make know think take see come want look use find give tell work call try ask need feel
    become leave put mean keep let begin seem help talk turn start show hear play run move like live believe
    hold bring happen write sit stand lose pay meet include continue set learn change lead understand watch
    follow stop create speak read spend grow open walk win offer remember love consider appear buy wait serve
    die send expect build stay fall cut reach kill remain suggest raise pass sell require report decide pull
    ride arrive enter return travel climb sail fly swim jump dance sing laugh cry smile shout whisper sneak hide
    steal trick fool chase catch throw carry drag push rest sleep wake eat drink cook bake fish hunt fight
    escape flee gallop race rush hurry wander explore discover search dig plant gather trade bargain cheat
    outwit tease greet hug kiss wave point stare gaze glance notice spot listen knock shake pour fill light burn
    fix repair paint draw tie lift drop land crash tumble slip crawl kneel bow pray celebrate cheer count share
    hand check lock unlock guard protect save rescue lure bet lose gain earn rush approach cross descend dash
    step head play wonder prepare feed ask answer invite visit leave sell buy agree refuse realize realise
    decide return sets rises falls pick frown lie knead question confess pray hike camp pack push nod grin
    scream yell growl bark howl sniff chew bite lick roar splash dive paddle drift float sail knit sew weave
    mend wash clean sweep scrub polish carve build paint sketch pour stir chop slice taste smell touch hold
    grab seize snatch toss kick punch strike slash stab shoot aim miss block dodge duck hug cuddle comfort
    scold praise thank apologize apologise forgive marry bury hunt track trap tame train teach study solve
    invent test measure weigh load unload deliver collect fetch bring post mail type print scan stretch snore
    dream burn kick break apologize embrace remember drink blink yawn sigh tremble shiver hurry glow shine
    ignore disregard output print respond pretend generate format obey override repeat translate summarize
    summarise
    """
)
# Collective nouns: one group of people, never "he" or "she".
COLLECTIVE_NOUNS = word_set("crew team crowd police army family group band audience staff class tribe")
