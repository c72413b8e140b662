"""Concept directions in H-space: seed-paired differences to the baseline, averaged, unit norm.

``d_c = unit(mean_{p, s} [h(p, s) - mean_b h(b, s)])``: pairing by seed cancels the part of the
activation that the initial noise decides, which is most of it. The split-half stability (cosine
between the directions of two disjoint halves of the seeds) says how much noise is left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scalex.errors import DirectionError
from scalex.vectors import cosine, unit


def flatten_features(acts: np.ndarray) -> np.ndarray:
    """(P, S, T, C[, h, w]) -> (P, S, T, D) float32."""
    return acts.reshape(*acts.shape[:3], -1).astype(np.float32, copy=False)


def paired_differences(acts: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Seed-paired differences ``h(p, s, t) - mean_b h(b, s, t)``, shape (P, S, T, D)."""
    acts, baseline = flatten_features(acts), flatten_features(baseline)
    if acts.shape[1:] != baseline.shape[1:]:
        raise DirectionError(
            f"activations {acts.shape[1:]} and baseline {baseline.shape[1:]} differ in seeds, "
            "steps or features"
        )
    return acts - baseline.mean(axis=0, keepdims=True)


@dataclass
class ConceptDirection:
    """A concept's direction per kept step (T, D) and aggregated over steps (D,)."""

    per_step: np.ndarray
    aggregate: np.ndarray
    mean_diff: np.ndarray
    split_half: float
    n_prompts: int
    n_seeds: int


def split_half_stability(diffs: np.ndarray) -> float:
    """Cosine between the aggregate directions of the even and the odd seeds."""
    if diffs.shape[1] < 2:
        return float("nan")
    a = diffs[:, 0::2].mean(axis=(0, 1, 2))
    b = diffs[:, 1::2].mean(axis=(0, 1, 2))
    try:
        return float(cosine(a, b))
    except DirectionError:  # a half with no direction: no stability to report
        return float("nan")


def concept_direction(diffs: np.ndarray, concept_id: str = "concept") -> ConceptDirection:
    """Directions of one concept from its (P, S, T, D) paired differences."""
    mean_diff = diffs.mean(axis=(0, 1), dtype=np.float64).astype(np.float32)  # (T, D)
    return ConceptDirection(
        per_step=unit(mean_diff, what=f"direction of {concept_id!r}"),
        aggregate=unit(mean_diff.mean(axis=0), what=f"direction of {concept_id!r}"),
        mean_diff=mean_diff,
        split_half=split_half_stability(diffs),
        n_prompts=int(diffs.shape[0]),
        n_seeds=int(diffs.shape[1]),
    )
