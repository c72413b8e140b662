"""The bundled reference model: a pictogram world with planted, known social biases.

``world`` renders the images and captions, ``reader`` reads attributes back from images,
``train`` builds the diffusers pipeline, ``pipeline`` loads it, ``evaluate`` checks it against
the planted table. See README.md in this folder.
"""

#: The defaults analysis (a key of ``analysis.defaults``) whose scores the ground-truth check
#: compares with the world's planted share of women (``rules/reference_world.smk``).
GENDER_DEFAULTS = "gender"
