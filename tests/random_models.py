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

UNET_FAMILIES = ("sd1", "sd2", "sdxl", "lcm")
#: transformer denoisers: SD3 (MMDiT, flow matching), Flux.1-dev (packed latents, guidance
#: embedding), PixArt-Sigma (DiT over T5, learned sigma)
TRANSFORMER_FAMILIES = ("sd3", "flux", "pixart")
TINY_FAMILIES = UNET_FAMILIES + TRANSFORMER_FAMILIES
#: T5's width in the tiny transformer models (SD3 pads its CLIP states, 2 x 32, to it)
T5_WIDTH = 64

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


def _t5_text():
    from transformers import T5Config, T5EncoderModel

    # the BERT tokenizer stands in for T5's too: the vocabulary must cover its ids
    cfg = T5Config(
        vocab_size=30522,
        d_model=T5_WIDTH,
        d_kv=16,
        d_ff=2 * T5_WIDTH,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=0,
        eos_token_id=102,
        decoder_start_token_id=0,
    )
    return T5EncoderModel(cfg)


def pixart_transformer(sample_size: int = 8, patch_size: int = 2, num_layers: int = 3):
    """A tiny PixArt DiT (24 wide: PixArt-alpha's size embeddings split the width in three)."""
    from diffusers import PixArtTransformer2DModel

    return PixArtTransformer2DModel(
        sample_size=sample_size,
        num_layers=num_layers,
        patch_size=patch_size,
        attention_head_dim=8,
        num_attention_heads=3,
        caption_channels=T5_WIDTH,
        in_channels=4,
        cross_attention_dim=24,
        out_channels=8,
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
    )


def build_transformer_pipeline(family: str, guidance_embeds: bool = True):
    """A tiny random-weight SD3, Flux.1-dev-shaped (``guidance_embeds=False``: schnell-shaped)
    or PixArt-Sigma pipeline."""
    from diffusers import (
        DDIMScheduler,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
        PixArtSigmaPipeline,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )

    tokenizer = _tokenizer()
    if family == "sd3":
        transformer = SD3Transformer2DModel(
            sample_size=8,
            patch_size=2,
            in_channels=4,
            out_channels=4,
            num_layers=3,
            attention_head_dim=8,
            num_attention_heads=4,
            joint_attention_dim=T5_WIDTH,
            caption_projection_dim=32,
            pooled_projection_dim=64,
            pos_embed_max_size=16,
        )
        return StableDiffusion3Pipeline(
            transformer=transformer,
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
            vae=_vae(shift_factor=0.0609, scaling_factor=1.5305),
            text_encoder=_clip_text(32, projection=True),
            tokenizer=tokenizer,
            text_encoder_2=_clip_text(32, projection=True),
            tokenizer_2=tokenizer,
            text_encoder_3=_t5_text(),
            tokenizer_3=tokenizer,
        )
    if family == "flux":
        transformer = FluxTransformer2DModel(
            patch_size=1,
            in_channels=16,
            num_layers=2,
            num_single_layers=2,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=T5_WIDTH,
            pooled_projection_dim=32,
            guidance_embeds=guidance_embeds,
            axes_dims_rope=(4, 4, 8),
        )
        return FluxPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True),
            vae=_vae(shift_factor=0.1159, scaling_factor=0.3611),
            text_encoder=_clip_text(32),
            tokenizer=tokenizer,
            text_encoder_2=_t5_text(),
            tokenizer_2=tokenizer,
            transformer=transformer,
        )
    if family == "pixart":
        return PixArtSigmaPipeline(
            tokenizer=tokenizer,
            text_encoder=_t5_text(),
            vae=_vae(),
            transformer=pixart_transformer(),
            scheduler=DDIMScheduler(),
        )
    raise ValueError(f"unknown transformer family {family!r}; expected {TRANSFORMER_FAMILIES}")


def _vae(latent_channels: int = 4, **extra: Any):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        **extra,
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
    """Return an in-memory random-weight pipeline of ``family`` (one of :data:`TINY_FAMILIES`)."""
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
    if family in TRANSFORMER_FAMILIES:
        if size != "tiny":
            raise ValueError(f"size={size!r} is only defined for family 'sd1'")
        return build_transformer_pipeline(family)
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


def save_tiny_clip(out_dir: str | Path, seed: int = 0) -> Path:
    """A CLIP checkpoint of random weights in the transformers layout (a CLIPModel, a CLIP
    tokenizer over a byte-level vocabulary without merges, a 32 px image processor): what the
    check's ``clip`` reader loads, at test size."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # GPT-2's byte-to-unicode table, as CLIP's byte-level BPE uses it; no merges
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    extra = [b for b in range(256) if b not in printable]
    chars = [chr(b) for b in printable] + [chr(256 + i) for i in range(len(extra))]
    vocab = {t: i for i, t in enumerate([*chars, *(c + "</w>" for c in chars)])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 77,
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"],
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(out, safe_serialization=True)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(out)
    return out
