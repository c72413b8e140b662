"""scalex: prompt-only audits of text-to-image diffusion models through their H-space.

The package is importable on its own (notebooks, tests); the Snakemake rules are thin wrappers
over it. See the README for the workflow and docs/design.md for the HDF5 format.
"""

__version__ = "0.1.0"
