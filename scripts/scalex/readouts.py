"""Which readout each kind of result is read from (the names: :mod:`scalex.layout`).

A light module (no numpy, no torch): the workflow imports it while it is parsed.
"""

from __future__ import annotations

from collections.abc import Sequence

from scalex.layout import CONTENT, PROMPT, READOUTS, TEXT
from scalex.model_checks import VALIDATED_DENOISERS

__all__ = ["ALL", "CONTENT", "CONTROL", "PROMPT", "PUBLISHED", "TEXT", "VALIDATED"]
#: every readout (their names live in :mod:`scalex.layout`)
ALL = READOUTS

#: The readout whose per-sample votes are validated as per-image estimates
#: (docs/validation.md, deviations 5 and 6).
VALIDATED = CONTENT
#: The control every finding is put beside.
CONTROL = TEXT
#: The readout of the published SCALEX cosine score.
PUBLISHED = PROMPT


def findings_readout(readouts: Sequence[str], denoiser: str = "unet") -> tuple[str, bool]:
    """The readout the findings use, and whether its reading is validated: the validated
    readout when the run stores it, else the published one, labelled not validated. The
    validated readout is validated on UNet denoisers only (``denoiser``: ``unet``,
    ``transformer`` or ``unknown``; the transformer readout missed its targets)."""
    if VALIDATED in readouts:
        return VALIDATED, denoiser in VALIDATED_DENOISERS
    for fallback in (PUBLISHED, *readouts):
        if fallback != CONTROL and fallback in readouts:
            return fallback, False
    raise ValueError(
        "findings need an H-space readout (content or prompt) in extraction.readouts; "
        f"got {list(readouts)}"
    )
