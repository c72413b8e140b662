"""Error types of scalex, importable without torch so that light rule scripts start fast.

Each error's message names the config key, file, concept or sample at fault.
"""


class ScalexError(RuntimeError):
    """Base of the errors whose message already says what is wrong and where."""


class ConfigError(ScalexError, ValueError):
    """A configuration or concept-sheet problem."""


class ModelError(ScalexError):
    """A model that cannot be found, loaded or used."""


class ExtractionError(ScalexError):
    """Extraction cannot proceed or produced unusable numbers."""


class StoreError(ScalexError):
    """An input file that is missing, incomplete, of the wrong kind or from other settings."""


class DirectionError(ScalexError, ValueError):
    """A direction that cannot be computed (zero difference, mismatched seeds or steps)."""
