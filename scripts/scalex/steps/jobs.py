"""What a rule job names, unpacked for the core: the core never sees Snakemake's job object.

Used by the steps whose work is shared (steering and projection read a conditioning direction,
defaults and descriptors the paired differences of their concepts).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported by the work only, not when a job memo is restored
    from scalex.conditioning import ConditioningJob


def conditioning_job(smk: Any) -> ConditioningJob:
    """A steering or projection job: ``input.directions`` and the settings, spec and tap params,
    with the runtime options (device, batch size) from the job's config."""
    from scalex.conditioning import ConditioningJob
    from scalex.config import runtime_options

    return ConditioningJob(
        direction_files=list(smk.input.directions),
        settings=json.loads(smk.params.settings),
        settings_hash=smk.params.settings_hash,
        spec=json.loads(smk.params.spec),
        tap=smk.params.tap,
        runtime=runtime_options(smk.config),
    )


def job_diffs(smk: Any) -> dict[str, Any]:
    """:func:`scalex.differences.load_concept_diffs` of what a defaults or descriptors job
    names: ``input.shards``, ``input.baseline`` and the ``concepts``, ``settings_hash``, ``tap``
    and ``space`` params, at the job's readout."""
    from scalex.differences import load_concept_diffs, locate_concepts

    return load_concept_diffs(
        locate_concepts(smk.input.shards, smk.params.concepts),
        smk.input.baseline,
        smk.params.settings_hash,
        smk.params.tap,
        smk.params.space,
        readout=smk.wildcards.readout,
    )
