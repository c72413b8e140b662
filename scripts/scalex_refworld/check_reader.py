"""The reference worlds' reader as a check reader (``check.reader: world``): each image's gender,
age and wealth read off the pictogram with fixed rules (:mod:`scalex_refworld.reader`), mapped to
the axis's declared values. Exact on a world's own images, so the check on a reference world
measures the vote alone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scalex.errors import ConfigError
from scalex.readers import UNDETERMINED, Reading

from scalex_refworld import world as W
from scalex_refworld.reader import read
from scalex_refworld.sample_check import VOTE_READING


class WorldReader:
    def __init__(self, world: W.World):
        self.world = world

    @classmethod
    def from_spec(cls, check: Mapping[str, Any], world: Path | None) -> WorldReader:
        if world is None:
            raise ConfigError(
                "check.reader 'world' reads reference-world images only: this model has no "
                "planted world table (use check.reader: clip)"
            )
        return cls(W.World.from_table(world))

    def read(
        self,
        images: np.ndarray,
        axis: str,
        values: Sequence[str],
        texts: Sequence[Sequence[str]],
    ) -> list[Reading]:
        """The world reader's attribute named like the axis; a declared value it cannot name
        (another axis, another vocabulary) reads as undetermined."""
        mapping = VOTE_READING.get(axis, {})
        by_reading = {mapping[v]: v for v in values if v in mapping}
        readings = read(images, self.world)
        return [
            Reading(by_reading[getattr(r, axis)], 1.0)
            if axis in VOTE_READING and getattr(r, axis) in by_reading
            else Reading(UNDETERMINED, 0.0)
            for r in readings
        ]
