"""The reference worlds as a scalex model loader (entry point ``scalex.model_loaders``).

scalex itself knows nothing of reference worlds: a loader plugged in through the entry point
recognises its folders, supplies the pipeline parts diffusers cannot load from them (here the
packaged MiniLM text encoder and tokenizer), names their family, and points to their ground
truth (the planted world table next to the model folder), which switches on the workflow's
validation rules (rules/reference_world.smk).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: The file that marks a folder as a reference-world model (text encoder from a package).
MARKER = "scalex_reference.json"


class ReferenceWorld:
    """Loader of the reference-world models under resources/worlds/<world>/model."""

    family = "reference"

    @staticmethod
    def recognises(folder: Path) -> bool:
        return (Path(folder) / MARKER).is_file()

    @staticmethod
    def components(folder: Path, dtype: Any) -> dict[str, Any]:
        """The text encoder and tokenizer, with the marker's ``max_length``."""
        from scalex_refworld.textenc import DEFAULT_MAX_LENGTH, load_minilm

        marker = json.loads((Path(folder) / MARKER).read_text())
        encoder, tokenizer = load_minilm(marker.get("max_length", DEFAULT_MAX_LENGTH), dtype=dtype)
        return {"text_encoder": encoder, "tokenizer": tokenizer}

    @staticmethod
    def ground_truth(folder: Path) -> Path | None:
        """The world table of the model (``<world>/world.tsv`` next to ``<world>/model``),
        checked as the workflow is parsed: a bad table stops the run before any job, so no
        validation output is deleted for a table the validation job would refuse."""
        from scalex.errors import ConfigError

        from scalex_refworld.world import World

        table = Path(folder).parent / "world.tsv"
        if not table.is_file():
            return None
        try:
            World.from_table(table)
        except ValueError as err:
            raise ConfigError(f"world table {err}") from None
        return table
