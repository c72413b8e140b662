"""Image readers of the check (``check.reader``): which of an identity axis's declared values an
image shows, read off the image itself rather than the H-space vote being checked.

A reader is a plug-in: a class with ``from_spec(check, world)`` and ``read(images, axis, values,
texts)``, named here by ``module:Class`` so that naming one imports nothing (the workflow plans
without torch). ``clip`` is zero-shot CLIP; ``world`` is the reference worlds' exact reader,
shipped by the ``scalex_refworld`` plug-in. A face-attribute classifier would be one more module
and one more line in :data:`READERS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

#: A reading that names no value: the reader is not sure enough (``check.margin``) or cannot
#: read the axis on this image.
UNDETERMINED = "undetermined"

#: Reader name -> ``module:Class``.
READERS = {
    "clip": "scalex.readers.clip:ClipReader",
    "world": "scalex_refworld.check_reader:WorldReader",
}


@dataclass(frozen=True)
class Reading:
    """One image's reading of one axis: a declared value or :data:`UNDETERMINED`, and how sure
    the reader is (top probability minus the second; 1 for an exact reader)."""

    value: str
    margin: float


class Reader(Protocol):
    def read(
        self,
        images: np.ndarray,
        axis: str,
        values: Sequence[str],
        texts: Sequence[Sequence[str]],
    ) -> list[Reading]:
        """Readings of ``images`` (N, H, W, 3) in [0, 1] on ``axis``, whose declared ``values``
        image ``i`` is to be told apart by ``texts[i]`` (one declared variant prompt per value,
        at the image's own template: "a photo of a female nurse", "... a male nurse")."""


def resolve(check: Mapping[str, Any], world: Path | None) -> str:
    """The reader ``check.reader`` names (``auto``: ``world`` on a reference-world model)."""
    name = str(check["reader"])
    if name == "auto":
        return "world" if world is not None else "clip"
    return name


def load_reader(check: Mapping[str, Any], world: Path | None) -> Reader:
    """The reader of a check, built from its settings (``world``: the model's planted table)."""
    module, cls = READERS[resolve(check, world)].split(":")
    return getattr(importlib.import_module(module), cls).from_spec(check, world)
