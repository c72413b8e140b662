"""A tiny pictogram world with known, planted social statistics, defined by one table.

Every image is a 32x32 RGB pictogram of one person. Each attribute has one bold visual cue that
:mod:`scalex_refworld.reader` reads back with fixed rules:

===========  ======================  ==================================================
attribute    values                  cue
===========  ======================  ==================================================
family       the table's families    background colour (the table's; grey for the
             (none = "person")       neutral "person")
profession   the table's rows        accessory in its family's slot (A: a cap above the
                                     head, B: a bar in the left hand, C: a block at the
                                     right hand, D: a bag at the right knee), in the
                                     profession's own colour
gender       woman, man              body shape: dress (a trapezoid down to the knees)
                                     vs trousers (a rectangle on two legs)
age          young, old              hair colour: dark vs white
wealth       rich, poor              clothing colour: gold vs brown
===========  ======================  ==================================================

The world is data: a *world table* (``resources/worlds/<name>/world.tsv``) lists every
profession with its family, the family's look (accessory slot and background colour), the
profession's accessory colour and its planted rates ``p_woman``, ``p_old``, ``p_rich``. The
families are whatever the table says, so a table can group a doctor, a chef and an electrician
under one look, against the semantic categories a text encoder knows. When a caption does not
name gender, age or wealth, that attribute is drawn from the planted rates, so the rates a model
trained on the world reproduces for "a photo of a nurse" are known exactly.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SIZE = 32

#: the neutral identity: no profession, no accessory, grey background
PERSON = "person"
NO_FAMILY = "none"

GENDERS = ("woman", "man")
AGES = ("young", "old")
WEALTHS = ("rich", "poor")
#: descriptor axes (name -> the two values); the first value of each is the one whose
#: probability the table gives (``p_woman``, ``p_old``, ``p_rich``)
AXES: dict[str, tuple[str, str]] = {
    "gender": ("woman", "man"),
    "age": ("old", "young"),
    "wealth": ("rich", "poor"),
}
RATE_COLUMNS = ("p_woman", "p_old", "p_rich")
TABLE_COLUMNS = ("profession", "family", "slot", "background", "accessory", *RATE_COLUMNS)

# ---------------------------------------------------------------- fixed colours (RGB, 0-255)
NO_FAMILY_BACKGROUND = (200, 200, 200)
CLOTHING = {"rich": (235, 185, 20), "poor": (100, 55, 35)}
HAIR = {"young": (35, 25, 15), "old": (248, 248, 248)}
SKIN = (235, 190, 150)
#: colours closer than this (Euclidean, 0-255 RGB) would be confused by the reader under the
#: renderer's +-10 jitter per channel and the model's blur
MIN_COLOUR_DISTANCE = 40.0

# ---------------------------------------------------------------- geometry (row y, column x)
SLOTS = ("A", "B", "C", "D")
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

#: the committed worlds, each a folder with ``world.tsv`` and its trained ``model/``
WORLDS_DIR = Path(__file__).resolve().parents[2] / "resources" / "worlds"
DEFAULT_WORLD = "stereotyped"

RGB = tuple[int, int, int]


def dress_half_width(y: int) -> int:
    return 5 + int(round(5 * (y - DRESS_ROWS[0]) / (DRESS_ROWS[1] - 1 - DRESS_ROWS[0])))


@dataclass(frozen=True)
class Attributes:
    """One person of the world. ``profession`` is ``"person"`` for the neutral identity."""

    profession: str
    gender: str
    age: str
    wealth: str


def _colour(text: str, where: str) -> RGB:
    if not re.fullmatch(r"#[0-9a-fA-F]{6}", text):
        raise ValueError(f"{where}: expected a colour like #96d2fa, got {text!r}")
    return tuple(int(text[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def _distance(a: Sequence[int], b: Sequence[int]) -> float:
    return float(np.sqrt(((np.asarray(a, float) - np.asarray(b, float)) ** 2).sum()))


@dataclass(frozen=True)
class World:
    """The world one table defines: professions, families with their look, planted rates."""

    name: str
    #: family -> its professions, in table order
    families: dict[str, tuple[str, ...]]
    family_slot: dict[str, str]
    background: dict[str, RGB]  # includes NO_FAMILY
    accessory_colour: dict[str, RGB]
    #: profession -> {"p_woman", "p_old", "p_rich"}
    rates: dict[str, dict[str, float]]
    professions: tuple[str, ...] = field(init=False)
    family_of: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        profs = tuple(p for ps in self.families.values() for p in ps)
        object.__setattr__(self, "professions", profs)
        object.__setattr__(self, "family_of", {p: f for f, ps in self.families.items() for p in ps})

    # ------------------------------------------------------------ loading
    @classmethod
    def from_table(cls, path: str | Path, name: str | None = None) -> World:
        """Read and check a world table; every error names the file, row and column."""
        path = Path(path)
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if not rows or tuple(rows[0].keys()) != TABLE_COLUMNS:
            raise ValueError(f"{path}, line 1: expected the columns {', '.join(TABLE_COLUMNS)}")
        families: dict[str, list[str]] = {}
        slot: dict[str, str] = {}
        background: dict[str, RGB] = {NO_FAMILY: NO_FAMILY_BACKGROUND}
        accessory: dict[str, RGB] = {}
        rates: dict[str, dict[str, float]] = {}
        for n, row in enumerate(rows, start=2):
            where = f"{path}, line {n}"
            prof, fam = row["profession"].strip(), row["family"].strip()
            if not re.fullmatch(r"[a-z][a-z ]*[a-z]", prof) or prof == PERSON:
                raise ValueError(f"{where}: profession {prof!r} must be lower-case words")
            if prof in rates:
                raise ValueError(f"{where}: profession {prof!r} appears twice")
            if not fam or fam == NO_FAMILY:
                raise ValueError(f"{where}: family {fam!r} is reserved or empty")
            if row["slot"] not in SLOTS:
                raise ValueError(f"{where}: slot must be one of {', '.join(SLOTS)}")
            bg = _colour(row["background"], f"{where}, background")
            if fam in slot and (slot[fam], background[fam]) != (row["slot"], bg):
                raise ValueError(f"{where}: family {fam!r} has one slot and one background")
            slot[fam], background[fam] = row["slot"], bg
            accessory[prof] = _colour(row["accessory"], f"{where}, accessory")
            try:
                probs = {k: float(row[k]) for k in RATE_COLUMNS}
            except ValueError as err:
                raise ValueError(f"{where}: rates must be numbers ({err})") from None
            if not all(0.0 <= v <= 1.0 for v in probs.values()):
                raise ValueError(f"{where}: rates of {prof!r} outside [0, 1]")
            rates[prof] = probs
            families.setdefault(fam, []).append(prof)
        world = cls(
            name=name or path.parent.name,
            families={f: tuple(ps) for f, ps in families.items()},
            family_slot=slot,
            background=background,
            accessory_colour=accessory,
            rates=rates,
        )
        world._check_readable(path)
        return world

    def _check_readable(self, path: Path) -> None:
        """Refuse looks the reader could confuse (the ground truth must be readable)."""
        fams = list(self.background)
        for i, a in enumerate(fams):
            for b in fams[i + 1 :]:
                if _distance(self.background[a], self.background[b]) < MIN_COLOUR_DISTANCE:
                    raise ValueError(f"{path}: backgrounds of {a!r} and {b!r} are too alike")
        for fam, profs in self.families.items():
            for i, a in enumerate(profs):
                ca = self.accessory_colour[a]
                if _distance(ca, self.background[fam]) < MIN_COLOUR_DISTANCE:
                    raise ValueError(f"{path}: accessory of {a!r} is too like its background")
                for b in profs[i + 1 :]:
                    if _distance(ca, self.accessory_colour[b]) < MIN_COLOUR_DISTANCE:
                        raise ValueError(f"{path}: accessories of {a!r} and {b!r} are too alike")

    # ------------------------------------------------------------ identities
    def family(self, profession: str) -> str:
        return self.family_of.get(profession, NO_FAMILY)

    def rates_of(self, profession: str) -> dict[str, float]:
        return PERSON_RATES if profession == PERSON else self.rates[profession]

    def all_combinations(self) -> list[Attributes]:
        """Every distinct identity (professions and person x 2 x 2 x 2)."""
        return [
            Attributes(p, g, a, w)
            for p in (*self.professions, PERSON)
            for g in GENDERS
            for a in AGES
            for w in WEALTHS
        ]

    def combination_index(self, a: Attributes) -> int:
        """Position of ``a`` in :meth:`all_combinations`."""
        profs = (*self.professions, PERSON)
        return (
            (profs.index(a.profession) * 2 + GENDERS.index(a.gender)) * 2 + AGES.index(a.age)
        ) * 2 + (WEALTHS.index(a.wealth))

    # ------------------------------------------------------------ rendering
    def render(
        self, attrs: Attributes, rng: np.random.Generator | None = None, jitter: int = 10
    ) -> np.ndarray:
        """Render one person as a ``(32, 32, 3)`` uint8 array.

        With ``rng`` each element's colour is shifted by up to ``jitter`` per channel (the only
        source of variation; the geometry is fixed), drawn from ``rng`` in a fixed order, so the
        image is a deterministic function of the attributes and the generator's state.
        """
        if attrs.profession not in self.accessory_colour and attrs.profession != PERSON:
            raise ValueError(f"unknown profession {attrs.profession!r}")
        if attrs.gender not in GENDERS or attrs.age not in AGES or attrs.wealth not in WEALTHS:
            raise ValueError(f"bad attributes {attrs}")
        family = self.family(attrs.profession)
        bg = _jitter(self.background[family], rng, jitter)
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
            fill(
                SLOT_BOX[self.family_slot[family]],
                _jitter(self.accessory_colour[attrs.profession], rng, jitter),
            )
        return img

    def render_batch(
        self, attrs: Sequence[Attributes], seed: int = 0, jitter: int = 10
    ) -> np.ndarray:
        """Render many people, ``(n, 32, 32, 3)`` uint8, deterministic from ``seed``."""
        rng = np.random.default_rng(seed)
        return np.stack([self.render(a, rng, jitter) for a in attrs])

    # ------------------------------------------------------------ captions
    def all_captions(self) -> list[str]:
        """Every caption :meth:`sample_examples` can produce (sorted; includes the empty one)."""
        caps = {""}
        for t in TEMPLATES:
            for prof in (*self.professions, PERSON):
                for g in (None, *GENDERS):
                    for a in (None, *AGES):
                        for w in (None, *WEALTHS):
                            forms = (0, 1) if (g and prof != PERSON) else (0,)
                            for f in forms:
                                caps.add(make_caption(t, make_term(prof, g, a, w, f)))
        return sorted(caps)

    def sample_examples(
        self,
        n: int,
        rng: np.random.Generator,
        cfg: CaptionConfig | None = None,
    ) -> tuple[list[Attributes], list[str]]:
        """Draw ``n`` (attributes, caption) training pairs.

        The identity is drawn first (profession uniform, or the neutral person with
        ``p_person``; gender/age/wealth from the planted rates), then each attribute is named in
        the caption independently of its value with probability ``p_mention``. Hence, given a
        caption that does not name an attribute, its value follows the planted rate exactly.
        """
        cfg = cfg or CaptionConfig()
        profs = self.professions
        attrs, caps = [], []
        for _ in range(n):
            prof = PERSON if rng.random() < cfg.p_person else profs[rng.integers(len(profs))]
            r = self.rates_of(prof)
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


def _jitter(colour, rng: np.random.Generator | None, amount: int) -> np.ndarray:
    c = np.asarray(colour, dtype=np.int16)
    if rng is not None and amount > 0:
        c = c + rng.integers(-amount, amount + 1, size=3)
    return np.clip(c, 0, 255).astype(np.uint8)


def world_table(name: str = DEFAULT_WORLD) -> Path:
    """The table of a committed world."""
    return WORLDS_DIR / name / "world.tsv"


def world_model(name: str = DEFAULT_WORLD) -> Path:
    """The trained model folder of a committed world."""
    return WORLDS_DIR / name / "model"


def committed_worlds(denoiser: str | None = None) -> list[str]:
    """Names of the committed worlds (folders with a table and a trained model); with
    ``denoiser`` (``unet`` or ``dit``) only the worlds whose model has that denoiser."""
    return sorted(
        p.name
        for p in WORLDS_DIR.iterdir()
        if (p / "world.tsv").is_file()
        and (p / "model" / "model_index.json").is_file()
        and denoiser in (None, "dit" if (p / "model" / "transformer").is_dir() else "unet")
    )


def load_world(table_or_name: str | Path = DEFAULT_WORLD) -> World:
    """A world from a committed world's name or a table path."""
    p = Path(table_or_name)
    if p.suffix == ".tsv" or p.is_file():
        return World.from_table(p)
    return World.from_table(world_table(str(table_or_name)), name=str(table_or_name))


#: the neutral person's rates (not in the table: 50/50 on every axis)
PERSON_RATES = {"p_woman": 0.5, "p_old": 0.5, "p_rich": 0.5}


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
