"""One module per workflow rule: each reads its inputs through :mod:`scalex.io`, calls the core
and writes its outputs. ``run(...)`` takes plain paths and values (a notebook or a test calls it
without Snakemake); ``main(smk)`` unpacks a rule job's ``snakemake`` object for
``scripts/<rule>.py``.

==================  =======================================
rule                module
==================  =======================================
prompts             :mod:`scalex.steps.prompts`
vocabulary_prompts  :mod:`scalex.steps.prompts`
extract             :mod:`scalex.steps.extract`
extract_vocabulary  :mod:`scalex.steps.extract`
directions          :mod:`scalex.steps.directions`
similarity          :mod:`scalex.steps.similarity`
clusters            :mod:`scalex.steps.clusters`
cluster_figures     :mod:`scalex.steps.cluster_figures`
defaults            :mod:`scalex.steps.defaults`
descriptors         :mod:`scalex.steps.descriptors`
discovery           :mod:`scalex.steps.discovery`
compare_readouts    :mod:`scalex.steps.compare_readouts`
readouts_summary    :mod:`scalex.steps.readouts_summary`
steering            :mod:`scalex.steps.steering`
projection          :mod:`scalex.steps.projection`
==================  =======================================

:mod:`scalex.steps.jobs` unpacks what several rules' jobs share, so the core modules never see
the job object.
"""
