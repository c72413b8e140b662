"""Zero-shot CLIP reader: an image shows the declared value whose variant prompt it matches best.

The texts are the axis's declared variants of the image's own concept and template ("a photo of
a female nurse" / "... a male nurse"), the same prompts the H-space vote compares with, so the
reader and the vote answer one question. As in HEIM and DALL-Eval, the reading is the softmax
over CLIP's image-text similarities; where the top probability beats the second by less than
``check.margin`` the image is ``undetermined`` (image-level audits find many images with no
determinable gender: counting them as a value would overstate a bias).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scalex.readers import UNDETERMINED, Reading


class ClipReader:
    def __init__(self, model: Any, processor: Any, margin: float, batch_size: int = 32):
        self.model, self.processor = model, processor
        self.margin = float(margin)
        self.batch_size = batch_size

    @classmethod
    def from_spec(cls, check: Mapping[str, Any], world: Path | None = None) -> ClipReader:
        """CLIP from ``check.model`` (a local folder or a hub id), safetensors weights only."""
        import torch
        from transformers import CLIPModel, CLIPProcessor

        from scalex.config import hub_offline
        from scalex.errors import ModelError

        name = str(check["model"])
        local = Path(name).expanduser().is_dir()
        try:
            model = CLIPModel.from_pretrained(
                name, use_safetensors=True, local_files_only=local or hub_offline()
            )
            processor = CLIPProcessor.from_pretrained(name, local_files_only=local or hub_offline())
        except (OSError, ValueError) as err:
            raise ModelError(
                f"check.model {name!r}: cannot load a CLIP checkpoint ({err})"
            ) from err
        device = "cuda" if torch.cuda.is_available() else "cpu"
        return cls(model.to(device).eval(), processor, float(check["margin"]))

    def read(
        self,
        images: np.ndarray,
        axis: str,
        values: Sequence[str],
        texts: Sequence[Sequence[str]],
    ) -> list[Reading]:
        import torch

        values = list(values)
        unique = list(dict.fromkeys(t for row in texts for t in row))
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            tokens = self.processor(text=unique, return_tensors="pt", padding=True)
            text = _projected(
                self.model.get_text_features(**{k: v.to(device) for k, v in tokens.items()})
            )
            text = text / text.norm(dim=-1, keepdim=True)
            readings: list[Reading] = []
            for start in range(0, len(images), self.batch_size):
                chunk = np.clip(np.asarray(images[start : start + self.batch_size]), 0, 1)
                pixels = self.processor(
                    images=[(x * 255).round().astype(np.uint8) for x in chunk], return_tensors="pt"
                )["pixel_values"].to(device)
                image = _projected(self.model.get_image_features(pixel_values=pixels))
                image = image / image.norm(dim=-1, keepdim=True)
                logits = self.model.logit_scale.exp() * image @ text.T
                for i, row in enumerate(logits.float().cpu().numpy()):
                    own = [unique.index(t) for t in texts[start + i]]
                    probs = np.exp(row[own] - row[own].max())
                    probs /= probs.sum()
                    order = np.argsort(-probs)
                    margin = float(probs[order[0]] - (probs[order[1]] if len(order) > 1 else 0))
                    value = values[order[0]] if margin >= self.margin else UNDETERMINED
                    readings.append(Reading(value, margin))
        return readings


def _projected(features: Any) -> Any:
    """The projected embeddings: a tensor (transformers 4), or the pooled output that
    transformers 5 returns with the projection applied."""
    return getattr(features, "pooler_output", features)
