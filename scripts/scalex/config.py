"""Validate the workflow configuration and derive what identifies a results tree.

The schema (``scalex/schema/config.schema.yaml``, package data; ``config/README.md`` is generated
from it) catches malformed values and fills defaults; the checks here
catch what a schema cannot (files that must exist, cross-references between keys), so a bad
config stops with one message naming the key before any model is loaded.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from scalex.errors import ConfigError, ModelError
from scalex.templates import baseline_prompts

#: JSON schemas shipped as package data: found in an installed wheel as in a source checkout
SCHEMA_DIR = resources.files("scalex") / "schema"
SCHEMA_PATH = SCHEMA_DIR / "config.schema.yaml"
CONCEPTS_SCHEMA_PATH = SCHEMA_DIR / "concepts.schema.yaml"

#: Keys that never change activations: they stay out of the settings hash, so that a run resumed
#: on another device or with another batch size keeps writing the same results tree.
NON_SEMANTIC = {
    "model": ("allow_pickle", "allow_custom_code"),
    "sampling": ("device", "batch_size"),
    "extraction": ("buckets", "threads", "progress", "compression", "reuse", "compile"),
}


def load_config(path: str | Path) -> dict[str, Any]:
    """Read one YAML config file (in ``<root>/config/``) and validate it (defaults filled in)."""
    return load_configs([path], base=Path(path).parent.parent)


def load_configs(paths: Sequence[str | Path], base: str | Path = ".") -> dict[str, Any]:
    """Several config files merged as ``snakemake --configfile a.yaml b.yaml`` merges them:
    in order, later files updating earlier ones key by key (nested mappings merged), then
    validated once."""
    merged: dict[str, Any] = {}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            cfg = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
        if not isinstance(cfg, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        merged = _merge(merged, cfg)
    return validate_config(merged, base=base)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, nested mappings merged (Snakemake's ``update_config``)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def validate_config(cfg: dict[str, Any], base: str | Path = ".") -> dict[str, Any]:
    """Validate ``cfg`` against the schema, fill defaults, and check cross-references.

    ``base`` is the folder that relative sheet paths are resolved against (the workflow root).
    Returns a new dict; the input is not modified.
    """
    cfg = copy.deepcopy(cfg)
    error = _schema_error(cfg)
    if error is not None:
        raise ConfigError(error)
    ext, direc, clus = cfg["extraction"], cfg["directions"], cfg["clustering"]
    if direc["tap"] not in ext["taps"]:
        raise ConfigError(
            f"directions.tap {direc['tap']!r} is not in extraction.taps {ext['taps']}"
        )
    if direc["space"] not in ext["store"]:
        raise ConfigError(
            f"directions.space {direc['space']!r} needs extraction.store to include it"
        )
    if direc["readout"] not in ext["readouts"]:
        raise ConfigError(
            f"directions.readout {direc['readout']!r} is not in extraction.readouts "
            f"{ext['readouts']}"
        )
    if "content" in ext["readouts"] and ext["keep_steps"] and max(ext["keep_steps"]) == 0:
        raise ConfigError(
            "extraction.readouts has 'content', which reads steps after the first: "
            "extraction.keep_steps must keep a step above 0"
        )
    if clus["k_max"] != "auto" and clus["k_max"] < clus["k_min"]:
        raise ConfigError("clustering.k_max must be at least clustering.k_min")
    check_sampling(cfg)
    check_results_path(cfg["results"])  # relative to the working directory, as Snakemake
    steps = cfg["sampling"]["steps"]
    for step in ext["keep_steps"] or []:
        if step >= steps:
            raise ConfigError(f"extraction.keep_steps has {step}, beyond sampling.steps ({steps})")
    templates = cfg["concepts"]["templates"]
    base_cfg = cfg["concepts"]["baseline"]
    if "prompts" not in base_cfg and base_cfg.get("templates", "default") not in templates:
        raise ConfigError(
            f"concepts.baseline.templates {base_cfg['templates']!r} is not a key of "
            "concepts.templates"
        )
    for sheet in cfg["concepts"]["sheets"]:
        if not (Path(base) / sheet).is_file():
            raise ConfigError(f"concepts.sheets: file {sheet} does not exist")
    if "content" in ext["readouts"] and ext["content_prompt"] is None:
        # the content readout reads every sample under the baseline's first prompt
        ext["content_prompt"] = baseline_prompts(cfg)[0][0]
    return cfg


def compared_config(cfg: dict[str, Any], base: str | Path = ".") -> dict[str, Any] | None:
    """The config of a comparison's new model (``compare:``): this validated config with the
    model (and the seeds, when given) replaced and no ``compare`` section, validated; None when
    there is no comparison. The two must sample as many seeds, and differ: without
    ``compare.seeds`` (a null check on the same model), the new model's weights must not be the
    base's (:func:`model_weights`: another folder, label or revision of the same files is the
    same model)."""
    spec = cfg.get("compare")
    if not spec:
        return None
    new = copy.deepcopy(cfg)
    new.pop("compare")
    new["model"] = copy.deepcopy(spec["model"])
    if spec.get("seeds") is not None:
        new["sampling"]["seeds"] = copy.deepcopy(spec["seeds"])
        if len(seeds(new)) != len(seeds(cfg)):
            raise ConfigError(
                f"compare.seeds has {len(seeds(new))} seeds but sampling.seeds has "
                f"{len(seeds(cfg))}: samples pair by seed position, so they must be as many"
            )
    new = validate_config(new, base=base)
    if spec.get("seeds") is None:
        weights = model_weights(cfg["model"])
        if weights is not None and weights == model_weights(new["model"]):
            raise ConfigError(
                f"compare.model {new['model']['id']!r} has the same weights as model "
                f"{cfg['model']['id']!r} (sha256 {weights[:12]}): nothing to compare (give "
                "another model, or compare.seeds for a null check under other seeds)"
            )
    if results_tree(new) == results_tree(cfg):
        raise ConfigError(
            "compare.model is the audited model with the same seeds: nothing to compare (give "
            "another model, or compare.seeds for a null check)"
        )
    return new


#: seeds are stored as int64 and fed to torch.Generator.manual_seed
MAX_SEED = 2**63 - 1


def check_sampling(cfg: dict[str, Any]) -> None:
    """Sampling settings that the schema alone cannot judge, before any model loads."""
    sampling = cfg["sampling"]
    all_seeds = seeds(cfg)
    if all_seeds and max(all_seeds) > MAX_SEED:
        raise ConfigError(f"sampling.seeds: seeds must be below 2**63, not {max(all_seeds)}")
    if sampling["branch"] == "uncond" and sampling["guidance_scale"] <= 1.0:
        raise ConfigError(
            "sampling.branch 'uncond' needs classifier-free guidance: sampling.guidance_scale > 1"
        )
    device = str(sampling["device"])
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", device):
        raise ConfigError(f"sampling.device {device!r}: use auto, cpu, cuda, cuda:N or mps")
    scheduler = sampling.get("scheduler", "auto")
    if scheduler != "auto":
        import diffusers

        if not scheduler.endswith(("Scheduler", "SchedulerOutput")) or not hasattr(
            diffusers, scheduler
        ):
            raise ConfigError(f"sampling.scheduler {scheduler!r} is not a diffusers scheduler")


def check_device(cfg: dict[str, Any]) -> None:
    """An explicit accelerator must exist on this machine. The workflow calls this only when its
    jobs run here: a cluster's login node may well have no GPU for the jobs it submits."""
    device = str(cfg["sampling"]["device"])
    if not (device.startswith("cuda") or device == "mps"):
        return
    import torch  # only for an explicit accelerator: other runs never pay the import

    if device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("sampling.device 'mps' is not available on this machine")
    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise ConfigError(
                f"sampling.device {device!r}: CUDA is not available here "
                f"({torch.cuda.device_count()} devices); use auto or cpu"
            )


def check_results_path(results: str, base: str | Path = ".") -> None:
    """The results folder must be a folder, or creatable: no part of it may be a file."""
    path = Path(base) / Path(results).expanduser()
    for part in [path, *path.parents]:
        if part.exists():
            if not part.is_dir():
                raise ConfigError(f"results: {part} is a file, not a folder")
            return


def check_model_settings(cfg: dict[str, Any], folder: Path | None) -> None:
    """Settings checked against a local model's config files, before the model loads: every
    JSON file the loader reads parses, and the family's own checks pass (the taps exist, the
    image size fits the denoiser: :meth:`scalex.families.FamilyAdapter.check_files`)."""
    if folder is None:  # a hub id: its files are checked when it loads
        return
    model = cfg["model"]
    check_model_trust(folder, model["allow_pickle"], model["allow_custom_code"])
    configs = {}
    for name in (
        "model_index.json",
        "unet/config.json",
        "transformer/config.json",
        "vae/config.json",
    ):
        path = folder / name
        if not path.is_file():
            if name == "model_index.json":
                raise ModelError(f"model.id: {path} does not exist")
            continue
        try:
            configs[name] = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ModelError(f"model.id: {path} is not valid JSON ({err})") from err
    from scalex.model_checks import check_files

    if not isinstance(configs["model_index.json"], dict):
        raise ModelError(f"model.id: {folder / 'model_index.json'} is not a JSON object")
    check_files(cfg, configs)


def check_model_source(model_id: str) -> Path | None:
    """Fail early, with the path in the message, when a model cannot be found.

    Returns the folder of a local model and None for a hub id. A hub id must be in the local
    cache when ``HF_HUB_OFFLINE`` is set, since nothing could download it.
    """
    path = Path(model_id).expanduser()
    looks_local = path.exists() or model_id.startswith((".", "/", "~")) or model_id.count("/") > 1
    if not looks_local:
        if hub_offline():
            from huggingface_hub import try_to_load_from_cache

            if not isinstance(try_to_load_from_cache(model_id, "model_index.json"), str):
                raise ModelError(
                    f"model.id {model_id!r} is not in the local Hugging Face cache and "
                    "HF_HUB_OFFLINE is set: download it first or give a local folder"
                )
        return None
    if not path.is_dir():
        raise ModelError(f"model.id: model folder {model_id!r} does not exist")
    if not (path / "model_index.json").is_file():
        raise ModelError(
            f"model.id: folder {model_id!r} has no model_index.json (not a diffusers pipeline)"
        )
    return path


#: Weight files that loading would unpickle (a pickle can run any code when it is loaded).
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle")
#: Files with a pickle's suffix that no loader unpickles: OpenVINO's weights (raw tensors, read
#: with their ``openvino_model.xml``), which SDXL ships in every component folder, ``vae_decoder``
#: and ``vae_encoder`` (no safetensors there) included.
NOT_PICKLED = re.compile(r"openvino_model\.bin")
#: Libraries a ``model_index.json`` component may come from without running the folder's code
#: (besides diffusers' own pipeline modules: :func:`diffusers_pipeline_class`).
KNOWN_LIBRARIES = {"diffusers", "transformers", None}


@functools.cache
def diffusers_pipeline_class(library: str, name: str) -> bool:
    """Whether ``[library, name]``, a ``model_index.json`` entry, names a class of diffusers' own
    pipeline module (``["stable_diffusion", "StableDiffusionSafetyChecker"]``, as SD 1.x and its
    fine-tunes ship): diffusers' code, not the model's. Read from the installed diffusers package
    (the module's ``__init__.py`` defines or exports ``name``) without importing it."""
    import ast
    import importlib.util

    if not all(isinstance(s, str) and s.isidentifier() for s in (library, name)):
        return False
    spec = importlib.util.find_spec("diffusers")
    if spec is None or not spec.submodule_search_locations:
        return False
    init = Path(next(iter(spec.submodule_search_locations))) / "pipelines" / library / "__init__.py"
    try:
        tree = ast.parse(init.read_text())
    except (OSError, SyntaxError, ValueError):
        return False
    return any(
        (isinstance(node, ast.Constant) and node.value == name)
        or (isinstance(node, ast.alias) and (node.asname or node.name) == name)
        for node in ast.walk(tree)
    )


def check_model_trust(
    folder: Path | None, allow_pickle: bool = False, allow_custom_code: bool = False
) -> None:
    """Refuse a model folder that would run its own code when loaded, before anything is
    unpickled or imported: an audited model is often untrusted.

    Refused unless allowed: pickled weights (``.bin``, ``.ckpt``, ...) with no safetensors file
    beside them (``model.allow_pickle``), and code the model would run (a ``model_index.json``
    component from a library other than diffusers, its pipeline modules and transformers, with
    its ``.py`` file named, also in a hidden or symlinked folder; a config's ``auto_map``;
    ``model.allow_custom_code``). A ``.py`` file nothing names is never imported, and accepted.
    A hub id is loaded with safetensors only unless allowed, and diffusers refuses remote code by
    default.
    """
    if folder is None:
        return
    from scalex.provenance import model_files

    files = model_files(folder, hidden=True)  # symlinked folders followed, cycles refused
    why = "an audited model is untrusted, and loading it would run that code"
    if not allow_custom_code:
        index = _json_or_none(folder / "model_index.json") or {}
        foreign = {
            str(entry[0])
            for entry in index.values()
            if isinstance(entry, list)
            and entry
            and entry[0] not in KNOWN_LIBRARIES
            and not (len(entry) == 2 and diffusers_pipeline_class(entry[0], entry[1]))
        }
        # a module file the index names would be imported; one nothing names never is (no
        # custom_pipeline, no trust_remote_code), as hub repos ship legacy pipeline scripts
        code = [path for rel, path in files if rel.endswith(".py") and path.stem in foreign]
        if code:
            raise ModelError(
                f"model.id: {code[0]} is code shipped with the model; scalex does not import "
                f"it ({why}). Set model.allow_custom_code: true only for a model you trust"
            )
        for name, entry in index.items():
            if not isinstance(entry, list) or not entry or entry[0] in KNOWN_LIBRARIES:
                continue
            if len(entry) == 2 and diffusers_pipeline_class(entry[0], entry[1]):
                continue  # diffusers' own pipeline module (SD 1.x's safety checker)
            raise ModelError(
                f"model.id: {folder / 'model_index.json'} loads component {name!r} from "
                f"{entry[0]!r}, code shipped with the model ({why}). Set "
                "model.allow_custom_code: true only for a model you trust"
            )
        for rel, config in files:
            component_config = rel.count("/") == 1 and rel.endswith("/config.json")
            if component_config and "auto_map" in (_json_or_none(config) or {}):
                raise ModelError(
                    f"model.id: {config} maps its classes to code shipped with the model "
                    f"(auto_map; {why}). Set model.allow_custom_code: true only for a model you "
                    "trust"
                )
    if not allow_pickle:
        safetensors = {rel.rpartition("/")[0] for rel, _ in files if rel.endswith(".safetensors")}
        for rel, path in files:
            if (
                path.suffix in PICKLE_SUFFIXES
                and not NOT_PICKLED.fullmatch(path.name)
                and rel.rpartition("/")[0] not in safetensors
            ):
                raise ModelError(
                    f"model.id: {path} holds pickled weights and no safetensors file is beside "
                    f"it; unpickling can run any code ({why}). Convert the weights to "
                    "safetensors, or set model.allow_pickle: true only for a model you trust"
                )


def _json_or_none(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set to a true value."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def schema_default(section: str, key: str) -> Any:
    """The schema's default of ``<section>.<key>``: the one place a setting's default lives
    (:class:`scalex.extract.SamplingSettings` takes its defaults from here)."""
    return copy.deepcopy(_schema_properties()[section]["properties"][key]["default"])


@functools.cache
def _schema_properties() -> dict[str, Any]:
    return load_schema("config")["properties"]


def load_schema(name: str = "config") -> dict[str, Any]:
    """A fresh copy of the packaged schema ``schema/<name>.schema.yaml`` (config or concepts)."""
    return yaml.safe_load((SCHEMA_DIR / f"{name}.schema.yaml").read_text(encoding="utf-8"))


def default_filling_validator():
    """A JSON-schema validator that fills ``default`` values into mappings as it validates.

    (``snakemake.utils.validate`` cannot be used: it calls ``setdefault`` on any instance inside
    a ``oneOf`` branch, so ``sampling.seeds: [0, 1]`` crashed with an AttributeError, and its
    ``WorkflowError`` drops the failing key and reason.)
    """
    from jsonschema import Draft202012Validator, validators

    validate_properties = Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, subschema in properties.items():
                if isinstance(subschema, dict) and "default" in subschema:
                    instance.setdefault(prop, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    # JSON Schema counts 4.0 as an integer; Python code downstream (range, manual_seed) does not
    strict = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, v: isinstance(v, int) and not isinstance(v, bool)
    )
    return validators.extend(
        Draft202012Validator, {"properties": set_defaults}, type_checker=strict
    )


def _schema_error(cfg: dict[str, Any]) -> str | None:
    """Fill defaults into ``cfg``; return one message naming the failing key, or None."""
    from jsonschema.exceptions import best_match

    schema = load_schema("config")
    validator = default_filling_validator()(schema)
    err = best_match(validator.iter_errors(cfg))
    if err is None:
        return None
    key = ".".join(str(p) for p in err.absolute_path) or "<top level>"
    return f"config key {key}: {err.message}"


def runtime_options(cfg: dict[str, Any]) -> dict[str, Any]:
    """Settings that never change a result (device, batch size, progress, compression, reuse,
    compile).

    Rules read them from the config inside the job instead of taking them as ``params``, so
    changing one reruns nothing and never deletes a finished output.
    """
    return {
        key: cfg[section][key]
        for section, keys in NON_SEMANTIC.items()
        for key in keys
        if key not in ("buckets", "threads")  # they shape the DAG, not a job's work
    }


def seeds(cfg: dict[str, Any]) -> list[int]:
    """The seed list, from an explicit list or a ``{start, count}`` range."""
    spec = cfg["sampling"]["seeds"]
    if isinstance(spec, list):
        return [int(s) for s in spec]
    return list(range(spec.get("start", 0), spec.get("start", 0) + spec["count"]))


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def extraction_settings(cfg: dict[str, Any]) -> dict[str, Any]:
    """The settings that determine activations: model (with a digest of its content), sampling,
    seeds, tap points and readouts."""
    sampling = {k: v for k, v in cfg["sampling"].items() if k not in NON_SEMANTIC["sampling"]}
    sampling["seeds"] = seeds(cfg)
    extraction = {k: v for k, v in cfg["extraction"].items() if k not in NON_SEMANTIC["extraction"]}
    model = {k: v for k, v in cfg["model"].items() if k not in NON_SEMANTIC["model"]}
    model["content"] = _model_content(model["id"], model.get("revision"))
    return {"model": model, "sampling": sampling, "extraction": extraction}


def _model_content(model_id: str, revision: str | None) -> str | None:
    from scalex.provenance import model_content

    return model_content(model_id, revision)


#: Files that hold a model's weights: what makes two models the same model.
WEIGHT_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)


def model_weights(model: dict[str, Any]) -> str | None:
    """sha256 over a model's weight files (relative path and content digest) and its
    ``variant`` (which of them load); None when there is nothing to read here (a hub id not in
    the local cache, no weight files).

    Configs, ``family`` and a local folder's ``revision`` are left out: two folders holding the
    same weights are the same model, and so are a hub id and a local copy of its cached snapshot
    (a cached file's blob is named by its sha256, which is taken as it is, unread).
    """
    from scalex.provenance import _file_digest, _load_cache, _save_cache, model_files

    folder = Path(model["id"]).expanduser()
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(
                snapshot_download(
                    model["id"], revision=model.get("revision"), local_files_only=True
                )
            )
        except Exception:  # noqa: BLE001 - not cached, or no hub client: nothing to read
            return None
    cache = _load_cache()
    before = len(cache)
    h = hashlib.sha256(f"variant\0{model.get('variant')}\n".encode())
    found = False
    for rel, path in model_files(folder):  # hidden files aside, symlinked folders followed
        if path.suffix not in WEIGHT_SUFFIXES:
            continue
        blob = path.resolve().name
        digest = blob if re.fullmatch(r"[0-9a-f]{64}", blob) else _file_digest(path, cache)
        h.update(f"{rel}\0{digest}\n".encode())
        found = True
    if len(cache) != before:
        _save_cache(cache)
    return h.hexdigest() if found else None


def settings_hash(cfg: dict[str, Any]) -> str:
    """Eight hex digits identifying :func:`extraction_settings`."""
    return hashlib.sha256(canonical_json(extraction_settings(cfg)).encode()).hexdigest()[:8]


def model_slug(model_id: str) -> str:
    """A short, path-safe name for a model id or folder (``worlds/opposed/model`` -> opposed)."""
    path = Path(model_id.rstrip("/"))
    name = path.name or "model"
    if name == "model" and path.parent.name:
        name = path.parent.name
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-").lower() or "model"


def results_tree(cfg: dict[str, Any]) -> str:
    """``<results>/<model-slug>-<hash8>``: one tree per model and extraction settings."""
    return f"{cfg['results']}/{model_slug(cfg['model']['id'])}-{settings_hash(cfg)}"
