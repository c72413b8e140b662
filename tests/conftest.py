"""Shared fixtures: offline, single-threaded torch, tiny random models and workflow configs."""

from __future__ import annotations

import os
import sys

# Set before torch, transformers or diffusers are imported anywhere (subprocesses inherit these).
os.environ["HF_HUB_OFFLINE"] = "1"
# Shell rules run `python`: in workflow tests it must be this interpreter (an unactivated venv).
os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("sd1", "sd2", "sdxl", "lcm")

#: Four concepts of two sets, as written to the default test sheet.
CONCEPT_ROWS = [
    ("doctor", "professions", "doctor"),
    ("nurse", "professions", "nurse|caregiver"),
    ("engineer", "professions", "engineer"),
    ("woman", "genders", "woman"),
]


def pytest_configure(config):
    # diffusers' and transformers' deprecation notices are not ours to fix
    config.addinivalue_line("filterwarnings", "ignore::FutureWarning")
    config.addinivalue_line("filterwarnings", "ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(autouse=True)
def _single_thread_torch():
    """Two cores are shared with other work: oversubscribed torch is 20x slower."""
    import torch

    torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True, scope="session")
def _quiet():
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        import diffusers
        import transformers

        diffusers.utils.logging.set_verbosity_error()
        diffusers.utils.logging.disable_progress_bar()
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass
    yield


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Folders of the tiny random pipelines of every family, saved once per session."""
    import torch
    from random_models import save_random_pipeline

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny-models")
    return {fam: save_random_pipeline(fam, root / fam) for fam in FAMILIES}


@pytest.fixture(scope="session")
def tiny_pipes(tiny_models):
    """Loaded tiny pipelines (CPU, float32), one per family, cached for the session.

    Tests must not change these pipelines' state; tests that swap schedulers load their own.
    """
    from scalex.models import load_pipeline

    cache: dict[str, Any] = {}

    def get(family: str):
        if family not in cache:
            cache[family] = load_pipeline(str(tiny_models[family]), device="cpu")
        return cache[family]

    return get


def write_sheet(path: Path, rows=CONCEPT_ROWS) -> Path:
    """A TSV concept sheet with columns id, set, terms, templates."""
    lines = ["id\tset\tterms\ttemplates"] + [
        f"{cid}\t{cset}\t{terms}\t" for cid, cset, terms in rows
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def deep_update(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value
    return base


def workflow_config(model: str | Path, sheet: str | Path, **overrides: Any) -> dict[str, Any]:
    """A small, valid workflow config: 2 seeds, 2 steps, CPU, absolute paths."""
    cfg: dict[str, Any] = {
        "results": "results",
        "model": {"id": str(model), "family": "auto"},
        "sampling": {
            "steps": 2,
            "seeds": [0, 1],
            "guidance_scale": 1.0,
            "device": "cpu",
            "batch_size": 8,
        },
        "extraction": {
            "taps": ["mid_block"],
            "store": ["pooled"],
            "buckets": 2,
            "progress": False,
        },
        "concepts": {
            "sheets": [str(sheet)],
            "templates": {"default": ["a photo of {article} {term}"]},
            "baseline": {"terms": ["person"], "templates": "default"},
            "descriptors": {"targets": [], "axes": {}},
        },
        "directions": {"tap": "mid_block", "space": "pooled"},
        "clustering": {"sets": None, "linkage": "average", "k_min": 2, "k_max": 3},
    }
    return deep_update(cfg, overrides)


@pytest.fixture
def make_workflow_config():
    """``make(dir, model, rows=..., **overrides) -> (config path, sheet path)``."""

    def make(directory: Path, model: str | Path, rows=CONCEPT_ROWS, **overrides: Any):
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        sheet = write_sheet(directory / "concepts.tsv", rows)
        cfg = workflow_config(model, sheet.resolve(), **overrides)
        path = directory / "config.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path, sheet

    return make


def result_digests(root: Path) -> dict[str, str]:
    """sha256 of every result file under ``root``; logs, benchmark timings and hidden files
    (the stamps of kept files: inode and time) excluded, since they differ between two runs
    of the same work."""
    import hashlib

    out = {}
    for path in sorted(Path(root).rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and not {"logs", "benchmarks"} & set(rel.parts):
            if path.name.startswith("."):
                continue
            out[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out
