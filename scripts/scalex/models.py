"""Load a diffusers text-to-image model and tell which family it belongs to.

A model is a Hugging Face id or a local folder. Loading honours ``HF_HUB_OFFLINE`` and the local
cache (``local_files_only`` is set whenever the hub is offline or the id is a folder), so an audit
never downloads silently.

Folders that diffusers cannot load alone (the bundled reference worlds keep their text encoder in
a Python package) are handled by model loaders plugged in through the ``scalex.model_loaders``
entry point: a loader ``recognises(folder)``, supplies ``components(folder, dtype)``, names its
``family`` and may point to the model's ``ground_truth(folder)``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from scalex.config import check_model_source, check_model_trust, hub_offline
from scalex.errors import ModelError
from scalex.loaders import loader_for

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class ModelInfo:
    """What an activation file records about the model that produced it."""

    model_id: str
    revision: str | None
    family: str
    architecture: str
    pipeline_class: str
    prediction_type: str
    sample_size: int
    vae_scale_factor: int


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; an explicit device must exist."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"sampling.device is {device!r} but CUDA is not available here")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ModelError("sampling.device is 'mps' but Apple MPS is not available here")
    return torch.device(device)


def noise_source(noise_device: str, device: torch.device) -> str:
    """The device type whose generators draw a run's noise: ``cpu``, or the model's device type
    when ``sampling.noise_device`` is ``device``. The same seed is other noise on another source."""
    return "cpu" if noise_device == "cpu" else device.type


def seed_generators(
    seeds: Sequence[int], noise_device: str, device: torch.device
) -> list[torch.Generator]:
    """One generator per seed where ``sampling.noise_device`` says, as a user passes them to the
    stock pipeline (``torch.Generator(where).manual_seed(seed)``): every noise draw of scalex."""
    where = "cpu" if noise_device == "cpu" else device
    return [torch.Generator(where).manual_seed(int(s)) for s in seeds]


def load_pipeline(
    model_id: str,
    *,
    revision: str | None = None,
    variant: str | None = None,
    dtype: str = "float32",
    device: str = "auto",
    scheduler: str | None = None,
    scheduler_kwargs: dict[str, Any] | None = None,
    allow_pickle: bool = False,
    allow_custom_code: bool = False,
):
    """Load a text-to-image pipeline on ``device`` in ``dtype``, with an optional scheduler swap.

    ``scheduler`` names a diffusers scheduler class (e.g. ``LCMScheduler``) that is built from the
    model's own scheduler config, so training-time settings (betas, prediction type) carry over.
    Pickled weights and a model's own code are refused unless allowed (:func:`check_model_trust`).
    """
    import diffusers
    from diffusers import DiffusionPipeline

    from scalex.rulekit import configure_torch

    configure_torch()  # in a rule job: diffusers is imported now, silence it
    folder = check_model_source(model_id)
    check_model_trust(folder, allow_pickle, allow_custom_code)
    torch_dtype = DTYPES[dtype]
    kwargs: dict[str, Any] = {
        "torch_dtype": torch_dtype,
        "local_files_only": folder is not None or hub_offline(),
        "safety_checker": None,
        "requires_safety_checker": False,
        # never unpickle unless allowed: diffusers then refuses a component without safetensors
        "use_safetensors": None if allow_pickle else True,
        "trust_remote_code": allow_custom_code,
    }
    if revision and folder is None:
        kwargs["revision"] = revision
    if variant:
        kwargs["variant"] = variant
    loader = loader_for(folder)
    if loader is not None:
        kwargs.update(loader.components(folder, torch_dtype))
    try:
        pipe = DiffusionPipeline.from_pretrained(model_id, **kwargs)
    except (OSError, ValueError) as err:
        where = (
            "local folder" if folder else "Hugging Face id (local cache, HF_HUB_OFFLINE honoured)"
        )
        raise ModelError(f"cannot load model {model_id!r} as a {where}: {err}") from err
    if getattr(pipe, "unet", None) is None and getattr(pipe, "transformer", None) is None:
        raise ModelError(
            f"model {model_id!r} ({type(pipe).__name__}) has neither a UNet nor a transformer "
            "denoiser: scalex reads the denoiser's H-space"
        )
    if scheduler and scheduler != "auto":
        cls = getattr(diffusers, scheduler, None)
        if cls is None or not hasattr(cls, "from_config"):
            raise ModelError(f"sampling.scheduler {scheduler!r} is not a diffusers scheduler class")
        pipe.scheduler = cls.from_config(pipe.scheduler.config, **(scheduler_kwargs or {}))
    pipe.set_progress_bar_config(disable=True)
    pipe.to(resolve_device(device))
    for part in ("unet", "transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3"):
        module = getattr(pipe, part, None)
        if module is not None:
            module.eval().requires_grad_(False)
    return pipe


def detect_family(pipe, model_id: str = "") -> ModelInfo:
    """Classify a pipeline as SD 1.x, SD 2.x, SDXL, LCM, SD3, Flux, PixArt or a loader's family
    (``reference``).

    LCM is recognised by a guidance-embedding UNet (``time_cond_proj_dim``) or an ``LCMScheduler``;
    its ``architecture`` then says whether it is SD 1.x/2.x- or SDXL-shaped.
    """
    from scalex.families import adapter_class, architecture, family

    folder = check_model_source(model_id) if model_id else None
    loader = loader_for(folder)
    arch = architecture(pipe, loader.family if loader is not None else None)
    adapter = adapter_class(pipe, arch)(pipe, torch.device("cpu"), cfg=False)
    vae_scale = adapter.vae_scale
    return ModelInfo(
        model_id=model_id,
        revision=None,
        family=family(pipe, arch),
        architecture=arch,
        pipeline_class=type(pipe).__name__,
        prediction_type=pipe.scheduler.config.get("prediction_type", "epsilon"),
        sample_size=adapter.default_size()[0] // vae_scale,
        vae_scale_factor=vae_scale,
    )


def planned_revision(model: dict[str, Any]) -> str | None:
    """The revision a job loads: for a hub id, the commit the run was planned with (its results
    tree is named from it: ``content`` is ``commit:<sha>``), so a branch that moves mid-run
    cannot put two commits in one tree; else ``model.revision``."""
    content = model.get("content") or ""
    if content.startswith("commit:"):
        return content[len("commit:") :]
    return model.get("revision")


def check_model_content(settings: dict[str, Any]) -> None:
    """Refuse to extract when the model's content is not the one the results tree names.

    The tree's hash was computed from the model's digest when the DAG was built; if the files
    changed since (a retraining in the same run, a re-download), the activations would be
    filed under the wrong model. A hub id is checked at the commit the run was planned with,
    which every job loads (:func:`planned_revision`): its branch moving since changes nothing.
    """
    from scalex.provenance import model_content

    model = settings["model"]
    expected = model.get("content")
    if expected is None:
        return
    found = model_content(model["id"], planned_revision(model))
    if found is None and expected.startswith("commit:"):
        if not hub_offline():  # loading downloads that very commit (load_model pins it)
            return
        raise ModelError(
            f"model.id {model['id']!r}: commit {expected[7:]} that this run was planned with is "
            "no longer in the local Hugging Face cache and HF_HUB_OFFLINE is set: download it "
            "again or rerun snakemake to plan a new tree"
        )
    if found != expected:
        raise ModelError(
            f"model.id {model['id']!r} changed since this run was planned (content {found}, "
            f"expected {expected}): rerun snakemake to file its results under a new tree"
        )


def load_model(settings: dict[str, Any], runtime: dict[str, Any] | None = None):
    """Load the configured pipeline and check its family against ``model.family``."""
    runtime = runtime or {}
    model, sampling = settings["model"], settings["sampling"]
    pipe = load_pipeline(
        model["id"],
        revision=planned_revision(model),
        variant=model.get("variant"),
        dtype=sampling["dtype"],
        device=runtime.get("device", "auto"),
        scheduler=sampling.get("scheduler"),
        scheduler_kwargs=sampling.get("scheduler_kwargs"),
        allow_pickle=bool(runtime.get("allow_pickle", False)),
        allow_custom_code=bool(runtime.get("allow_custom_code", False)),
    )
    info = detect_family(pipe, model["id"])
    wanted = model.get("family", "auto")
    if wanted not in ("auto", info.family):
        raise ModelError(
            f"model.family is {wanted!r} but {model['id']!r} looks like {info.family!r} "
            f"({info.pipeline_class}); set model.family: auto or fix model.id"
        )
    return pipe, info
