"""Random-weight diffusers pipelines of every supported family, built in code.

No machine of ours can download a model, yet the loader, the family detection and the extraction
loop must be tested on every family a user runs. A pipeline with the real architecture and random
weights exercises all of that code: it is saved with ``save_pretrained`` and loaded back through
``scalex.models.load_pipeline`` exactly like a user's model. ``size="sd15"`` builds a UNet with
the real Stable Diffusion 1.5 configuration (860M parameters), the honest speed benchmark.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

TINY_FAMILIES = ("sd1", "sd2", "sdxl", "lcm")

#: UNet configuration of Stable Diffusion 1.5 (runwayml/stable-diffusion-v1-5, unet/config.json).
SD15_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    "up_block_types": (
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ),
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}


def _tokenizer(max_length: int = 16):
    from scalex_refworld.textenc import load_minilm

    _, tokenizer = load_minilm(max_length)
    return tokenizer


def _clip_text(hidden: int, projection: bool = False, vocab: int = 30522):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    # A BERT tokenizer stands in for CLIP's (no hub): its [CLS]/[SEP] ids are 101/102.
    cfg = CLIPTextConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=vocab,
        max_position_embeddings=77,
        bos_token_id=101,
        eos_token_id=102,
        pad_token_id=0,
        projection_dim=hidden,
        hidden_act="gelu",
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg)


def _vae(latent_channels: int = 4):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(32, 32),
        latent_channels=latent_channels,
        norm_num_groups=32,
        sample_size=16,
    )


def _tiny_unet(cross_dim: int, **extra: Any):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_dim,
        attention_head_dim=8,
        norm_num_groups=32,
        **extra,
    )


def build_random_pipeline(family: str, seed: int = 0, size: str = "tiny"):
    """Return an in-memory random-weight pipeline of ``family`` (sd1, sd2, sdxl or lcm)."""
    from diffusers import (
        DDIMScheduler,
        EulerDiscreteScheduler,
        LatentConsistencyModelPipeline,
        LCMScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )

    if family not in TINY_FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {TINY_FAMILIES}")
    torch.manual_seed(seed)
    tokenizer = _tokenizer()
    common = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    if size == "sd15":
        if family != "sd1":
            raise ValueError("size='sd15' is only defined for family 'sd1'")
        unet = UNet2DConditionModel(**SD15_UNET)
        return StableDiffusionPipeline(
            vae=_vae(),
            text_encoder=_clip_text(768),
            tokenizer=tokenizer,
            unet=unet,
            scheduler=DDIMScheduler(beta_schedule="scaled_linear"),
            **common,
        )
    if family == "sdxl":
        unet = _tiny_unet(
            64,
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=6 * 8 + 32,
        )
        return StableDiffusionXLPipeline(
            vae=_vae(),
            text_encoder=_clip_text(32),
            text_encoder_2=_clip_text(32, projection=True),
            tokenizer=tokenizer,
            tokenizer_2=tokenizer,
            unet=unet,
            scheduler=EulerDiscreteScheduler(beta_schedule="scaled_linear"),
            force_zeros_for_empty_prompt=True,
        )
    if family == "sd2":
        unet = _tiny_unet(32, use_linear_projection=True)
        scheduler = DDIMScheduler(beta_schedule="scaled_linear", prediction_type="v_prediction")
        return StableDiffusionPipeline(
            vae=_vae(),
            text_encoder=_clip_text(32),
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            **common,
        )
    if family == "lcm":
        unet = _tiny_unet(32, time_cond_proj_dim=32)
        return LatentConsistencyModelPipeline(
            vae=_vae(),
            text_encoder=_clip_text(32),
            tokenizer=tokenizer,
            unet=unet,
            scheduler=LCMScheduler(beta_schedule="scaled_linear"),
            **common,
        )
    return StableDiffusionPipeline(
        vae=_vae(),
        text_encoder=_clip_text(32),
        tokenizer=tokenizer,
        unet=unet_sd1(),
        scheduler=DDIMScheduler(beta_schedule="scaled_linear"),
        **common,
    )


def unet_sd1():
    """The tiny SD 1.x-shaped UNet (32-wide cross-attention)."""
    return _tiny_unet(32)


def save_random_pipeline(family: str, out_dir: str | Path, seed: int = 0, size: str = "tiny"):
    """Build a random-weight pipeline and save it as a diffusers folder; return the folder."""
    out = Path(out_dir)
    build_random_pipeline(family, seed=seed, size=size).save_pretrained(
        out, safe_serialization=True
    )
    return out


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python tests/random_models.py FAMILY OUT_DIR [--seed N] [--size tiny|sd15]``."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("family", choices=TINY_FAMILIES)
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", choices=("tiny", "sd15"), default="tiny")
    args = parser.parse_args(argv)
    print(save_random_pipeline(args.family, args.out_dir, args.seed, args.size))


if __name__ == "__main__":
    main()
