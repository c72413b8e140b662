"""Estimated cost of the shipped model configs: samples, jobs, FLOPs, GPU-hours, peak memory.

    python bench/estimate.py               # the README's table (config, samples, jobs, cost)
    python bench/estimate.py --full        # BENCHMARKS.md's derivation (constants, assumptions)
    python bench/estimate.py --json FILE   # every figure as JSON
    python bench/estimate.py --crosscheck  # the FLOP formulas and parameter counts against
                                           # torch's flop counter on meta-device models
    python bench/estimate.py --activations # the activation factor, measured on the CPU

ESTIMATES, not measurements on a GPU: the table runs no model and imports no torch; it reads
the configs and concept sheets only (``--crosscheck`` and ``--activations`` need torch).

- Samples and jobs come from the workflow's own code: each config of :data:`CONFIGS` (with
  ``config/models/common-sd.yaml``, as the README runs them) is merged as ``--configfile``
  merges files and validated by ``scalex.config.validate_config``, its concepts loaded by
  ``scalex.concepts.load_concepts`` and bucketed by ``bucket_count`` / ``buckets`` as
  ``rules/common.smk`` does: one extraction job per bucket with concepts, plus the baseline's
  (one job in all when everything fits one bucket), plus one per vocabulary chunk when discovery
  is on, plus the check's job when ``check.enabled``.
- Denoiser forwards per sample follow ``scalex.extract.HSpaceExtractor.run_batch``: every step
  before the last kept one runs the whole denoiser (twice under classifier-free guidance); the
  last kept step runs it only up to the tap (``Trace.run_until_traced``) when the prompt readout
  is stored; the content readout adds one forward up to the tap, without guidance, per kept
  step above 0; the text readout runs no denoiser. Each distinct prompt is encoded once per job
  (the family's prompt cache), plus the negative and the content prompt. The check renders its
  samples with the stock pipeline (every step, the VAE decoder) and reads them with CLIP.
- FLOPs of each component are counted from its published architecture (:data:`ARCHITECTURES`,
  one row per component with its source) as ``torch.utils.flop_counter`` counts them, the
  convention of ``bench/gpu.py``'s MFU: 2 x multiply-adds of every linear layer and convolution
  and 4 x Lq x Lk x width per attention; norms, activations and the scheduler are left out.
  ``--crosscheck`` holds every formula and parameter count to torch on models built from the
  same constants.
- GPU-hours: FLOPs at :data:`UTILISATION` of an H100 SXM's dense bf16/fp16 peak, plus each job's
  start-up and weight load. Peak memory: the parameter bytes of every component at the config's
  dtype (text encoders, denoiser, VAE) plus activations at the shipped batch size:
  :data:`ACTIVATION_PER_ELEMENT` bytes per element of the widest tensor of a forward, measured
  once on a GPU and by ``--activations`` on the CPU for every family.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import textwrap
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

DATE = "2026-12-07"

# -- assumptions ----------------------------------------------------------------------------------
#: NVIDIA H100 SXM dense bf16/fp16 tensor-core peak (datasheet; the figure bench/gpu.py uses)
PEAK_FLOPS = 989.4e12
#: assumed model FLOP utilisation of the extraction; the one GPU run measured 22-26% eager and
#: 39-41% with ``extraction.compile`` on an H200 (docs/benchmarks.md, section 3)
UTILISATION = 0.40
#: fixed cost of a model job before its weights load: start-up and imports, measured 5.7-7.4 s
#: with the reference model (BENCHMARKS.md, "fixed cost of a model job")
JOB_STARTUP_S = 6.0
#: assumed rate of reading safetensors weights from a local disk into the GPU
LOAD_BYTES_PER_S = 2e9
#: activation bytes at the peak of one forward, per element of the widest tensor a layer reads
#: or writes (tokens x channels) and per byte of the dtype. Calibrated on the one measurement:
#: H200, SD 1.5 UNet at 512 px, float16, SDPA attention, forward up to the mid block (batches
#: 128..1024 of bench/gpu.py's largest_batch, bench/gpu-runs/run2.json): peak grows 0.063686
#: GiB a sample, and the widest tensor is the first level's GEGLU projection (4096 x 2560):
#: 3.26. ``--activations`` measured the same factor on the CPU (float32, 2026-12-07): SD 1.5
#: UNet 2.86, VAE decoder 3.00, PixArt 3.03, SD 3.5 MMDiT 3.59, Flux 3.08
ACTIVATION_PER_ELEMENT = (
    (70.74006986618042 - 13.677585124969482) / (1024 - 128) * 2**30 / (4096 * 2560 * 2)
)
#: GPU memory a process holds beyond its tensors (CUDA context, cuBLAS workspaces), assumed
CONTEXT_BYTES = 1.0e9
#: the cards the full table sizes the batch for (usable bytes)
CARDS = {"24 GB": 24e9, "80 GB": 80e9}
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


# -- architectures --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Unet:
    """UNet2DConditionModel: per level its channels and transformer layers (0: no attention)."""

    channels: tuple[int, ...]
    attention: tuple[int, ...]
    context: int  # cross_attention_dim
    layers: int = 2  # layers_per_block
    latent: int = 4
    added: int = 0  # SDXL's projection_class_embeddings_input_dim (text_time embedding)
    cond_proj: int = 0  # LCM's time_cond_proj_dim (guidance embedding)
    mid: int = 1  # the mid block's transformer layers


@dataclass(frozen=True)
class MMDiT:
    """SD3Transformer2DModel: joint blocks, the first ``dual`` with a second image attention."""

    width: int
    layers: int
    dual: int
    patch: int = 2
    latent: int = 16
    context: int = 4096
    pooled: int = 2048


@dataclass(frozen=True)
class Flux:
    """FluxTransformer2DModel: double-stream then single-stream blocks over packed latents."""

    width: int
    double: int
    single: int
    packed: int = 64  # 16 latent channels x 2 x 2
    context: int = 4096
    pooled: int = 768


@dataclass(frozen=True)
class DiT:
    """PixArtTransformer2DModel: self-attention, cross-attention to T5, MLP, adaLN-single."""

    width: int
    layers: int
    patch: int = 2
    latent: int = 4
    out: int = 8  # learned sigma
    caption: int = 4096


@dataclass(frozen=True)
class Encoder:
    """A transformer encoder (CLIP text or vision, T5): ``inner`` is heads x head width;
    ``gated``: T5's gated-GELU feed-forward; ``patch``: a ViT's patch size (tokens - 1 patches);
    ``proj``: an output projection of the pooled token."""

    layers: int
    width: int
    ff: int
    tokens: int
    inner: int = 0
    gated: bool = False
    patch: int = 0
    proj: int = 0


@dataclass(frozen=True)
class Vae:
    """AutoencoderKL's decoder (only the check decodes; the extraction loads it, unused)."""

    channels: tuple[int, ...] = (128, 256, 512, 512)
    latent: int = 4
    layers: int = 2
    post_quant: bool = True


@dataclass(frozen=True)
class Component:
    spec: Any
    params: int  # parameters of the published weights (counted by --crosscheck from the spec)
    source: str


HF = "https://huggingface.co/"
#: Every component's architecture and parameter count. The architecture is the component's
#: published config.json (the source), the parameter count that of a model built from it (equal
#: to the published weights': ``--crosscheck`` builds it). Text lengths are what scalex pads to.
ARCHITECTURES: dict[str, Component] = {
    # SD 1.5 UNet (860M): sample_size 64 (512 px); the config tests/random_models.py copies
    "unet-sd15": Component(
        Unet((320, 640, 1280, 1280), (1, 1, 1, 0), 768),
        859_520_964,
        HF + "stable-diffusion-v1-5/stable-diffusion-v1-5/blob/main/unet/config.json",
    ),
    # LCM_Dreamshaper_v7: the SD 1.5 UNet + time_cond_proj_dim 256; sample_size 96 (768 px)
    "unet-lcm": Component(
        Unet((320, 640, 1280, 1280), (1, 1, 1, 0), 768, cond_proj=256),
        859_602_884,
        HF + "SimianLuo/LCM_Dreamshaper_v7/blob/main/unet/config.json",
    ),
    # SD 2.1 UNet (865M): cross_attention_dim 1024, linear projections; sample_size 96 (768 px)
    "unet-sd21": Component(
        Unet((320, 640, 1280, 1280), (1, 1, 1, 0), 1024),
        865_910_724,
        HF + "stabilityai/stable-diffusion-2-1/blob/main/unet/config.json",
    ),
    # SDXL base UNet (2.6B): 3 levels, transformer_layers_per_block [1, 2, 10] (mid: 10),
    # text_time embedding 2816; sample_size 128 (1024 px); SDXL paper (arXiv:2307.01952)
    "unet-sdxl": Component(
        Unet((320, 640, 1280), (0, 2, 10), 2048, added=2816, mid=10),
        2_567_463_684,
        HF + "stabilityai/stable-diffusion-xl-base-1.0/blob/main/unet/config.json",
    ),
    # SD 3.5 Medium MMDiT-X: 24 blocks of width 1536 (24 x 64), dual attention in blocks 0-12
    "mmdit-sd35m": Component(
        MMDiT(1536, 24, 13),
        2_243_171_520,
        HF + "stabilityai/stable-diffusion-3.5-medium/blob/main/transformer/config.json",
    ),
    # FLUX.1-schnell (12B): 19 double- and 38 single-stream blocks of width 3072 (24 x 128)
    "flux-schnell": Component(
        Flux(3072, 19, 38),
        11_891_178_560,
        HF + "black-forest-labs/FLUX.1-schnell/blob/main/transformer/config.json",
    ),
    # PixArt-Sigma XL/2 1024 (0.6B): 28 blocks of width 1152 (16 x 72), patch 2
    "dit-pixart-sigma": Component(
        DiT(1152, 28),
        610_856_096,
        HF + "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS/blob/main/transformer/config.json",
    ),
    # CLIP ViT-L/14 text encoder (SD 1.x, LCM, SDXL's first, Flux's pooled): 12 x 768, 77 tokens
    "clip-l": Component(
        Encoder(12, 768, 3072, 77),
        123_060_480,
        HF + "openai/clip-vit-large-patch14/blob/main/config.json",
    ),
    # the same with its 768 x 768 text projection (SD3's text_encoder)
    "clip-l-proj": Component(
        Encoder(12, 768, 3072, 77, proj=768),
        123_650_304,
        HF + "stabilityai/stable-diffusion-3.5-medium/blob/main/text_encoder/config.json",
    ),
    # OpenCLIP ViT-H/14 text encoder, 23 of its 24 layers (SD 2.x): 23 x 1024, 77 tokens
    "openclip-h": Component(
        Encoder(23, 1024, 4096, 77),
        340_387_840,
        HF + "stabilityai/stable-diffusion-2-1/blob/main/text_encoder/config.json",
    ),
    # OpenCLIP ViT-bigG/14 text encoder with projection (SDXL's and SD3's second): 32 x 1280
    "openclip-bigg": Component(
        Encoder(32, 1280, 5120, 77, proj=1280),
        694_659_840,
        HF + "stabilityai/stable-diffusion-xl-base-1.0/blob/main/text_encoder_2/config.json",
    ),
    # T5 v1.1 XXL encoder (SD3, Flux, PixArt): 24 x 4096, 64 heads x 64, gated FF 10240;
    # scalex pads to the stock pipelines' lengths: SD3 256, Flux 512, PixArt-Sigma 300
    "t5-xxl": Component(
        Encoder(24, 4096, 10240, 256, inner=4096, gated=True),
        4_762_310_656,
        HF + "google/t5-v1_1-xxl/blob/main/config.json",
    ),
    # the SD VAE (SD 1.x/2.x, SDXL, PixArt): 4 latent channels, decoder at 8x the latent
    "vae-sd": Component(
        Vae(),
        83_653_863,
        HF + "stable-diffusion-v1-5/stable-diffusion-v1-5/blob/main/vae/config.json",
    ),
    # the 16-channel VAE of SD3 and Flux (no quant convs)
    "vae-16": Component(
        Vae(latent=16, post_quant=False),
        83_819_683,
        HF + "black-forest-labs/FLUX.1-schnell/blob/main/vae/config.json",
    ),
    # the check's image classifiers: CLIP ViT-B/32 and ViT-L/14 image towers at 224 px
    "clip-vit-b32": Component(
        Encoder(12, 768, 3072, 50, patch=32, proj=512),
        87_849_216,
        HF + "openai/clip-vit-base-patch32/blob/main/config.json",
    ),
    "clip-vit-l14": Component(
        Encoder(24, 1024, 4096, 257, patch=14, proj=768),
        303_966_208,
        HF + "openai/clip-vit-large-patch14/blob/main/config.json",
    ),
}


@dataclass(frozen=True)
class Model:
    """A shipped config: its files, pixel size (the model's default), denoiser, text encoders
    (name, tokens), VAE, and the text tokens the denoiser attends to."""

    files: tuple[str, ...]
    size: int
    denoiser: str
    texts: tuple[tuple[str, int], ...]
    vae: str
    context: int = 77
    vae_upcast: bool = False  # the stock pipeline decodes in float32 (SDXL's force_upcast)


#: the check's CLIP checkpoints (check.model) and their image towers
READERS = {
    "openai/clip-vit-large-patch14": "clip-vit-l14",
    "openai/clip-vit-base-patch32": "clip-vit-b32",
}
#: a reader's whole CLIPModel (image and text towers) over its image tower's parameters:
#: CLIP's text tower with its projection and the logit scale
READER_TEXT_PARAMS = 123_650_304 + 1

COMMON = "config/models/common-sd.yaml"
#: The README's ready-made configs, as the README runs them (with common-sd.yaml).
CONFIGS: dict[str, Model] = {
    "sd15.yaml": Model(
        (COMMON, "config/models/sd15.yaml"), 512, "unet-sd15", (("clip-l", 77),), "vae-sd"
    ),
    "sd21.yaml": Model(
        (COMMON, "config/models/sd21.yaml"), 768, "unet-sd21", (("openclip-h", 77),), "vae-sd"
    ),
    "sdxl.yaml": Model(
        (COMMON, "config/models/sdxl.yaml"),
        1024,
        "unet-sdxl",
        (("clip-l", 77), ("openclip-bigg", 77)),
        "vae-sd",
        vae_upcast=True,
    ),
    "sd15-lcm.yaml": Model(
        (COMMON, "config/models/sd15-lcm.yaml"), 768, "unet-lcm", (("clip-l", 77),), "vae-sd"
    ),
    "sd35-medium.yaml": Model(
        (COMMON, "config/models/sd35-medium.yaml"),
        1024,
        "mmdit-sd35m",
        (("clip-l-proj", 77), ("openclip-bigg", 77), ("t5-xxl", 256)),
        "vae-16",
        77 + 256,
    ),
    "flux-schnell.yaml": Model(
        (COMMON, "config/models/flux-schnell.yaml"),
        1024,
        "flux-schnell",
        (("clip-l", 77), ("t5-xxl", 512)),
        "vae-16",
        512,
    ),
    "pixart-sigma.yaml": Model(
        (COMMON, "config/models/pixart-sigma.yaml"),
        1024,
        "dit-pixart-sigma",
        (("t5-xxl", 300),),
        "vae-sd",
        300,
    ),
}


# -- FLOP formulas (torch.utils.flop_counter's convention) ----------------------------------------
def linear(tokens: int, fan_in: int, fan_out: int) -> int:
    return 2 * tokens * fan_in * fan_out


def conv(pixels: int, c_in: int, c_out: int, k: int) -> int:
    return 2 * pixels * c_in * c_out * k * k


def attention(q: int, k: int, width: int) -> int:
    """Scores and weighted values of scaled dot-product attention over all heads."""
    return 4 * q * k * width


@dataclass
class Forward:
    """FLOPs of one forward for one sample: the whole, and up to the tap (the middle block);
    ``widest``: the largest tensor (elements) a layer reads or writes in the whole forward."""

    whole: int = 0
    to_tap: int = 0
    widest: int = 0

    def add(self, flops: int, tokens: int = 0, width: int = 0) -> None:
        self.whole += flops
        self.widest = max(self.widest, tokens * width)


def unet_forward(u: Unet, size: int, text: int) -> Forward:
    f = Forward()
    h = size // 8
    c0, temb = u.channels[0], 4 * u.channels[0]
    f.add(linear(1, c0, temb) + linear(1, temb, temb))  # time embedding
    if u.cond_proj:
        f.add(linear(1, u.cond_proj, c0))
    if u.added:
        f.add(linear(1, u.added, temb) + linear(1, temb, temb))
    f.add(conv(h * h, u.latent, c0, 3), h * h, c0)

    def resnet(n: int, c_in: int, c_out: int) -> None:
        short = conv(n, c_in, c_out, 1) if c_in != c_out else 0
        f.add(
            conv(n, c_in, c_out, 3) + linear(1, temb, c_out) + conv(n, c_out, c_out, 3) + short,
            n,
            max(c_in, c_out),
        )

    def transformer(n: int, c: int, layers: int) -> None:
        per_layer = (
            linear(n, c, c) * 4
            + attention(n, n, c)  # self-attention
            + linear(n, c, c) * 2
            + linear(text, u.context, c) * 2
            + attention(n, text, c)
            + linear(n, c, 8 * c)
            + linear(n, 4 * c, c)  # GEGLU feed-forward
        )
        f.add(linear(n, c, c) * 2 + layers * per_layer, n, 8 * c)

    last = len(u.channels) - 1
    skips, c_prev = [c0], c0
    for i, c in enumerate(u.channels):
        n = (h >> i) ** 2
        for _ in range(u.layers):
            resnet(n, c_prev, c)
            c_prev = c
            if u.attention[i]:
                transformer(n, c, u.attention[i])
            skips.append(c)
        if i < last:
            f.add(conv((h >> (i + 1)) ** 2, c, c, 3))
            skips.append(c)
    n = (h >> last) ** 2
    resnet(n, c_prev, c_prev)
    transformer(n, c_prev, u.mid)
    resnet(n, c_prev, c_prev)
    f.to_tap = f.whole
    for level in range(last, -1, -1):
        c, n = u.channels[level], (h >> level) ** 2
        for _ in range(u.layers + 1):
            resnet(n, c_prev + skips.pop(), c)
            c_prev = c
            if u.attention[level]:
                transformer(n, c, u.attention[level])
        if level > 0:
            f.add(conv((h >> (level - 1)) ** 2, c, c, 3))
    f.add(conv(h * h, c0, u.latent, 3))
    return f


def mmdit_forward(m: MMDiT, size: int, text: int) -> Forward:
    f = Forward()
    d, n = m.width, (size // 8 // m.patch) ** 2
    f.add(linear(n, m.latent * m.patch**2, d), n, d)  # patch embedding
    f.add(linear(1, 256, d) + linear(1, d, d) + linear(1, m.pooled, d) + linear(1, d, d))
    f.add(linear(text, m.context, d), text, m.context)
    mid = m.layers // 2
    for b in range(m.layers):
        end, dual = b == m.layers - 1, b < m.dual
        f.add(linear(1, d, (9 if dual else 6) * d) + linear(1, d, (2 if end else 6) * d))
        f.add(linear(n, d, 3 * d) + linear(text, d, 3 * d) + attention(n + text, n + text, d))
        f.add(linear(n, d, d) + (0 if end else linear(text, d, d)))
        if dual:
            f.add(linear(n, d, 3 * d) + attention(n, n, d) + linear(n, d, d))
        f.add(linear(n, d, 4 * d) + linear(n, 4 * d, d), n, 4 * d)
        if not end:
            f.add(linear(text, d, 4 * d) + linear(text, 4 * d, d))
        if b == mid:
            f.to_tap = f.whole
    f.add(linear(1, d, 2 * d) + linear(n, d, m.patch**2 * m.latent))
    return f


def flux_forward(m: Flux, size: int, text: int) -> Forward:
    f = Forward()
    d, n = m.width, (size // 16) ** 2
    seq = n + text
    f.add(linear(n, m.packed, d) + linear(text, m.context, d), text, m.context)
    f.add(linear(1, 256, d) + linear(1, d, d) + linear(1, m.pooled, d) + linear(1, d, d))
    mid = (m.double + m.single) // 2
    for b in range(m.double + m.single):
        if b < m.double:
            f.add(linear(1, d, 6 * d) * 2 + linear(seq, d, 3 * d) + attention(seq, seq, d))
            f.add(linear(seq, d, d) + linear(seq, d, 4 * d) + linear(seq, 4 * d, d), n, 4 * d)
        else:
            f.add(linear(1, d, 3 * d) + linear(seq, d, 4 * d) + linear(seq, d, 3 * d))
            f.add(attention(seq, seq, d) + linear(seq, 5 * d, d), seq, 5 * d)
        if b == mid:
            f.to_tap = f.whole
    f.add(linear(1, d, 2 * d) + linear(n, d, m.packed))
    return f


def dit_forward(m: DiT, size: int, text: int) -> Forward:
    f = Forward()
    d, n = m.width, (size // 8 // m.patch) ** 2
    f.add(linear(n, m.latent * m.patch**2, d), n, d)
    f.add(linear(1, 256, d) + linear(1, d, d) + linear(1, d, 6 * d))  # adaLN-single
    f.add(linear(text, m.caption, d) + linear(text, d, d), text, m.caption)
    for b in range(m.layers):
        f.add(linear(n, d, 3 * d) + attention(n, n, d) + linear(n, d, d))
        f.add(linear(n, d, d) + linear(text, d, 2 * d) + attention(n, text, d) + linear(n, d, d))
        f.add(linear(n, d, 4 * d) + linear(n, 4 * d, d), n, 4 * d)
        if b == m.layers // 2:
            f.to_tap = f.whole
    f.add(linear(n, d, m.patch**2 * m.out))
    return f


def denoiser_forward(name: str, size: int, text: int) -> Forward:
    spec = ARCHITECTURES[name].spec
    fn = {Unet: unet_forward, MMDiT: mmdit_forward, Flux: flux_forward, DiT: dit_forward}
    return fn[type(spec)](spec, size, text)


def encoder_flops(e: Encoder, tokens: int | None = None) -> int:
    """One forward of one text (or one 224 px image, for a ViT)."""
    n = tokens or e.tokens
    inner = e.inner or e.width
    ff = linear(n, e.width, e.ff) * (2 if e.gated else 1) + linear(n, e.ff, e.width)
    per_layer = linear(n, e.width, inner) * 3 + attention(n, n, inner) + linear(n, inner, e.width)
    flops = e.layers * (per_layer + ff)
    if e.patch:
        flops += linear(n - 1, 3 * e.patch**2, e.width)
    return flops + (linear(1, e.width, e.proj) if e.proj else 0)


def vae_decode(v: Vae, size: int) -> Forward:
    """The VAE decoder on one latent of a ``size`` px image."""
    f = Forward()
    h, top = size // 8, v.channels[-1]
    f.add(conv(h * h, v.latent, v.latent, 1) if v.post_quant else 0)
    f.add(conv(h * h, v.latent, top, 3), h * h, top)

    def resnet(n: int, c_in: int, c_out: int) -> None:
        short = conv(n, c_in, c_out, 1) if c_in != c_out else 0
        f.add(conv(n, c_in, c_out, 3) + conv(n, c_out, c_out, 3) + short, n, max(c_in, c_out))

    n = h * h
    resnet(n, top, top)
    f.add(linear(n, top, top) * 4 + attention(n, n, top))
    resnet(n, top, top)
    c_prev = top
    for i, c in enumerate(reversed(v.channels)):
        n = (h << i) ** 2
        for _ in range(v.layers + 1):
            resnet(n, c_prev, c)
            c_prev = c
        if i < len(v.channels) - 1:  # nearest upsampling, then a convolution at 2x
            f.add(conv(4 * n, c, c, 3), 4 * n, c)
    f.add(conv(size * size, v.channels[0], 3, 3))
    return f


# -- the workload of a config ---------------------------------------------------------------------
@dataclass
class Workload:
    """What a config extracts: samples and prompts per extraction job, and the sampling."""

    name: str
    concepts: int
    prompts: int  # concept prompts (the baseline's apart)
    baseline_prompts: int
    seeds: int
    vocabulary_samples: int
    jobs: dict[str, tuple[int, int]] = field(default_factory=dict)  # job -> (samples, prompts)
    steps: int = 0
    kept: tuple[int, ...] = ()
    readouts: tuple[str, ...] = ()
    cfg: bool = False
    dtype: str = "float32"
    batch_size: int = 1
    other_gpu_jobs: int = 0  # steering and projection
    size: int | None = None  # sampling.height and .width when the config sets them
    check_prompts: int = 0  # prompts of the concepts the descriptors vote on (the findings')
    check_samples: int = 0  # (prompt, seed) samples the check renders (check.enabled)
    check_reads: int = 0  # image reader forwards per checked image: one per identity axis
    check_reader: str = ""  # the reader's component (check.model; "": none to count)

    @property
    def samples(self) -> int:
        return sum(s for s, _ in self.jobs.values())


def uses_cfg(family: str, guidance: float) -> bool:
    """As the families decide it (scalex.families): guidance above 1, except LCM (a guidance
    embedding) and Flux (none, or an embedding)."""
    return guidance > 1.0 and family not in ("lcm", "flux")


def load_config(files: tuple[str, ...], base: Path = ROOT) -> dict[str, Any]:
    """``files`` merged as ``snakemake --configfile`` merges them (later files update earlier
    ones key by key, as ``scalex.config.load_configs``) and validated by
    ``scalex.config.validate_config``. The scheduler's name is set aside while validating:
    checking it imports diffusers (and torch); the workflow checks it."""
    import yaml
    from scalex.config import validate_config

    def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        out = dict(a)
        for key, value in b.items():
            both = isinstance(value, dict) and isinstance(out.get(key), dict)
            out[key] = merge(out[key], value) if both else value
        return out

    cfg: dict[str, Any] = {}
    for f in files:
        cfg = merge(cfg, yaml.safe_load((base / f).read_text()))
    scheduler = cfg.get("sampling", {}).get("scheduler", "auto")
    cfg = validate_config(merge(cfg, {"sampling": {"scheduler": "auto"}}), base=base)
    cfg["sampling"]["scheduler"] = scheduler
    return cfg


def load_workload(name: str, files: tuple[str, ...], base: Path = ROOT) -> Workload:
    """The samples and jobs of the config that ``files`` make."""
    return workload(name, load_config(files, base), base)


def workload(name: str, cfg: dict[str, Any], base: Path = ROOT) -> Workload:
    """The samples and jobs of a validated config, bucketed as rules/common.smk buckets them."""
    from scalex.concepts import (
        BASELINE_ID,
        baseline_concept,
        bucket_count,
        buckets,
        load_concepts,
    )
    from scalex.config import seeds

    concepts = load_concepts(cfg, base=base)
    baseline = baseline_concept(cfg)
    n_seeds = len(seeds(cfg))
    prompts = sum(len(c.prompts) for c in concepts.values())
    n_buckets = bucket_count(cfg["extraction"]["buckets"], n_seeds * prompts)
    groups = buckets(list(concepts), n_buckets)
    jobs = {
        b: (
            n_seeds * sum(len(concepts[c].prompts) for c in ids),
            sum(len(concepts[c].prompts) for c in ids),
        )
        for b, ids in groups.items()
    }
    base_job = (n_seeds * len(baseline.prompts), len(baseline.prompts))
    if n_buckets == 1 and list(groups) == ["b0000"]:  # one job: the bucket and the baseline
        s, p = jobs.pop("b0000")
        jobs["b0000+" + BASELINE_ID] = (s + base_job[0], p + base_job[1])
    else:
        jobs[BASELINE_ID] = base_job
    vocab = 0
    discovery = cfg["analysis"]["discovery"]
    if discovery["vocabularies"]:
        from scalex.io import read_vocabulary
        from scalex.steps.prompts import vocabulary_chunks

        for vname, spec in discovery["vocabularies"].items():
            terms = read_vocabulary(Path(base) / spec["file"])
            k = min(spec["seeds"], n_seeds)
            for chunk, chunk_terms in vocabulary_chunks(terms, spec["chunk_size"]).items():
                jobs[f"vocabulary:{vname}:{chunk}"] = (k * len(chunk_terms), len(chunk_terms))
                vocab += k * len(chunk_terms)
    sampling, ext = cfg["sampling"], cfg["extraction"]
    if sampling["height"] != sampling["width"]:
        raise ValueError(f"{name}: the FLOP formulas take square images")
    kept = (
        tuple(range(sampling["steps"]))
        if ext["keep_steps"] is None
        else tuple(sorted(set(ext["keep_steps"])))
    )
    analysis = cfg["analysis"]
    # the check (check.enabled): the first check.seeds seeds of every prompt of the concepts the
    # descriptors vote on, each rendered once and read once per identity axis
    check = cfg.get("check") or {}
    targets = {c.derived["concept"] for c in concepts.values() if c.derived}
    check_prompts = sum(len(concepts[c].prompts) for c in targets)
    checked = check_prompts * min(check.get("seeds", 0), n_seeds)
    axes = len(cfg["concepts"]["descriptors"]["axes"])
    on = bool(check.get("enabled")) and checked > 0
    # the CLIP reader (the world reader of a reference world costs nothing here)
    clip = check.get("model", "openai/clip-vit-large-patch14")
    reader = "" if check.get("reader") == "world" else READERS[clip]
    return Workload(
        name=name,
        concepts=len(concepts),
        prompts=prompts,
        baseline_prompts=len(baseline.prompts),
        seeds=n_seeds,
        vocabulary_samples=vocab,
        jobs=jobs,
        steps=sampling["steps"],
        kept=kept,
        readouts=tuple(ext["readouts"]),
        cfg=uses_cfg(cfg["model"]["family"], sampling["guidance_scale"]),
        dtype=sampling["dtype"],
        batch_size=sampling["batch_size"],
        other_gpu_jobs=len(analysis["steering"]) + len(analysis["projection"]),
        size=sampling["height"],
        check_prompts=check_prompts,
        check_samples=checked if on else 0,
        check_reads=axes,
        check_reader=reader,
    )


@dataclass
class Forwards:
    """Denoiser forwards a sample costs, in sample-forwards (a CFG pair counts two)."""

    whole: int
    to_tap: int
    guided_batch: int  # samples in the largest denoiser batch, per configured sample


def forwards_per_sample(w: Workload) -> Forwards:
    """As ``HSpaceExtractor.run_batch`` runs them (see the module's docstring)."""
    cfg = 2 if w.cfg else 1
    denoised = [r for r in w.readouts if r != "text"]
    steps = {"prompt": list(w.kept), "content": [i for i in w.kept if i > 0]}
    if not denoised:
        return Forwards(0, 0, 0)
    last = max(steps[r][-1] for r in denoised)
    whole = cfg * last  # every step before the last kept one steps the trajectory on
    to_tap = cfg if "prompt" in denoised else 0
    to_tap += len(steps["content"]) if "content" in denoised else 0
    return Forwards(whole, to_tap, cfg)


# -- the estimate ---------------------------------------------------------------------------------
def round_sig(x: float, digits: int = 2) -> float:
    if x == 0:
        return 0.0
    return round(x, digits - 1 - int(math.floor(math.log10(abs(x)))))


def estimate(name: str, w: Workload | None = None) -> dict[str, Any]:
    model = CONFIGS[name]
    w = w or load_workload(name, model.files)
    text, size = model.context, w.size or model.size
    fwd = denoiser_forward(model.denoiser, size, text)
    per = forwards_per_sample(w)
    denoiser_flops = per.whole * fwd.whole + per.to_tap * fwd.to_tap
    encode = sum(encoder_flops(ARCHITECTURES[e].spec, t) for e, t in model.texts)
    extra_prompts = (1 if w.cfg else 0) + (1 if "content" in w.readouts else 0)
    padded = sum(math.ceil(s / w.batch_size) * w.batch_size for s, _ in w.jobs.values())
    prompts = sum(p for _, p in w.jobs.values()) + extra_prompts * len(w.jobs)
    total = padded * denoiser_flops + prompts * encode
    components = [model.denoiser, model.vae] + [e for e, _ in model.texts]
    nbytes = DTYPE_BYTES[w.dtype]
    param_bytes = sum(ARCHITECTURES[c].params for c in components) * nbytes
    act_sample = ACTIVATION_PER_ELEMENT * fwd.widest * nbytes * per.guided_batch
    act_bytes = act_sample * w.batch_size
    load_s = JOB_STARTUP_S + param_bytes / LOAD_BYTES_PER_S
    compute_s = total / (UTILISATION * PEAK_FLOPS)
    jobs = len(w.jobs) + w.other_gpu_jobs
    check = check_job(model, w, fwd, encode, param_bytes, act_sample) if w.check_samples else {}
    fits = {
        card: max(0, int((cap - CONTEXT_BYTES - param_bytes) // act_sample)) if act_sample else 0
        for card, cap in CARDS.items()
    }
    return {
        "config": name,
        "files": list(model.files),
        "size": size,
        "dtype": w.dtype,
        "batch_size": w.batch_size,
        "concepts": w.concepts,
        "prompts": w.prompts,
        "baseline_prompts": w.baseline_prompts,
        "seeds": w.seeds,
        "vocabulary_samples": w.vocabulary_samples,
        "samples": w.samples,
        "padded_samples": padded,
        "jobs": jobs,
        "steps": w.steps,
        "kept": list(w.kept),
        "readouts": list(w.readouts),
        "cfg": w.cfg,
        "text_tokens": text,
        "forward_flops": fwd.whole,
        "to_tap_flops": fwd.to_tap,
        "whole_forwards": per.whole,
        "to_tap_forwards": per.to_tap,
        "denoiser_flops_per_sample": denoiser_flops,
        "encode_flops_per_prompt": encode,
        "encoded_prompts": prompts,
        "flops": total,
        "compute_s": compute_s,
        "load_s_per_job": load_s,
        "extraction_gpu_hours": (compute_s + jobs * load_s) / 3600,
        "gpu_hours": (compute_s + jobs * load_s) / 3600 + check.get("gpu_hours", 0),
        "all_jobs": jobs + (1 if check else 0),
        "s_per_sample": compute_s / w.samples,
        "param_bytes": param_bytes,
        "activation_bytes": act_bytes,
        "peak_bytes": param_bytes + act_bytes,
        "batch_fits": fits,
        "check": check,
        "check_prompts": w.check_prompts,
        "check_reads": w.check_reads,
        "check_reader": w.check_reader,
        "run_peak_bytes": max(param_bytes + act_bytes, check.get("peak_bytes", 0)),
    }


def reader_flops(reader: str, reads: int) -> int:
    """The check reader's image forwards on one image (none for a reader that is not CLIP)."""
    return reads * encoder_flops(ARCHITECTURES[reader].spec) if reader else 0


def check_job(
    model: Model, w: Workload, fwd: Forward, encode: int, param_bytes: int, act_sample: float
) -> dict[str, Any]:
    """The check's job (``check.enabled``): the stock pipeline renders each checked sample
    (every step, the whole denoiser, twice under CFG; the prompt and the negative encoded;
    the VAE decoder one image at a time, in float32 where the pipeline upcasts it), and the CLIP
    reader (loaded in float32) reads each image once per identity axis."""
    size = w.size or model.size
    decode = vae_decode(ARCHITECTURES[model.vae].spec, size)
    per = (
        w.steps * (2 if w.cfg else 1) * fwd.whole
        + (2 if w.cfg else 1) * encode
        + decode.whole
        + reader_flops(w.check_reader, w.check_reads)
    )
    flops = w.check_samples * per
    reader = ARCHITECTURES.get(w.check_reader)
    reader_bytes = (reader.params + READER_TEXT_PARAMS) * 4 if reader else 0
    decode_bytes = 4 if model.vae_upcast else DTYPE_BYTES[w.dtype]
    # the decoder takes one image at a time (render_samples slices the VAE)
    act = max(act_sample * w.batch_size, ACTIVATION_PER_ELEMENT * decode.widest * decode_bytes)
    load_s = JOB_STARTUP_S + (param_bytes + reader_bytes) / LOAD_BYTES_PER_S
    return {
        "samples": w.check_samples,
        "flops_per_sample": per,
        "decode_flops": decode.whole,
        "flops": flops,
        "gpu_hours": (flops / (UTILISATION * PEAK_FLOPS) + load_s) / 3600,
        "activation_bytes": act,
        "peak_bytes": param_bytes + reader_bytes + act,
    }


#: the check's subsamples: seeds checked of each concept prompt (of the 16 shipped)
CHECKED_SEEDS = (1, 2, 4, 16)


def check_cost(sd15: dict[str, Any], steps: int) -> dict[str, Any]:
    """The check's cost for SD 1.5 at ``steps``, against the extraction of the shipped
    sd15.yaml: per checked sample, the stock pipeline's render (every step under CFG, the whole
    UNet; the prompt and the negative encoded), the VAE decoder and the reader's image forwards
    (``check.model``, once per identity axis); and for ``CHECKED_SEEDS`` seeds of each prompt the
    check samples (those of the concepts the findings report), as a share of the extraction."""
    unet, size = sd15["forward_flops"], sd15["size"]
    render = 2 * steps * unet + 2 * sd15["encode_flops_per_prompt"]
    decode = vae_decode(ARCHITECTURES[CONFIGS[sd15["config"]].vae].spec, size).whole
    b32 = encoder_flops(ARCHITECTURES["clip-vit-b32"].spec)
    l14 = encoder_flops(ARCHITECTURES["clip-vit-l14"].spec)
    reads = reader_flops(sd15["check_reader"], sd15["check_reads"])
    per_checked = render + decode + reads
    n = {k: sd15["check_prompts"] * k for k in CHECKED_SEEDS}
    return {
        "steps": steps,
        "size": size,
        "unet_forward": unet,
        "render": render,
        "decode": decode,
        "clip_b32": b32,
        "clip_l14": l14,
        "reads": reads,
        "per_checked_sample": per_checked,
        "extraction_per_sample": sd15["denoiser_flops_per_sample"],
        "share_per_sample": per_checked / sd15["denoiser_flops_per_sample"],
        "checked_samples": n,
        "share_of_extraction": {k: n[k] * per_checked / sd15["flops"] for k in CHECKED_SEEDS},
        "gpu_hours": {
            k: n[k] * per_checked / (UTILISATION * PEAK_FLOPS) / 3600 for k in CHECKED_SEEDS
        },
    }


# -- tables ---------------------------------------------------------------------------------------
README_INTRO = (
    "Cost of the shipped configs with `common-sd.yaml` (the extraction{check}): **estimate (FLOPs "
    "at {u} of H100 peak; parameter bytes)**, not measured on a GPU "
    "([how](BENCHMARKS.md#shipped-configs-estimated-cost)):"
)


def gb(x: float) -> str:
    return f"{x / 1e9:.1f}" if x < 10e9 else f"{x / 1e9:.0f}"


def hours(x: float) -> str:
    return f"{round_sig(x):g}"


def readme_table(rows: list[dict[str, Any]]) -> str:
    checked = sorted({r["check"]["samples"] for r in rows if r["check"]})
    check = f", and the check rendering {' or '.join(map(str, checked))} of its samples"
    intro = README_INTRO.format(u=f"{UTILISATION:.0%}", check=check if checked else "")
    lines = [
        textwrap.fill(intro, 100, break_on_hyphens=False),
        "",
        "| config | samples | jobs | GPU-hours | peak GB: extraction / check (batch) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        check = f" / {gb(r['check']['peak_bytes'])}" if r["check"] else ""
        lines.append(
            f"| `{r['config']}` | {r['samples']:,} | {r['all_jobs']} | "
            f"{hours(r['gpu_hours'])} | {gb(r['peak_bytes'])}{check} ({r['batch_size']}) |"
        )
    return "\n".join(lines)


def tflops(x: float) -> str:
    return f"{x / 1e12:.3g}"


def spec_text(spec: Any) -> str:
    """A component's architecture: its fields that differ from the defaults."""
    shown = [f for f in fields(spec) if f.default is MISSING or getattr(spec, f.name) != f.default]
    return ", ".join(f"{f.name}={getattr(spec, f.name)}" for f in shown or fields(spec))


def full_tables(rows: list[dict[str, Any]], checks: list[dict[str, Any]]) -> str:
    out = [
        f"Estimates of {DATE}, not measurements: `python bench/estimate.py --full` prints "
        "this block and `python bench/estimate.py` the README's table "
        "(`tests/test_estimate.py` holds both files to its output).",
        "",
        "Components: the architecture from its source's config.json, the parameters of a "
        "model built from it (`--crosscheck`):",
        "",
        "| component | parameters | architecture | source |",
        "|---|---:|---|---|",
    ]
    for name, comp in ARCHITECTURES.items():
        out.append(
            f"| `{name}` | {comp.params / 1e6:,.1f}M | {spec_text(comp.spec)} | {comp.source} |"
        )
    out += [
        "",
        "Denoiser FLOPs per config: one forward of one sample at the model's default "
        "size, whole and up to the tap (TFLOP); the forwards a sample costs (whole + up to "
        "the tap, a CFG pair counting two); TFLOP a sample:",
        "",
        "| config | px | dtype | text tokens | forward | to tap | forwards | TFLOP/sample |",
        "|---|---:|---|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        out.append(
            f"| `{r['config']}` | {r['size']} | {r['dtype']} | {r['text_tokens']} | "
            f"{tflops(r['forward_flops'])} | {tflops(r['to_tap_flops'])} | "
            f"{r['whole_forwards']} + {r['to_tap_forwards']} | "
            f"{tflops(r['denoiser_flops_per_sample'])} |"
        )
    out += [
        "",
        "The extraction per config (prompts: the concepts' + the baseline's; PFLOP: the "
        "denoiser on every sample, the last batch of each job padded, and the text encoders on "
        "every prompt; s/sample: compute only; load/job: start-up + weights; batch on 24 / 80 "
        f"GB: the largest that fits beside the weights and {CONTEXT_BYTES / 1e9:g} GB of CUDA "
        "context):",
        "",
        "| config | concepts | prompts | seeds | samples | jobs | PFLOP | s/sample "
        "| load/job (s) | GPU-hours | weights | activations (batch) | batch on 24 / 80 GB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        fits = " / ".join(str(v) for v in r["batch_fits"].values())
        out.append(
            f"| `{r['config']}` | {r['concepts']} | {r['prompts']} + "
            f"{r['baseline_prompts']} | {r['seeds']} | {r['samples']:,} | {r['jobs']} | "
            f"{r['flops'] / 1e15:,.0f} | {r['s_per_sample']:.2g} | "
            f"{r['load_s_per_job']:.0f} | {hours(r['extraction_gpu_hours'])} | "
            f"{gb(r['param_bytes'])} GB | {gb(r['activation_bytes'])} GB ({r['batch_size']}) "
            f"| {fits} |"
        )
    out += [
        "",
        "The check's job per config (`check.enabled`): the stock pipeline renders each checked "
        "sample with the config's schedule (every step, the whole denoiser, twice under CFG), "
        "the VAE decodes one image at a time (sliced; SDXL's in float32), the CLIP reader "
        "(float32) reads each image once per identity axis; GPU-hours include its load; the "
        "README's GPU-hours are the two jobs' sum, its peak the larger:",
        "",
        "| config | checked samples | TFLOP/checked sample | of it VAE decode | GPU-hours "
        "| peak (batch) | README: GPU-hours, jobs |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        c = r["check"]
        if not c:
            continue
        out.append(
            f"| `{r['config']}` | {c['samples']} | {tflops(c['flops_per_sample'])} | "
            f"{tflops(c['decode_flops'])} | {hours(c['gpu_hours'])} | "
            f"{gb(c['peak_bytes'])} GB ({r['batch_size']}) | "
            f"{hours(r['gpu_hours'])}, {r['all_jobs']} |"
        )
    c = checks[0]
    ks = " | ".join(f"{k} of {rows[0]['seeds']} seeds" for k in CHECKED_SEEDS)
    out += [
        "",
        f"The check's cost against the extraction, SD 1.5 at {c['size']} px: per checked "
        f"sample the stock pipeline's render (2 whole UNet forwards of "
        f"{tflops(c['unet_forward'])} TFLOP a step, the prompt and the negative encoded), "
        f"the VAE decoder ({tflops(c['decode'])} TFLOP) and the reader "
        f"({rows[0]['check_reads']} x `{rows[0]['check_reader']}`: "
        f"{c['reads'] / 1e9:.3g} GFLOP; CLIP ViT-B/32 would take {c['clip_b32'] / 1e9:.3g} "
        f"GFLOP an image, ViT-L/14 {c['clip_l14'] / 1e9:.3g}), against `sd15.yaml`'s "
        f"extraction ({tflops(c['extraction_per_sample'])} TFLOP a sample, denoiser); then k "
        f"seeds of each of the {rows[0]['check_prompts']} prompts of the concepts the findings "
        "report, as a share of the whole extraction's FLOPs (the check's GPU-hours at the same "
        "utilisation, loads apart):",
        "",
        f"| render steps | TFLOP per checked sample | x extraction per sample | {ks} |",
        "|---|---:|---:|" + "---:|" * len(CHECKED_SEEDS),
    ]
    for c in checks:
        cells = " | ".join(
            f"{c['checked_samples'][k]}: {c['share_of_extraction'][k]:.1%} "
            f"({c['gpu_hours'][k]:.2g} h)"
            for k in CHECKED_SEEDS
        )
        out.append(
            f"| {c['steps']} | {tflops(c['per_checked_sample'])} | "
            f"{c['share_per_sample']:.1f}x | {cells} |"
        )
    return "\n".join(out)


# -- checks with torch (diffusers, transformers): run by hand, not by the tests ------------------
def build(spec: Any, size: int, text: int, batch: int, device: str):  # pragma: no cover
    """A model of ``spec`` (random weights) on ``device``, a call of one forward on a batch of
    ``batch``, its tap (a denoiser's middle block, else None) and the formulas' ``Forward``."""
    import diffusers
    import torch
    import transformers as tf

    def z(*shape, dtype=torch.float32):
        return torch.zeros(*shape, dtype=dtype, device=device)

    b, t, h = batch, torch.full((batch,), 500.0, device=device), size // 8
    with torch.device(device):
        if isinstance(spec, Unet):
            kinds = ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in spec.attention]
            m = diffusers.UNet2DConditionModel(
                sample_size=h, block_out_channels=spec.channels, down_block_types=kinds,
                up_block_types=[k.replace("Down", "Up") for k in reversed(kinds)],
                transformer_layers_per_block=[max(1, a) for a in spec.attention[:-1]]
                + [spec.mid],
                cross_attention_dim=spec.context, layers_per_block=spec.layers,
                attention_head_dim=8 if spec.context == 768 else [5, 10, 20, 20][: len(kinds)],
                use_linear_projection=spec.context != 768,
                addition_embed_type="text_time" if spec.added else None,
                addition_time_embed_dim=256 if spec.added else None,
                projection_class_embeddings_input_dim=spec.added or None,
                time_cond_proj_dim=spec.cond_proj or None,
            )  # fmt: skip
            kw = {"encoder_hidden_states": z(b, text, spec.context)}
            if spec.added:
                kw["added_cond_kwargs"] = {"text_embeds": z(b, 1280), "time_ids": z(b, 6)}
            if spec.cond_proj:
                kw["timestep_cond"] = z(b, spec.cond_proj)
            call = lambda: m(z(b, 4, h, h), t, **kw)  # noqa: E731
            return m, call, m.mid_block, unet_forward(spec, size, text)
        if isinstance(spec, MMDiT):
            m = diffusers.SD3Transformer2DModel(
                sample_size=128, patch_size=spec.patch, in_channels=spec.latent,
                num_layers=spec.layers, attention_head_dim=64, num_attention_heads=spec.width // 64,
                joint_attention_dim=spec.context, caption_projection_dim=spec.width,
                pooled_projection_dim=spec.pooled, out_channels=spec.latent,
                pos_embed_max_size=384, dual_attention_layers=tuple(range(spec.dual)),
                qk_norm="rms_norm",
            )  # fmt: skip
            x = (z(b, spec.latent, h, h), z(b, text, spec.context), z(b, spec.pooled), t)
            tap = m.transformer_blocks[spec.layers // 2]
            return m, lambda: m(*x), tap, mmdit_forward(spec, size, text)
        if isinstance(spec, Flux):
            m = diffusers.FluxTransformer2DModel(
                patch_size=1, in_channels=spec.packed, num_layers=spec.double,
                num_single_layers=spec.single, attention_head_dim=128,
                num_attention_heads=spec.width // 128, joint_attention_dim=spec.context,
                pooled_projection_dim=spec.pooled, guidance_embeds=False,
            )  # fmt: skip
            n = (size // 16) ** 2
            x = (z(b, n, spec.packed), z(b, text, spec.context), z(b, spec.pooled), t / 1000)
            ids = {"img_ids": z(n, 3), "txt_ids": z(text, 3)}
            tap = m.single_transformer_blocks[(spec.double + spec.single) // 2 - spec.double]
            return m, lambda: m(*x, **ids), tap, flux_forward(spec, size, text)
        if isinstance(spec, DiT):
            m = diffusers.PixArtTransformer2DModel(
                num_attention_heads=spec.width // 72, attention_head_dim=72,
                in_channels=spec.latent, out_channels=spec.out, num_layers=spec.layers,
                cross_attention_dim=spec.width, sample_size=128, patch_size=spec.patch,
                caption_channels=spec.caption, use_additional_conditions=False,
                norm_type="ada_norm_single", activation_fn="gelu-approximate",
                num_embeds_ada_norm=1000, attention_bias=True,
            )  # fmt: skip
            cond = {"resolution": None, "aspect_ratio": None}
            x, c = z(b, spec.latent, h, h), z(b, text, spec.caption)
            call = lambda: m(x, c, timestep=t, added_cond_kwargs=cond)  # noqa: E731
            return m, call, m.transformer_blocks[spec.layers // 2], dit_forward(spec, size, text)
        if isinstance(spec, Vae):
            m = diffusers.AutoencoderKL(
                latent_channels=spec.latent, block_out_channels=spec.channels,
                layers_per_block=spec.layers, down_block_types=["DownEncoderBlock2D"] * 4,
                up_block_types=["UpDecoderBlock2D"] * 4, use_quant_conv=spec.post_quant,
                use_post_quant_conv=spec.post_quant,
            )  # fmt: skip
            return m, lambda: m.decode(z(b, spec.latent, h, h)), None, vae_decode(spec, size)
        ids = z(b, spec.tokens, dtype=torch.long)
        if spec.patch:
            m = tf.CLIPVisionModelWithProjection(tf.CLIPVisionConfig(
                hidden_size=spec.width, intermediate_size=spec.ff, num_hidden_layers=spec.layers,
                num_attention_heads=spec.width // 64, patch_size=spec.patch,
                projection_dim=spec.proj,
            ))  # fmt: skip
            call = lambda: m(pixel_values=z(b, 3, 224, 224))  # noqa: E731
        elif spec.gated:
            m = tf.T5EncoderModel(tf.T5Config(
                d_model=spec.width, d_ff=spec.ff, d_kv=64, num_heads=spec.inner // 64,
                num_layers=spec.layers, feed_forward_proj="gated-gelu", vocab_size=32128,
            ))  # fmt: skip
            call = lambda: m(input_ids=ids)  # noqa: E731
        else:
            cls = tf.CLIPTextModelWithProjection if spec.proj else tf.CLIPTextModel
            m = cls(tf.CLIPTextConfig(
                hidden_size=spec.width, intermediate_size=spec.ff, num_hidden_layers=spec.layers,
                num_attention_heads=spec.width // 64, projection_dim=spec.proj or 768,
            ))  # fmt: skip
            call = lambda: m(input_ids=ids)  # noqa: E731
        return m, call, None, Forward(whole=encoder_flops(spec))


def run_forward(call, tap=None) -> None:  # pragma: no cover - needs torch
    """One forward, stopped right after ``tap`` as ``Trace.run_until_traced`` stops it."""
    import torch

    class Stop(Exception):
        pass

    def stop(*_):
        raise Stop

    handle = tap.register_forward_hook(stop) if tap is not None else None
    try:
        with torch.inference_mode(), contextlib.suppress(Stop):
            call()
    finally:
        if handle is not None:
            handle.remove()


#: the default size (px) and text tokens each component is built at by ``--crosscheck``
CROSSCHECK_AT = {
    "unet-sd15": (512, 77), "unet-sdxl": (1024, 77), "unet-lcm": (768, 77),
    "unet-sd21": (768, 77), "mmdit-sd35m": (1024, 333), "flux-schnell": (1024, 512),
    "dit-pixart-sigma": (1024, 300), "vae-sd": (512, 0), "vae-16": (512, 0),
}  # fmt: skip


def crosscheck() -> list[dict[str, Any]]:  # pragma: no cover - needs torch; run by hand
    """Build every component on the meta device from :data:`ARCHITECTURES` and compare its
    parameter count and the FLOPs of one forward (whole and up to the tap) with the formulas."""
    from torch.utils.flop_counter import FlopCounterMode

    def count(call, tap=None) -> int:
        counter = FlopCounterMode(display=False)
        with counter:
            run_forward(call, tap)
        return int(counter.get_total_flops())

    rows = []
    for name, comp in ARCHITECTURES.items():
        size, text = CROSSCHECK_AT.get(name, (224, 0))
        m, call, tap, f = build(comp.spec, size, text, 1, "meta")
        params = sum(p.numel() for p in m.parameters())
        row = {"component": name, "params": params, "params_table": comp.params,
               "flops": count(call), "flops_formula": f.whole}  # fmt: skip
        if tap is not None:
            row |= {"to_tap": count(call, tap), "to_tap_formula": f.to_tap}
        row["equal"] = (row["params"], row["flops"], row.get("to_tap")) == (
            comp.params, f.whole, f.to_tap if tap is not None else None
        )  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


#: ``--activations``: small models of each family (a few blocks at full width, full tokens or
#: a smaller image), the batches compared, and whether the forward stops at the tap
ACTIVATION_CASES = {
    "unet-sd15 256px to tap": (ARCHITECTURES["unet-sd15"].spec, 256, 77, (8, 16), True),
    "vae-sd 256px": (Vae(), 256, 0, (2, 4), False),
    "dit-pixart 2 blocks": (DiT(1152, 2), 1024, 300, (2, 4), False),
    "mmdit-sd35m 2 blocks": (MMDiT(1536, 2, 1), 1024, 333, (2, 4), False),
    "flux 1+1 blocks 256px": (Flux(3072, 1, 1), 256, 512, (2, 4), False),
}


def activation_probe(case: str, batch: int) -> None:  # pragma: no cover - needs torch
    """Peak resident memory (VmHWM, reset first) of one float32 CPU forward above the memory
    held before it, of one ``ACTIVATION_CASES`` case at ``batch``; run in its own process with
    glibc returning every large block at once (``MALLOC_MMAP_THRESHOLD_``)."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    spec, size, text, _, to_tap = ACTIVATION_CASES[case]
    m, call, tap, f = build(spec, size, text, batch, "cpu")
    m.eval()

    def status(key: str) -> int:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if key in x)
        return int(line.split()[1]) * 1024

    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM
    before = status("VmRSS:")
    run_forward(call, tap if to_tap else None)
    print(json.dumps({"case": case, "batch": batch, "bytes": status("VmHWM:") - before,
                      "widest": f.widest}))  # fmt: skip


def activations() -> list[dict[str, Any]]:  # pragma: no cover - needs torch; minutes of CPU
    """Per case, the activation bytes a sample adds at the peak (the difference of two batches)
    per element of the widest tensor and byte of float32: what ACTIVATION_PER_ELEMENT assumes."""
    env = os.environ | {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    rows = []
    for case, (_, _, _, batches, _) in ACTIVATION_CASES.items():
        got = []
        for b in batches:
            out = subprocess.run([sys.executable, __file__, "--activation-probe", case, str(b)],
                                 capture_output=True, text=True, env=env, check=True)  # fmt: skip
            got.append(json.loads(out.stdout.strip().splitlines()[-1]))
        per_sample = (got[1]["bytes"] - got[0]["bytes"]) / (batches[1] - batches[0])
        row = {"case": case, "batches": list(batches), "per_sample_bytes": per_sample,
               "factor": per_sample / (got[0]["widest"] * 4)}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def rows_for(names: list[str] | None = None) -> list[dict[str, Any]]:
    return [estimate(n) for n in (names or list(CONFIGS))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="BENCHMARKS.md's derivation")
    parser.add_argument("--json", type=Path, help="write every figure as JSON")
    parser.add_argument(
        "--crosscheck",
        action="store_true",
        help="FLOPs and parameters against torch's counter (imports torch)",
    )
    parser.add_argument(
        "--activations",
        action="store_true",
        help="the activation factor measured on the CPU, per family (imports torch; minutes)",
    )
    parser.add_argument("--activation-probe", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.crosscheck or args.activations or args.activation_probe:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        if args.activation_probe:
            activation_probe(args.activation_probe[0], int(args.activation_probe[1]))
        else:
            crosscheck() if args.crosscheck else activations()
        return
    rows = rows_for()
    checks = [check_cost(rows[0], steps) for steps in (50, rows[0]["steps"])]
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "date": DATE,
                    "utilisation": UTILISATION,
                    "peak_flops": PEAK_FLOPS,
                    "configs": rows,
                    "check": checks,
                },
                indent=1,
            )
            + "\n"
        )
    print(full_tables(rows, checks) if args.full else readme_table(rows))


if __name__ == "__main__":
    main()
