"""A tiny pictogram world with known, planted social statistics.

Every image is a 32x32 RGB pictogram of one person. Each attribute has one bold visual cue that
:mod:`scalex_refworld.reader` reads back with fixed rules:

===========  ======================  ==================================================
attribute    values                  cue
===========  ======================  ==================================================
family       medical, kitchen,       background colour (light blue, light orange,
             construction, office,   light green, lavender; grey for the neutral
             (none = "person")       "person")
profession   3 per family            accessory in one of three slots: a hat above the
                                     head (slot A), a bar on the left (slot B) or a
                                     block on the right (slot C), with its own colour
gender       woman, man              body shape: dress (a trapezoid down to the knees)
                                     vs trousers (a rectangle on two legs)
age          young, old              hair colour: dark vs white
wealth       rich, poor              clothing colour: gold vs brown
===========  ======================  ==================================================

Images of a profession always have its accessory and family background; the neutral "person"
has no accessory and a grey background. When a caption does not name gender, age or wealth, that
attribute is drawn from the planted table (``resources/reference/planted.tsv``), so the rates a
model trained on this world reproduces for "a photo of a nurse" are known exactly.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIZE = 32

#: family -> professions (slot order is given by ``SLOTS``).
FAMILIES: dict[str, tuple[str, ...]] = {
    "medical": ("doctor", "nurse", "surgeon"),
    "kitchen": ("chef", "baker", "waiter"),
    "construction": ("carpenter", "plumber", "electrician"),
    "office": ("lawyer", "secretary", "accountant"),
}
PROFESSIONS: tuple[str, ...] = tuple(p for ps in FAMILIES.values() for p in ps)
FAMILY_OF: dict[str, str] = {p: f for f, ps in FAMILIES.items() for p in ps}
#: the neutral identity: no profession, no accessory, grey background
PERSON = "person"
NO_FAMILY = "none"

GENDERS = ("woman", "man")
AGES = ("young", "old")
WEALTHS = ("rich", "poor")
#: descriptor axes (name -> the two values); the first value of each is the one whose
#: probability the planted table gives (``p_woman``, ``p_old``, ``p_rich``)
AXES: dict[str, tuple[str, str]] = {
    "gender": ("woman", "man"),
    "age": ("old", "young"),
    "wealth": ("rich", "poor"),
}
TABLE_COLUMNS = ("profession", "family", "p_woman", "p_old", "p_rich")

# ---------------------------------------------------------------- colours (RGB, 0-255)
BACKGROUND = {
    "medical": (150, 210, 250),
    "kitchen": (250, 200, 140),
    "construction": (170, 230, 130),
    "office": (200, 170, 240),
    NO_FAMILY: (200, 200, 200),
}
CLOTHING = {"rich": (235, 185, 20), "poor": (100, 55, 35)}
HAIR = {"young": (35, 25, 15), "old": (248, 248, 248)}
SKIN = (235, 190, 150)

#: Each family carries its accessories in one slot (medical: a cap, kitchen: an item in the left
#: hand, construction: a tool in the right hand, office: a bag at the right knee), as professions
#: of a family share a look; the accessory's colour tells the profession within the family.
#: A slot shared across families would make professions of different families look alike and
#: blur the family structure that the clustering check is meant to find.
FAMILY_SLOT: dict[str, str] = {"medical": "A", "kitchen": "B", "construction": "C", "office": "D"}
ACCESSORY_COLOUR: dict[str, tuple[int, int, int]] = {
    "doctor": (60, 60, 60),
    "nurse": (220, 20, 40),
    "surgeon": (0, 130, 120),
    "chef": (30, 60, 200),
    "baker": (200, 90, 0),
    "waiter": (20, 20, 20),
    "carpenter": (120, 50, 170),
    "plumber": (200, 0, 0),
    "electrician": (255, 230, 0),
    "lawyer": (10, 20, 90),
    "secretary": (230, 60, 150),
    "accountant": (0, 140, 60),
}
#: accessory slot and colour of each profession
ACCESSORY: dict[str, tuple[str, tuple[int, int, int]]] = {
    p: (FAMILY_SLOT[FAMILY_OF[p]], c) for p, c in ACCESSORY_COLOUR.items()
}
SLOTS = ("A", "B", "C", "D")

# ---------------------------------------------------------------- geometry (row y, column x)
# (y0, y1, x0, x1), inclusive-exclusive like numpy slices
SLOT_BOX = {
    "A": (0, 4, 10, 22),
    "B": (10, 28, 2, 6),
    "C": (13, 20, 25, 31),
    "D": (21, 28, 27, 31),
}
HAIR_BOX = (4, 7, 11, 21)
HEAD_BOX = (7, 14, 12, 20)
TORSO_BOX = (14, 23, 11, 21)  # trousers: torso
LEG_BOXES = ((23, 31, 11, 15), (23, 31, 17, 21))  # trousers: two legs with a gap at x 15..16
DRESS_ROWS = (14, 28)  # dress: trapezoid from half-width 5 (row 14) to 10 (row 27)
DRESS_LEGS = ((28, 31, 12, 14), (28, 31, 18, 20))


def dress_half_width(y: int) -> int:
    return 5 + int(round(5 * (y - DRESS_ROWS[0]) / (DRESS_ROWS[1] - 1 - DRESS_ROWS[0])))


@dataclass(frozen=True)
class Attributes:
    """One person of the world. ``profession`` is ``"person"`` for the neutral identity."""

    profession: str
    gender: str
    age: str
    wealth: str

    @property
    def family(self) -> str:
        return FAMILY_OF.get(self.profession, NO_FAMILY)


def all_combinations() -> list[Attributes]:
    """Every distinct identity of the world (13 professions incl. person x 2 x 2 x 2 = 104)."""
    return [
        Attributes(p, g, a, w)
        for p in (*PROFESSIONS, PERSON)
        for g in GENDERS
        for a in AGES
        for w in WEALTHS
    ]


# ---------------------------------------------------------------- rendering


def _jitter(colour, rng: np.random.Generator | None, amount: int) -> np.ndarray:
    c = np.asarray(colour, dtype=np.int16)
    if rng is not None and amount > 0:
        c = c + rng.integers(-amount, amount + 1, size=3)
    return np.clip(c, 0, 255).astype(np.uint8)


def render(
    attrs: Attributes, rng: np.random.Generator | None = None, jitter: int = 10
) -> np.ndarray:
    """Render one person as a ``(32, 32, 3)`` uint8 array.

    With ``rng`` each element's colour is shifted by up to ``jitter`` per channel (the only source
    of variation; the geometry is fixed), drawn from ``rng`` in a fixed order, so the image is a
    deterministic function of the attributes and the generator's state.
    """
    if attrs.profession not in ACCESSORY and attrs.profession != PERSON:
        raise ValueError(f"unknown profession {attrs.profession!r}")
    if attrs.gender not in GENDERS or attrs.age not in AGES or attrs.wealth not in WEALTHS:
        raise ValueError(f"bad attributes {attrs}")
    bg = _jitter(BACKGROUND[attrs.family], rng, jitter)
    cloth = _jitter(CLOTHING[attrs.wealth], rng, jitter)
    hair = _jitter(HAIR[attrs.age], rng, jitter)
    skin = _jitter(SKIN, rng, jitter)
    img = np.empty((SIZE, SIZE, 3), dtype=np.uint8)
    img[:] = bg

    def fill(box, colour):
        y0, y1, x0, x1 = box
        img[y0:y1, x0:x1] = colour

    fill(HAIR_BOX, hair)
    fill(HEAD_BOX, skin)
    if attrs.gender == "man":
        fill(TORSO_BOX, cloth)
        for box in LEG_BOXES:
            fill(box, cloth)
    else:
        for y in range(*DRESS_ROWS):
            hw = dress_half_width(y)
            img[y, 16 - hw : 16 + hw] = cloth
        for box in DRESS_LEGS:
            fill(box, skin)
    if attrs.profession != PERSON:
        slot, colour = ACCESSORY[attrs.profession]
        fill(SLOT_BOX[slot], _jitter(colour, rng, jitter))
    return img


def render_batch(attrs: Sequence[Attributes], seed: int = 0, jitter: int = 10) -> np.ndarray:
    """Render many people, ``(n, 32, 32, 3)`` uint8, deterministic from ``seed``."""
    rng = np.random.default_rng(seed)
    return np.stack([render(a, rng, jitter) for a in attrs])


# ---------------------------------------------------------------- the planted table


def load_table(path: str | Path) -> dict[str, dict[str, float]]:
    """Read the planted table: profession -> {"p_woman": .., "p_old": .., "p_rich": ..}."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows or tuple(rows[0].keys()) != TABLE_COLUMNS:
        raise ValueError(f"{path}: expected columns {TABLE_COLUMNS}")
    table = {}
    for row in rows:
        prof = row["profession"]
        if prof not in FAMILY_OF:
            raise ValueError(f"{path}: unknown profession {prof!r}")
        if row["family"] != FAMILY_OF[prof]:
            raise ValueError(f"{path}: {prof} belongs to {FAMILY_OF[prof]}, not {row['family']}")
        probs = {k: float(row[k]) for k in TABLE_COLUMNS[2:]}
        if not all(0.0 <= v <= 1.0 for v in probs.values()):
            raise ValueError(f"{path}: probabilities of {prof} outside [0, 1]")
        table[prof] = probs
    if set(table) != set(PROFESSIONS):
        raise ValueError(f"{path}: missing professions {sorted(set(PROFESSIONS) - set(table))}")
    return table


#: the neutral person's rates (not in the table: 50/50 on every axis)
PERSON_RATES = {"p_woman": 0.5, "p_old": 0.5, "p_rich": 0.5}


def rates_of(table: dict[str, dict[str, float]], profession: str) -> dict[str, float]:
    return PERSON_RATES if profession == PERSON else table[profession]


# ---------------------------------------------------------------- captions

TEMPLATES = ("a photo of {}", "a portrait of {}", "an image of {}", "a picture of {}")
#: gender words used before a profession ("a female nurse" / "a woman nurse")
GENDER_ADJECTIVES = {"woman": ("female", "woman"), "man": ("male", "man")}


def with_article(term: str) -> str:
    """``"old doctor"`` -> ``"an old doctor"``; ``"nurse"`` -> ``"a nurse"``."""
    return ("an " if term[0] in "aeiou" else "a ") + term


def make_term(
    profession: str,
    gender: str | None = None,
    age: str | None = None,
    wealth: str | None = None,
    gender_form: int = 0,
) -> str:
    """The noun phrase naming a person: ``[age] [wealth] [gender] profession``.

    For the neutral person the gender, when given, replaces the noun ("an old woman"); otherwise
    the noun is "person". ``gender_form`` picks "female"/"male" (0) or "woman"/"man" (1) before a
    profession.
    """
    words = [w for w in (age, wealth) if w]
    if profession == PERSON:
        words.append(gender if gender else PERSON)
    else:
        if gender:
            words.append(GENDER_ADJECTIVES[gender][gender_form])
        words.append(profession)
    return " ".join(words)


def make_caption(template: str, term: str) -> str:
    return template.format(with_article(term))


@dataclass(frozen=True)
class CaptionConfig:
    """How training captions are drawn."""

    p_empty: float = 0.1  # unconditional captions for classifier-free guidance
    p_person: float = 0.2  # share of neutral "person" images among the rest
    p_mention: float = 0.35  # each of gender, age, wealth is named with this probability


def all_captions() -> list[str]:
    """Every caption :func:`sample_examples` can produce (sorted; includes the empty one)."""
    caps = {""}
    for t in TEMPLATES:
        for prof in (*PROFESSIONS, PERSON):
            for g in (None, *GENDERS):
                for a in (None, *AGES):
                    for w in (None, *WEALTHS):
                        forms = (0, 1) if (g and prof != PERSON) else (0,)
                        for f in forms:
                            caps.add(make_caption(t, make_term(prof, g, a, w, f)))
    return sorted(caps)


def sample_examples(
    n: int,
    table: dict[str, dict[str, float]],
    rng: np.random.Generator,
    cfg: CaptionConfig = CaptionConfig(),  # noqa: B008 - frozen dataclass
) -> tuple[list[Attributes], list[str]]:
    """Draw ``n`` (attributes, caption) training pairs.

    The identity is drawn first (profession uniform, or the neutral person with ``p_person``;
    gender/age/wealth from the planted rates), then each attribute is named in the caption
    independently of its value with probability ``p_mention``. Hence, given a caption that does
    not name an attribute, its value follows the planted rate exactly.
    """
    attrs, caps = [], []
    for _ in range(n):
        prof = (
            PERSON if rng.random() < cfg.p_person else PROFESSIONS[rng.integers(len(PROFESSIONS))]
        )
        r = rates_of(table, prof)
        gender = "woman" if rng.random() < r["p_woman"] else "man"
        age = "old" if rng.random() < r["p_old"] else "young"
        wealth = "rich" if rng.random() < r["p_rich"] else "poor"
        a = Attributes(prof, gender, age, wealth)
        named = rng.random(3) < cfg.p_mention
        template = TEMPLATES[rng.integers(len(TEMPLATES))]
        form = int(rng.integers(2))
        if rng.random() < cfg.p_empty:
            cap = ""
        else:
            term = make_term(
                prof,
                gender if named[0] else None,
                age if named[1] else None,
                wealth if named[2] else None,
                form,
            )
            cap = make_caption(template, term)
        attrs.append(a)
        caps.append(cap)
    return attrs, caps


def combination_index(a: Attributes) -> int:
    """Position of ``a`` in :func:`all_combinations`."""
    profs = (*PROFESSIONS, PERSON)
    return (
        (profs.index(a.profession) * 2 + GENDERS.index(a.gender)) * 2 + AGES.index(a.age)
    ) * 2 + (WEALTHS.index(a.wealth))
