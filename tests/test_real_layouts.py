"""Every real pipeline layout accepted as shipped (issue 31, requirement 1).

``tests/real_layouts/<name>/`` holds, for each published model, its ``model_index.json``, its
scheduler config and every component's config as published, size fields shrunk (their README
names each file's source and the fields shrunk), and ``weights.txt``, the weight files it ships.
:func:`build_layout` fills such a folder with tiny random weights of the published classes, in the
published file names (fp16 variants, ``.bin`` beside ``.safetensors``, shards with their index,
single-file checkpoints at the top, OpenVINO and ONNX exports), a safety checker and a feature
extractor where SD 1.x ships them. Every layout is accepted by the config checks and planned by
Snakemake; one per family is extracted; the Hugging Face cache layout (snapshot files linked into
``blobs/``) is read through its hub id; a fine-tune whose ``unet/`` links to a training output is
digested through the link, and a symlink cycle is refused in one line.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import deep_update, workflow_config, write_sheet
from scalex.config import check_model_trust, model_weights, results_tree, validate_config
from scalex.errors import ModelError
from scalex.provenance import folder_digest

DATA = Path(__file__).resolve().parent / "real_layouts"
LAYOUTS = sorted(p.name for p in DATA.iterdir() if (p / "model_index.json").is_file())
FAMILY = {
    "sd14": "sd1",
    "sd15": "sd1",
    "sd21": "sd2",
    "sdxl-base": "sdxl",
    "sdxl-turbo": "sdxl",
    "lcm-dreamshaper-v7": "lcm",
    "sd35-medium": "sd3",
    "flux-schnell": "flux",
    "pixart-sigma": "pixart",
}
#: the layout of each family that runs end to end (SDXL through its fp16 variant)
END_TO_END = {
    "sd1": "sd15",
    "sd2": "sd21",
    "sdxl": "sdxl-base",
    "lcm": "lcm-dreamshaper-v7",
    "sd3": "sd35-medium",
    "flux": "flux-schnell",
    "pixart": "pixart-sigma",
}
VARIANT = {"sdxl-base": "fp16"}
#: the SD 1.5 layout in the Hugging Face cache, under this id and commit
HUB_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"
HUB_COMMIT = "1d0c4ebf6ff58a5caecab40fa1406526bca4b5b9"
#: files written as dummy bytes: other runtimes' exports, which no loader here reads
FOREIGN = (".onnx", ".onnx_data", ".xml", ".msgpack")
SHARD = re.compile(r"(?P<base>.+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.safetensors")


# ---------------------------------------------------------------- the builder


def _clip_vocab() -> dict[str, int]:
    """A byte-level CLIP vocabulary without merges: every byte, alone and word-final, then the
    start and end tokens (the last ids, as in CLIP's own 49408: the legacy ``eos_token_id: 2``
    of the published text encoder configs finds the end by argmax)."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    extra = [b for b in range(256) if b not in printable]
    chars = [chr(b) for b in printable] + [chr(256 + i) for i in range(len(extra))]
    vocab = {t: i for i, t in enumerate([*chars, *(c + "</w>" for c in chars)])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab


def _t5_tokenizer(folder: Path, cls: str) -> None:
    """A Unigram T5 tokenizer over letters, digits and punctuation (124 ids, under the shrunk
    encoders' 128), saved as ``tokenizer.json`` with the published class and length."""
    import string

    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -3.0) for c in string.ascii_letters + string.digits + string.punctuation]
    pieces += [("\u2581" + c, -2.5) for c in string.ascii_lowercase]
    T5Tokenizer(vocab=pieces, extra_ids=0).save_pretrained(folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.update(tokenizer_class=cls, model_max_length=512)
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def _component(folder: Path, entry: list | None):
    """The random-weight module of a component folder, of the class its ``model_index.json``
    entry names (a folder outside the index, such as SDXL's ``vae_1_0``: its config's)."""
    import diffusers
    import transformers

    config = json.loads((folder / "config.json").read_text())
    library, name = entry if entry and entry[0] else (None, None)
    if library is None:
        name = config.get("_class_name") or config["architectures"][0]
        library = "diffusers" if "_class_name" in config else "transformers"
    if name == "StableDiffusionSafetyChecker":
        from diffusers.pipelines.stable_diffusion.safety_checker import (
            StableDiffusionSafetyChecker,
        )

        return StableDiffusionSafetyChecker(transformers.CLIPConfig.from_dict(config))
    if library == "diffusers":
        if name == "Transformer2DModel" and config.get("norm_type") == "ada_norm_single":
            name = "PixArtTransformer2DModel"  # as diffusers remaps PixArt's published class
        return getattr(diffusers, name).from_config(config)
    cls = getattr(transformers, name)
    return cls(cls.config_class.from_dict(config))


def _write_weights(module, folder: Path, files: list[str]) -> None:
    import torch
    from safetensors.torch import save_file

    state = {k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}
    shards: dict[str, list[str]] = {}
    for name in files:
        path = folder / name
        tensors = {k: v.half() if "fp16" in name else v for k, v in state.items()}
        if name.endswith(FOREIGN) or name.startswith("openvino_model"):
            path.write_bytes(hashlib.sha256(name.encode()).digest())
        elif SHARD.fullmatch(name):
            shards.setdefault(SHARD.fullmatch(name)["base"], []).append(name)
        elif name.endswith(".safetensors"):
            save_file(tensors, path, metadata={"format": "pt"})
        else:  # .bin: pickled, as torch saves it
            torch.save(tensors, path)
    for base, names in shards.items():  # split the weights in order, and index them
        keys = sorted(state)
        weight_map = {}
        for i, name in enumerate(sorted(names)):
            part = {k: state[k] for k in keys[i :: len(names)]}
            save_file(part, folder / name, metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(part, name))
        total = sum(t.numel() * t.element_size() for t in state.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (folder / f"{base}.safetensors.index.json").write_text(json.dumps(index, indent=2))


def build_layout(name: str, out: Path, seed: int = 0) -> Path:
    """The folder of published pipeline ``name`` (``tests/real_layouts/<name>``) with tiny
    random weights: its published files copied, every weight file it ships written."""
    import torch
    from safetensors.torch import save_file

    src = DATA / name
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("weights.txt", "README.md"))
    index = json.loads((out / "model_index.json").read_text())
    weights = (src / "weights.txt").read_text().split()
    by_folder: dict[str, list[str]] = {}
    for rel in weights:
        folder, _, file = rel.rpartition("/")
        by_folder.setdefault(folder, []).append(file)
    for i, (folder, files) in enumerate(sorted(by_folder.items())):
        torch.manual_seed(seed * 1000 + i)
        (out / folder).mkdir(parents=True, exist_ok=True)
        if (out / folder / "config.json").is_file():
            _write_weights(_component(out / folder, index.get(folder)), out / folder, files)
            continue
        for file in files:  # single-file checkpoints and loose exports: not read by diffusers
            path = out / folder / file
            if file.endswith(".safetensors"):
                save_file({"weight": torch.randn(4)}, path, metadata={"format": "pt"})
            elif file.endswith(".ckpt"):
                torch.save({"state_dict": {"weight": torch.randn(4)}}, path)
            else:
                path.write_bytes(hashlib.sha256(file.encode()).digest())
    for component, entry in index.items():
        if not isinstance(entry, list) or entry[0] != "transformers" or "Tokenizer" not in entry[1]:
            continue
        folder = out / component
        folder.mkdir(exist_ok=True)
        if entry[1] == "CLIPTokenizer":  # the published configs, a tiny vocabulary
            (folder / "vocab.json").write_text(json.dumps(_clip_vocab()))
            (folder / "merges.txt").write_text("#version: 0.2\n")
        else:
            _t5_tokenizer(folder, entry[1])
    return out


def hf_cache(folder: Path, cache: Path, repo_id: str, commit: str) -> Path:
    """``folder`` as the Hugging Face hub cache holds a download: ``blobs/`` named by content
    (sha256 for the LFS files, weights; the git blob id for the rest), ``snapshots/<commit>/``
    of relative symlinks into them, ``refs/main``. Returns the snapshot folder."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):  # a built folder: no links
        rel, data = path.relative_to(folder).as_posix(), path.read_bytes()
        if path.suffix in (".safetensors", ".bin", ".ckpt", *FOREIGN):
            blob = hashlib.sha256(data).hexdigest()
        else:
            blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # noqa: S324
        (repo / "blobs" / blob).write_bytes(data)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(repo / "blobs" / blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """Every layout built once; ``hub-cache`` (SD 1.5 in the hub cache), ``finetune`` (SD 1.5
    whose ``unet/`` links to ``training/unet``) beside them."""
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("real-layouts")
    folders = {name: build_layout(name, root / name) for name in LAYOUTS}
    hf_cache(folders["sd15"], root / "hub-cache", HUB_ID, HUB_COMMIT)
    folders["hub-cache"] = root / "hub-cache"
    shutil.copytree(folders["sd15"] / "unet", root / "training" / "unet")
    shutil.copytree(folders["sd15"], root / "finetune", ignore=shutil.ignore_patterns("unet"))
    (root / "finetune" / "unet").symlink_to(Path("..", "training", "unet"))
    folders["finetune"] = root / "finetune"
    return folders


# ---------------------------------------------------------------- running Snakemake


def _config(workdir: Path, model: str | Path, name: str, **extra) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    sheet = write_sheet(workdir / "concepts.tsv", [("doctor", "professions", "doctor")])
    family = FAMILY.get(name, "sd1")
    overrides = {
        "model": {"id": str(model), "variant": VARIANT.get(name)},
        "sampling": {
            "height": 64,
            "width": 64,
            "guidance_scale": 1.0 if family in ("lcm", "flux") else 2.0,
        },
        "extraction": {"buckets": 1},
    }
    cfg = deep_update(workflow_config(model, sheet.resolve()), overrides)
    deep_update(cfg, extra)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _env(cache: Path | None = None) -> dict[str, str]:
    from test_workflow import ENV

    return ENV | ({"HF_HUB_CACHE": str(cache)} if cache else {})


def _run_all(runs: dict[str, tuple[Path, list[str], dict]], timeout: int = 600) -> dict:
    """Start every ``name: (workdir, command, env)`` at once; wait; return name: (rc, output)."""
    procs = {}
    for name, (workdir, cmd, env) in runs.items():
        log = (workdir / "snakemake.out").open("w")
        procs[name] = (subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=log), log)
    out = {}
    for name, (proc, log) in procs.items():
        try:
            proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
        out[name] = (proc.returncode, (runs[name][0] / "snakemake.out").read_text())
    return out


# ---------------------------------------------------------------- the tests


@pytest.mark.slow
def test_every_layout_is_accepted_and_planned(corpus, tmp_path):
    """Each layout as shipped, the hub cache's through its id, the linked fine-tune: the config
    checks pass with the protections on (no ``allow_custom_code``, no ``allow_pickle``) and
    Snakemake plans the extraction."""
    from test_workflow import snakemake_command

    runs = {}
    for name, folder in corpus.items():
        model, cache = (HUB_ID, folder) if name == "hub-cache" else (folder, None)
        config = _config(tmp_path / name, model, name)
        cmd = snakemake_command(tmp_path / name, config, "-n", "--quiet", "rules")
        runs[name] = (tmp_path / name, cmd, _env(cache))
    for name, (rc, output) in _run_all(runs).items():
        assert rc == 0, f"{name} is refused or not planned:\n{output[-4000:]}"
        assert re.search(r"^extract +1$", output, re.M), f"{name}: no extraction:\n{output[-2000:]}"


@pytest.mark.slow
def test_one_layout_per_family_is_extracted_end_to_end(corpus, tmp_path):
    """A real Snakemake run of each family's layout to its activation shards: the model loads
    from the published files (the SD 1.5 folder with its safety checker and feature extractor,
    SDXL from its fp16 variant, PixArt-Sigma's published ``Transformer2DModel``, sharded
    encoders) and every shard is complete, of that family."""
    import h5py
    from scalex.concepts import bucket_of
    from test_workflow import snakemake_command

    runs, trees = {}, {}
    for family, name in END_TO_END.items():
        workdir = tmp_path / name
        config = _config(workdir, corpus[name], name)
        tree = results_tree(validate_config(yaml.safe_load(config.read_text())))
        targets = [f"{tree}/activations/{s}.h5" for s in ("baseline", bucket_of("doctor", 1))]
        runs[name] = (workdir, snakemake_command(workdir, config, targets=targets), _env())
        trees[name] = (family, workdir / tree)
    results = _run_all(runs)
    for name, (rc, output) in results.items():
        assert rc == 0, f"{name} was not extracted:\n{output[-6000:]}"
        family, tree = trees[name]
        for shard in ("baseline", bucket_of("doctor", 1)):
            with h5py.File(tree / "activations" / f"{shard}.h5") as f:
                assert f.attrs["family"] == family and f.attrs["complete"], (name, shard)


def test_sd1_safety_checker_and_feature_extractor_are_diffusers_code(corpus, tmp_path):
    """``["stable_diffusion", "StableDiffusionSafetyChecker"]`` names diffusers' own pipeline
    module: accepted with the protection on. A module diffusers does not have, or a class its
    module does not define, is still code shipped with the model."""
    for name in ("sd14", "sd15", "lcm-dreamshaper-v7"):
        check_model_trust(corpus[name])
    folder = tmp_path / "model"
    folder.mkdir()
    for entry, ok in (
        (["stable_diffusion", "StableDiffusionSafetyChecker"], True),
        (["stable_diffusion_xl", "StableDiffusionXLPipeline"], True),
        (["stable_diffusion", "NotAClassOfDiffusers"], False),
        (["my_safety", "StableDiffusionSafetyChecker"], False),
        (["stable_diffusion.safety_checker", "StableDiffusionSafetyChecker"], False),
        (["../stable_diffusion", "StableDiffusionSafetyChecker"], False),
    ):
        index = {"_class_name": "StableDiffusionPipeline", "safety_checker": entry}
        (folder / "model_index.json").write_text(json.dumps(index))
        if ok:
            check_model_trust(folder)
        else:
            with pytest.raises(ModelError, match="loads component 'safety_checker' from"):
                check_model_trust(folder)
        check_model_trust(folder, allow_custom_code=True)


def test_sdxl_openvino_weights_are_not_pickles(corpus):
    """SDXL ships OpenVINO exports (``openvino_model.bin``, raw tensors) in ``vae_decoder/``
    and ``vae_encoder/`` with no safetensors beside them: no loader unpickles them."""
    assert (corpus["sdxl-base"] / "vae_decoder" / "openvino_model.bin").is_file()
    check_model_trust(corpus["sdxl-base"])


def test_hub_cache_layout_is_read_through_its_id(corpus, monkeypatch):
    """The hub cache's snapshot files are symlinks into ``blobs/``: the id is found offline and
    loads, its weights are the local folder's (same names, same content)."""
    import huggingface_hub
    from scalex.config import check_model_source
    from scalex.models import load_pipeline

    snapshot = corpus["hub-cache"] / ("models--" + HUB_ID.replace("/", "--")) / "snapshots"
    link = snapshot / HUB_COMMIT / "unet" / "diffusion_pytorch_model.safetensors"
    assert link.is_symlink() and link.resolve().parent.name == "blobs"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(corpus["hub-cache"]))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert check_model_source(HUB_ID) is None
    hub = model_weights({"id": HUB_ID, "variant": None})
    assert hub is not None and hub == model_weights({"id": str(corpus["sd15"]), "variant": None})
    pipe = load_pipeline(HUB_ID, device="cpu")
    assert type(pipe).__name__ == "StableDiffusionPipeline" and pipe.safety_checker is None


def test_a_symlinked_component_folder_is_followed(corpus, tmp_path):
    """Retraining the weights behind ``finetune/unet -> ../training/unet`` changes the folder's
    digest, its results tree and its weights' digest (so no sample is reused); a ``.py`` file and
    pickled weights without safetensors inside the linked folder are seen by the trust check."""
    import torch
    from safetensors.torch import load_file, save_file

    root = tmp_path / "copy"
    shutil.copytree(corpus["finetune"].parent / "training", root / "training")
    shutil.copytree(corpus["finetune"], root / "finetune", symlinks=True)
    folder = root / "finetune"
    assert (folder / "unet").is_symlink()
    cfg = validate_config({"model": {"id": str(folder)}, "concepts": {"sheets": [__file__]}})
    before = (folder_digest(folder), results_tree(cfg), model_weights(cfg["model"]))
    weights = root / "training" / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    save_file({k: v + 0.01 * torch.randn_like(v) for k, v in state.items()}, weights)
    after = (folder_digest(folder), results_tree(cfg), model_weights(cfg["model"]))
    assert all(a != b for a, b in zip(before, after, strict=True)), "retraining went unseen"
    check_model_trust(folder)
    (root / "training" / "unet" / "train_unet.py").write_text("import os\n")
    check_model_trust(folder)  # a script nothing names is never imported
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").unlink()  # a copy of the index, naming the linked module
    (folder / "model_index.json").write_text(json.dumps({**index, "unet": ["train_unet", "U"]}))
    with pytest.raises(ModelError, match=r"unet/train_unet\.py is code shipped with the model"):
        check_model_trust(folder)
    (folder / "model_index.json").write_text(json.dumps(index))
    (root / "training" / "unet" / "train_unet.py").unlink()
    for path in (root / "training" / "unet").glob("*.safetensors"):  # SD 1.5's .bin alone
        path.unlink()
    with pytest.raises(ModelError, match=r"unet/diffusion_pytorch_model\S*\.bin holds pickled"):
        check_model_trust(folder)


def test_a_symlink_cycle_is_refused_in_one_line(corpus, tmp_path):
    """A linked folder leading back into the model folder: one line naming the link, from the
    digest, the trust check, the weights' digest and the workflow; never a hang or a skip."""
    from test_workflow import snakemake

    folder = tmp_path / "model"
    shutil.copytree(corpus["sd15"], folder, ignore=shutil.ignore_patterns("*.bin", "*.ckpt"))
    (folder / "unet" / "base").symlink_to("..")
    message = r"unet/base links to .*, a folder that holds it: a symlink cycle"
    for check in (
        lambda: folder_digest(folder),
        lambda: check_model_trust(folder),
        lambda: model_weights({"id": str(folder)}),
    ):
        with pytest.raises(ModelError, match=message) as err:
            check()
        assert "\n" not in str(err.value)
    config = _config(tmp_path / "wf", folder, "sd15")
    proc = snakemake(tmp_path / "wf", config, "-n", check=False, timeout=120)
    assert proc.returncode != 0
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "symlink cycle" in line]
    assert lines and re.search(message, lines[0]), proc.stderr[-3000:]
    # two sibling folders linked to each other: a cycle through two links
    (folder / "unet" / "base").unlink()
    (folder / "unet" / "vae").symlink_to("../vae")
    (folder / "vae" / "unet").symlink_to("../unet")
    with pytest.raises(ModelError, match="a symlink cycle"):
        folder_digest(folder)


def test_the_corpus_data_is_documented():
    """Every layout is in the README (source, fields shrunk) and in a family; its weight files are
    listed, never committed."""
    readme = (DATA / "README.md").read_text()
    for name in LAYOUTS:
        assert f"`{name}`" in readme, f"{name} is not in tests/real_layouts/README.md"
        assert name in FAMILY
        weights = (DATA / name / "weights.txt").read_text().split()
        assert weights and not any((DATA / name / w).exists() for w in weights)
    assert set(END_TO_END) == set(FAMILY.values()) and set(END_TO_END.values()) <= set(LAYOUTS)
