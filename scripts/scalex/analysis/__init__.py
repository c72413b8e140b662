"""Analyses of concept directions: defaults (bias), descriptors, discovery, and their figures.

Everything here works on plain numpy arrays and pandas DataFrames — a concept's seed-paired
differences to the baseline, shape ``(prompts, seeds, steps, features)`` — so it does not depend
on how the pipeline stores activations. See :mod:`scalex.analysis.stats` for the conventions.
"""

from scalex.analysis.defaults import correlate_with_reference, default_bias
from scalex.analysis.descriptors import descriptor_alignment, top_descriptors
from scalex.analysis.discovery import rank_vocabulary
from scalex.analysis.stats import (
    ConceptData,
    PairedBootstrap,
    bootstrap_directions,
    bootstrap_dots,
    cosine_from_dots,
    direction,
    percentile_ci,
)
from scalex.vectors import cosine, unit

__all__ = [
    "ConceptData",
    "PairedBootstrap",
    "bootstrap_directions",
    "bootstrap_dots",
    "correlate_with_reference",
    "cosine",
    "cosine_from_dots",
    "default_bias",
    "descriptor_alignment",
    "direction",
    "percentile_ci",
    "rank_vocabulary",
    "top_descriptors",
    "unit",
]
