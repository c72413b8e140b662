"""One way to read and edit what a submodule computes: baukit's ``nethook.Trace``, cut down.

Extraction reads the H-space tap's output at chosen denoising steps; steering adds a direction
to the same output. Both are a :class:`Trace` over named submodules of the denoiser (a UNet or a
transformer): it keeps each module's latest output and, when given ``edit_output``, replaces it
with what that function returns. Which part of a block's output is the image's hidden state, and
how it is laid out, is the block's :class:`Stream`, which the model family supplies: a UNet
block's first element as it is (N, C, h, w); an MMDiT joint block's image stream (its second
element, the text stream passes through); a transformer's image tokens (N, L, C) viewed as the
(N, C, h, w) map of their patch grid. Every reader and editor of a tap sees that map.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from scalex.errors import ExtractionError

#: ``edit_output(name, output, call)``: the replacement of module ``name``'s hidden-state output
#: at its ``call``-th forward since the trace began (or the last ``reset``); None keeps it.
EditOutput = Callable[[str, torch.Tensor, int], torch.Tensor | None]


@dataclass(frozen=True)
class Stream:
    """Where a block's output holds the image's hidden state, and how to see it as a map.

    ``index``: the element of a tuple output (a plain tensor output is the state itself).
    ``grid``: (h, w) of the patch grid when the state is tokens (N, h * w, C) in row-major
    order (a transformer's image tokens); None when it is already a (N, C, h, w) map.
    """

    index: int = 0
    grid: tuple[int, int] | None = None

    def read(self, output: Any) -> torch.Tensor:
        """The (N, C, h, w) map of the image's hidden state in ``output``."""
        hidden = output[self.index] if isinstance(output, tuple) else output
        if self.grid is None:
            return hidden
        n, length, c = hidden.shape
        h, w = self.grid
        if length != h * w:
            raise ExtractionError(
                f"a tapped block returned {length} image tokens, not the {h}x{w} patch grid "
                "of the sampled size"
            )
        return hidden.transpose(1, 2).reshape(n, c, h, w)

    def write(self, output: Any, state: torch.Tensor) -> Any:
        """``output`` with its image state replaced by the map ``state``."""
        if self.grid is not None:
            n, c = state.shape[:2]
            state = state.reshape(n, c, -1).transpose(1, 2)
        if not isinstance(output, tuple):
            return state
        return (*output[: self.index], state, *output[self.index + 1 :])


#: A UNet block: the first element of a tuple (the hidden states), already a map.
UNET_STREAM = Stream()


class StopForward(Exception):
    """Raised by a :class:`Trace` hook to end a forward once every traced layer has run."""


class Trace(contextlib.AbstractContextManager):
    """Forward hooks on ``layers`` (dotted submodule names) of ``model`` for a ``with`` block.

    ``outputs[name]`` is the latest (edited) image state of each layer as a (N, C, h, w) map
    (``stream``), detached; ``calls[name]`` counts the layer's forwards, so an edit can act at
    chosen denoising steps (one denoiser call per step in the stock pipelines, both guidance
    halves in one call).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        layers: Sequence[str],
        *,
        edit_output: EditOutput | None = None,
        retain_output: bool = True,
        what: str = "extraction.taps",
        stream: Stream = UNET_STREAM,
    ):
        self.outputs: dict[str, torch.Tensor] = {}
        self.calls: dict[str, int] = dict.fromkeys(layers, 0)
        self._edit = edit_output
        self._retain = retain_output
        self._handles = []
        self._waiting: set[str] | None = None
        self._stream = stream
        for name in layers:
            try:
                module = model.get_submodule(name)
            except AttributeError as err:
                raise ExtractionError(f"{what}: the denoiser has no submodule {name!r}") from err
            self._handles.append(module.register_forward_hook(self._hook(name)))

    def reset(self) -> None:
        """Start counting calls from zero again (before each pipeline call)."""
        self.calls = dict.fromkeys(self.calls, 0)

    def run_until_traced(self, forward: Callable[..., object], *args, **kwargs) -> None:
        """Run ``forward(*args, **kwargs)`` only until every traced layer has produced its output.

        The rest of the network is skipped (baukit's ``stop=True``): when only the tap's state
        is wanted, as at the last kept step or for a readout under other text, the blocks after
        the deepest tap (a UNet's up-blocks) are never computed. What the traced layers output
        is unchanged.
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
            hidden = self._stream.read(output)
            edited = self._edit(name, hidden, call) if self._edit is not None else None
            if self._retain:
                self.outputs[name] = (hidden if edited is None else edited).detach()
            if self._waiting is not None:
                self._waiting.discard(name)
                if not self._waiting:
                    raise StopForward
            if edited is None:
                return None  # the module's own output, untouched
            return self._stream.write(output, edited)

        return hook

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __exit__(self, *exc) -> None:
        self.close()
