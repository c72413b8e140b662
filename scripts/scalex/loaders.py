"""Model loaders plugged in through the ``scalex.model_loaders`` entry point.

Some model folders cannot be loaded by diffusers alone (the bundled reference worlds keep their
text encoder in a Python package). A loader ``recognises(folder)``, supplies the missing pipeline
``components(folder, dtype)``, names its ``family`` and may point to the model's
``ground_truth(folder)``, which switches on the workflow's validation rules. Light on purpose (no
torch): the workflow asks for the ground truth when it is parsed.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from scalex.config import check_model_source

#: The entry-point group of model loaders.
LOADER_GROUP = "scalex.model_loaders"


@functools.cache
def model_loaders() -> tuple[Any, ...]:
    """The installed model loaders, in entry-point name order (read once per process).

    Every distribution on the path is read, not only the first of each name: a stale
    ``*.egg-info`` left next to the sources by an older install would otherwise hide the
    installed package's entry points, and the loaders would silently vanish.
    """
    from importlib.metadata import distributions

    found = {
        (ep.name, ep.value): ep
        for dist in distributions()
        for ep in dist.entry_points
        if ep.group == LOADER_GROUP
    }
    return tuple(found[key].load() for key in sorted(found))


def loader_for(folder: Path | None) -> Any | None:
    """The loader that recognises a model folder, or None (a plain diffusers folder or hub id)."""
    if folder is None:
        return None
    return next((loader for loader in model_loaders() if loader.recognises(folder)), None)


def ground_truth(model_id: str) -> Path | None:
    """What a loader says the model was built to show (a planted world table), else None."""
    folder = check_model_source(model_id)
    loader = loader_for(folder)
    return None if loader is None else loader.ground_truth(folder)
