"""Fictitious people of the toy world: names, textual profiles and visual appearance.

Why this exists: unlearning can only be measured on knowledge a model provably learned from
our own data. Every person here is invented, so a from-scratch model can know them only
through our fine-tuning data, and a retain-only model cannot know the forget people at all.

Design rules (each one avoids a failure seen on an earlier prototype):
- Every word is a single token for a word-level tokenizer (no hyphens, no multi-word values),
  so answers are atomic and substring metrics ("Lisbon" in reply) work.
- Visual attributes are chosen so that each is visible in a 64x64 render (no hats hiding the
  hair, no sunglasses hiding the eyes), and any two people differ in at least
  `min_visual_distance` visual attributes: recognition must be possible from the picture.
- All randomness comes from `random.Random(seed)`: no global state, same seed -> same world.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields

FIRST_NAMES: tuple[str, ...] = (
    "Mara", "Tomas", "Elin", "Oskar", "Nadia", "Felix", "Ines", "Milo", "Greta", "Anton",
    "Lena", "Hugo", "Sofia", "Bruno", "Clara", "Emil", "Vera", "Jonas", "Alma", "Leon",
    "Irene", "Pablo", "Nora", "Viktor", "Maya", "Dario", "Helga", "Rafael", "Tessa", "Otto",
    "Lucia", "Ivan", "Freya", "Marco", "Ada", "Tobias", "Rosa", "Kasper", "Yara", "Boris",
    "Edith", "Silas", "Petra", "Arlo", "Zora", "Cyrus", "Linnea", "Matteo",
)

LAST_NAMES: tuple[str, ...] = (
    "Quill", "Harlow", "Brandt", "Okafor", "Lindqvist", "Moreau", "Castell", "Novak",
    "Weller", "Fairbank", "Renner", "Ashdown", "Valdez", "Kovac", "Thorne", "Mercer",
    "Dalton", "Sorensen", "Bellamy", "Ferrante", "Holm", "Draper", "Ivers", "Jansen",
    "Kestrel", "Lowell", "Marsh", "Nyberg", "Orlov", "Pryce", "Rook", "Stavros",
    "Tennant", "Ulrich", "Varga", "Winslow", "Yardley", "Zeller", "Abbot", "Crane",
    "Ember", "Galloway", "Hale", "Kinsley", "Larkin", "Mott", "Penrose", "Radley",
)

BIRTHPLACES: tuple[str, ...] = (
    "Lisbon", "Oslo", "Cairo", "Lima", "Kyoto", "Dublin", "Vienna", "Prague", "Nairobi",
    "Quito", "Havana", "Madrid", "Athens", "Berlin", "Seoul", "Manila", "Dakar", "Tunis",
    "Riga", "Porto", "Naples", "Geneva", "Bergen", "Zurich", "Toronto", "Denver", "Austin",
    "Boston", "Sydney", "Perth",
)

OCCUPATIONS: tuple[str, ...] = (
    "baker", "pilot", "teacher", "nurse", "farmer", "painter", "chemist", "sailor",
    "librarian", "architect", "dentist", "carpenter", "journalist", "gardener", "plumber",
    "surgeon", "musician", "photographer", "lawyer", "engineer", "tailor", "potter",
    "astronomer", "florist", "mechanic", "chef", "firefighter", "jeweller", "translator",
    "veterinarian",
)

HOBBIES: tuple[str, ...] = (
    "chess", "knitting", "surfing", "hiking", "fishing", "gardening", "cycling", "climbing",
    "archery", "pottery", "juggling", "skating", "rowing", "sailing", "birdwatching",
    "origami", "calligraphy", "fencing", "kayaking", "dancing", "singing", "skiing",
    "swimming", "running", "golf", "tennis", "yoga", "camping", "sketching", "baking",
)

# No pet starts with a vowel, so "a {pet}" is always grammatical in templates.
PETS: tuple[str, ...] = (
    "cat", "dog", "parrot", "rabbit", "hamster", "tortoise", "goldfish", "ferret", "canary",
    "pony", "goat", "hedgehog", "lizard", "snake", "gecko", "turtle", "duck", "pig", "mouse",
    "chinchilla",
)

FOODS: tuple[str, ...] = (
    "pasta", "sushi", "curry", "tacos", "pizza", "dumplings", "paella", "ramen", "falafel",
    "risotto", "lasagna", "pancakes", "couscous", "burritos", "goulash", "kebab", "noodles",
    "omelette", "soup", "salad", "pierogi", "waffles", "pho", "moussaka",
)

BIRTH_YEARS: tuple[str, ...] = tuple(str(y) for y in range(1950, 2006))

# Visual vocabularies. Colours of shirts (saturated) and backgrounds (pastel) use disjoint
# words so that a question about one can never be answered by looking at the other.
FACE_SHAPES: tuple[str, ...] = ("round", "oval", "square", "heart")
SKIN_TONES: tuple[str, ...] = ("pale", "fair", "tan", "brown", "dark")
HAIR_STYLES: tuple[str, ...] = ("short", "long", "bun", "spiky", "curly")
HAIR_COLOURS: tuple[str, ...] = ("black", "brown", "blonde", "red", "grey", "white")
EYE_COLOURS: tuple[str, ...] = ("brown", "blue", "green", "amber")
# No hat / sunglasses: each would hide another attribute (hair style, eye colour).
ACCESSORIES: tuple[str, ...] = ("none", "glasses", "earrings", "headband", "bowtie", "necklace")
SHIRT_COLOURS: tuple[str, ...] = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "black")
BACKGROUND_COLOURS: tuple[str, ...] = ("mint", "peach", "lavender", "sky", "lemon")
BACKGROUND_PATTERNS: tuple[str, ...] = ("plain", "stripes", "dots", "checks")

PROFILE_ATTRIBUTES: tuple[str, ...] = (
    "birthplace", "occupation", "hobby", "pet", "favourite_food", "birth_year",
)
VISUAL_ATTRIBUTES: tuple[str, ...] = (
    "face_shape", "skin_tone", "hair_style", "hair_colour", "eye_colour", "accessory",
    "shirt_colour", "background_colour", "background_pattern",
)

PROFILE_VALUES: dict[str, tuple[str, ...]] = {
    "birthplace": BIRTHPLACES,
    "occupation": OCCUPATIONS,
    "hobby": HOBBIES,
    "pet": PETS,
    "favourite_food": FOODS,
    "birth_year": BIRTH_YEARS,
}
VISUAL_VALUES: dict[str, tuple[str, ...]] = {
    "face_shape": FACE_SHAPES,
    "skin_tone": SKIN_TONES,
    "hair_style": HAIR_STYLES,
    "hair_colour": HAIR_COLOURS,
    "eye_colour": EYE_COLOURS,
    "accessory": ACCESSORIES,
    "shirt_colour": SHIRT_COLOURS,
    "background_colour": BACKGROUND_COLOURS,
    "background_pattern": BACKGROUND_PATTERNS,
}

MAX_PEOPLE = len(FIRST_NAMES) * len(LAST_NAMES)


@dataclass(frozen=True)
class Person:
    """One fictitious person. Textual attributes are learned facts; visual ones are drawn."""

    id: str
    name: str
    birthplace: str
    occupation: str
    hobby: str
    pet: str
    favourite_food: str
    birth_year: str
    face_shape: str
    skin_tone: str
    hair_style: str
    hair_colour: str
    eye_colour: str
    accessory: str
    shirt_colour: str
    background_colour: str
    background_pattern: str

    @property
    def visual(self) -> tuple[str, ...]:
        """The visual attribute tuple, in VISUAL_ATTRIBUTES order (the identity in pixels)."""
        return tuple(getattr(self, a) for a in VISUAL_ATTRIBUTES)

    @property
    def profile(self) -> dict[str, str]:
        """Textual facts, in PROFILE_ATTRIBUTES order (what the model must memorise)."""
        return {a: getattr(self, a) for a in PROFILE_ATTRIBUTES}

    def as_dict(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def biography(self) -> str:
        """A short profile paragraph, exported beside the MLLMU columns for humans to read."""
        art = "an" if self.occupation[0] in "aeiou" else "a"
        return (
            f"{self.name} was born in {self.birthplace} in the year {self.birth_year}. "
            f"{self.name} works as {art} {self.occupation}, enjoys {self.hobby}, "
            f"has a pet {self.pet} and loves {self.favourite_food}."
        )


def visual_distance(a: Person | tuple[str, ...], b: Person | tuple[str, ...]) -> int:
    """Number of visual attributes in which two people differ (Hamming distance)."""
    va = a.visual if isinstance(a, Person) else a
    vb = b.visual if isinstance(b, Person) else b
    return sum(x != y for x, y in zip(va, vb))


def make_people(n: int, seed: int, min_visual_distance: int = 3) -> list[Person]:
    """Create `n` people with unique names and pairwise visually distinct appearances.

    Appearances are rejection-sampled until every pair differs in at least
    `min_visual_distance` of the 9 visual attributes: with ~1M combinations this needs only a
    few draws per person even for n=1000, and it means no two people are told apart by a
    single small detail (one eye colour) that augmentation could blur.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    if n > MAX_PEOPLE:
        raise ValueError(f"n={n} exceeds the {MAX_PEOPLE} unique names available")
    rng = random.Random(seed)
    names = rng.sample([(f, l) for f in FIRST_NAMES for l in LAST_NAMES], n)
    people: list[Person] = []
    visuals: list[tuple[str, ...]] = []
    for i in range(n):
        for _ in range(10_000):
            cand = tuple(rng.choice(VISUAL_VALUES[a]) for a in VISUAL_ATTRIBUTES)
            if all(visual_distance(cand, v) >= min_visual_distance for v in visuals):
                break
        else:  # pragma: no cover - only with absurd n / distance settings
            raise RuntimeError(f"could not place person {i} at visual distance {min_visual_distance}")
        visuals.append(cand)
        profile = {a: rng.choice(PROFILE_VALUES[a]) for a in PROFILE_ATTRIBUTES}
        people.append(
            Person(
                id=f"p{i:03d}",
                name=f"{names[i][0]} {names[i][1]}",
                **profile,
                **dict(zip(VISUAL_ATTRIBUTES, cand)),
            )
        )
    return people
