"""One way to read and edit what a submodule computes: baukit's ``nethook.Trace``, cut down.

Extraction reads the H-space tap's output at chosen denoising steps; steering adds a direction
to the same output. Both are a :class:`Trace` over named submodules of the UNet: it keeps each
module's latest output and, when given ``edit_output``, replaces it with what that function
returns. A block that returns a tuple is read and edited through its first element (the hidden
states); the rest of the tuple passes through untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch

from scalex.errors import ExtractionError

#: ``edit_output(name, output, call)``: the replacement of module ``name``'s hidden-state output
#: at its ``call``-th forward since the trace began (or the last ``reset``); None keeps it.
EditOutput = Callable[[str, torch.Tensor, int], torch.Tensor | None]


class StopForward(Exception):
    """Raised by a :class:`Trace` hook to end a forward once every traced layer has run."""


class Trace(contextlib.AbstractContextManager):
    """Forward hooks on ``layers`` (dotted submodule names) of ``model`` for a ``with`` block.

    ``outputs[name]`` is the latest (edited) hidden-state output of each layer, detached;
    ``calls[name]`` counts the layer's forwards, so an edit can act at chosen denoising steps
    (one UNet call per step in the stock pipelines, both guidance halves in one call).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        layers: Sequence[str],
        *,
        edit_output: EditOutput | None = None,
        retain_output: bool = True,
        what: str = "extraction.taps",
    ):
        self.outputs: dict[str, torch.Tensor] = {}
        self.calls: dict[str, int] = dict.fromkeys(layers, 0)
        self._edit = edit_output
        self._retain = retain_output
        self._handles = []
        self._waiting: set[str] | None = None
        for name in layers:
            try:
                module = model.get_submodule(name)
            except AttributeError as err:
                raise ExtractionError(f"{what}: the UNet has no submodule {name!r}") from err
            self._handles.append(module.register_forward_hook(self._hook(name)))

    def reset(self) -> None:
        """Start counting calls from zero again (before each pipeline call)."""
        self.calls = dict.fromkeys(self.calls, 0)

    def run_until_traced(self, forward: Callable[..., object], *args, **kwargs) -> None:
        """Run ``forward(*args, **kwargs)`` only until every traced layer has produced its output.

        The rest of the network is skipped (baukit's ``stop=True``): when only the tap's state
        is wanted, as at the last kept step or for a readout under other text, the up-blocks'
        half of the UNet is never computed. What the traced layers output is unchanged.
        """
        self._waiting = set(self.calls)
        try:
            forward(*args, **kwargs)
        except StopForward:
            pass
        finally:
            self._waiting = None

    def _hook(self, name: str):
        def hook(_module, _inputs, output):
            call = self.calls[name]
            self.calls[name] = call + 1
            hidden = output[0] if isinstance(output, tuple) else output
            edited = self._edit(name, hidden, call) if self._edit is not None else None
            if self._retain:
                self.outputs[name] = (hidden if edited is None else edited).detach()
            if self._waiting is not None:
                self._waiting.discard(name)
                if not self._waiting:
                    raise StopForward
            if edited is None:
                return None  # the module's own output, untouched
            return (edited, *output[1:]) if isinstance(output, tuple) else edited

        return hook

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __exit__(self, *exc) -> None:
        self.close()
