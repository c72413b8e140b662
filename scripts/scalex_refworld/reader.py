"""Read the attributes of a 32x32 image of the reference world back with fixed rules.

No learned classifier: each attribute is the nearest reference colour (or shape test) in a fixed
region of the image, see :mod:`scalex_refworld.world` for the layout; the families, their slots
and the accessory colours are the given world's. Works on uint8 images
(0-255) and on float images in [0, 1] (the diffusers pipeline's ``output_type="np"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import world as W


@dataclass(frozen=True)
class Reading:
    profession: str  # a profession or "person"
    family: str  # a family or "none"
    gender: str
    age: str
    wealth: str
    accessory_score: float  # colour distance of the strongest accessory slot from the background

    def as_dict(self) -> dict:
        return {
            "profession": self.profession,
            "family": self.family,
            "gender": self.gender,
            "age": self.age,
            "wealth": self.wealth,
        }


def _as_float255(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    if x.shape[-1] != 3 and x.shape[1] == 3:  # NCHW -> NHWC
        x = np.moveaxis(x, 1, -1)
    if x.shape[1:] != (W.SIZE, W.SIZE, 3):
        raise ValueError(f"expected images of shape (N, 32, 32, 3), got {x.shape}")
    x = x.astype(np.float32)
    if np.issubdtype(np.asarray(images).dtype, np.floating) and x.max() <= 1.0 + 1e-6:
        x = x * 255.0
    return x


def _mean(x: np.ndarray, box) -> np.ndarray:
    y0, y1, x0, x1 = box
    return x[:, y0:y1, x0:x1].reshape(len(x), -1, 3).mean(axis=1)


def _nearest(colours: np.ndarray, refs: dict[str, tuple]) -> list[str]:
    names = list(refs)
    ref = np.array([refs[k] for k in names], dtype=np.float32)
    d = ((colours[:, None, :] - ref[None]) ** 2).sum(-1)
    return [names[i] for i in d.argmin(1)]


# regions read (inside the areas the renderer paints, away from their edges)
_CORNERS = [(0, 3, 0, 8), (0, 3, 24, 32), (29, 32, 0, 5), (29, 32, 27, 32)]
_READ_SLOT = {
    "A": (0, 3, 11, 21),
    "B": (11, 27, 2, 6),
    "C": (14, 19, 26, 30),
    "D": (22, 27, 28, 30),
}
_READ_HAIR = (4, 6, 12, 20)
_READ_TORSO = (15, 22, 13, 19)
_READ_GAP = (24, 28, 15, 17)  # between the trouser legs: background; dress: cloth
_READ_SIDES = [(24, 28, 8, 10), (24, 28, 22, 24)]  # beside the trousers: background; dress: cloth


def read(images: np.ndarray, world: W.World) -> list[Reading]:
    """Read every image of an ``(N, 32, 32, 3)`` batch (or a single image) of ``world``."""
    x = _as_float255(images)
    n = len(x)
    corners = np.concatenate(
        [x[:, y0:y1, x0:x1].reshape(n, -1, 3) for y0, y1, x0, x1 in _CORNERS], axis=1
    )
    bg = np.median(corners, axis=1)
    families = _nearest(bg, world.background)
    # accessory: the slot whose colour departs most from the background
    slot_scores = np.stack(
        [np.sqrt(((_mean(x, _READ_SLOT[s]) - bg) ** 2).sum(-1)) for s in W.SLOTS], axis=1
    )
    ages = _nearest(_mean(x, _READ_HAIR), W.HAIR)
    cloth = _mean(x, _READ_TORSO)
    wealths = _nearest(cloth, W.CLOTHING)
    # gender: does the lower body region look like the background or like the clothing?
    lower = np.concatenate(
        [x[:, y0:y1, x0:x1].reshape(n, -1, 3) for y0, y1, x0, x1 in [_READ_GAP, *_READ_SIDES]],
        axis=1,
    ).mean(axis=1)
    d_bg = ((lower - bg) ** 2).sum(-1)
    d_cloth = ((lower - cloth) ** 2).sum(-1)
    genders = np.where(d_cloth < d_bg, "woman", "man")
    out = []
    for i in range(n):
        fam = families[i]
        if fam == W.NO_FAMILY:
            prof = W.PERSON
        else:
            # the family's slot holds the accessory; its colour tells the profession
            colour = _mean(x[i : i + 1], _READ_SLOT[world.family_slot[fam]])[0]
            prof = min(
                world.families[fam],
                key=lambda p: float(((colour - np.asarray(world.accessory_colour[p])) ** 2).sum()),
            )
        out.append(
            Reading(
                profession=prof,
                family=fam,
                gender=str(genders[i]),
                age=ages[i],
                wealth=wealths[i],
                accessory_score=float(slot_scores[i].max()),
            )
        )
    return out


def read_one(image: np.ndarray, world: W.World) -> Reading:
    return read(image, world)[0]
