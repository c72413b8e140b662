"""Image conditioning: steering hook, projection of images, AUC and the workflow's config."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, workflow_config, write_sheet
from scalex.concepts import check_conditioning_config
from scalex.conditioning import (
    auc,
    combined_direction,
    image_grid,
    project_images,
    steer,
    steering_edit,
)
from scalex.errors import ConfigError, ExtractionError
from scalex.hooks import Trace

PROMPT = "a photo of a doctor"
STEPS = 3
REFERENCE = ROOT / "resources" / "worlds" / "stereotyped" / "model"


@pytest.fixture(scope="module")
def sd1(tiny_pipes):
    return tiny_pipes("sd1")


def _direction(pipe, seed: int = 0) -> np.ndarray:
    c = pipe.unet.config.block_out_channels[-1]
    d = np.random.default_rng(seed).standard_normal(c).astype(np.float32)
    return d / np.linalg.norm(d)


def _stock(pipe, seeds, guidance=2.0):
    return pipe(
        PROMPT,
        num_images_per_prompt=len(seeds),
        num_inference_steps=STEPS,
        guidance_scale=guidance,
        generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
        output_type="np",
    ).images


# -- steering ------------------------------------------------------------------------------------
def test_alpha_zero_is_the_stock_pipeline(sd1):
    images = steer(
        sd1, PROMPT, _direction(sd1), [0.0], [3, 5], num_inference_steps=STEPS, guidance_scale=2.0
    )
    assert images.shape == (1, 2, 16, 16, 3)
    np.testing.assert_array_equal(images[0], _stock(sd1, [3, 5]))


def test_steering_changes_images_and_scale_multiplies_alpha(sd1):
    kw = {"num_inference_steps": STEPS, "guidance_scale": 2.0}
    d = _direction(sd1)
    images = steer(sd1, PROMPT, d, [0.0, 2.0, -2.0], [0, 1], **kw)
    assert np.abs(images[1] - images[0]).max() > 1e-3
    assert np.abs(images[2] - images[1]).max() > 1e-3
    assert images.min() >= 0.0 and images.max() <= 1.0
    scaled = steer(sd1, PROMPT, d, [1.0], [0, 1], scale=2.0, **kw)
    np.testing.assert_allclose(scaled[0], images[1], atol=1e-6)


def test_seed_batches_do_not_change_the_alpha_zero_image(sd1):
    kw = {"num_inference_steps": STEPS, "guidance_scale": 1.0}
    d = _direction(sd1)
    one = steer(sd1, PROMPT, d, [0.0], [7], **kw)
    batched = steer(sd1, PROMPT, d, [0.0], [2, 7], batch_size=1, **kw)
    np.testing.assert_array_equal(batched[0, 1], one[0, 0])


@pytest.mark.parametrize("guidance", [1.0, 2.0])
def test_hook_adds_exactly_alpha_scale_d_at_chosen_steps(sd1, guidance):
    """A recorder before and one after the steering hook see out and out + coef * d."""
    d = _direction(sd1, 1)
    coef, chosen = 0.7 * 3.0, [1]
    block = sd1.unet.get_submodule("mid_block")
    before, after = [], []
    h1 = block.register_forward_hook(lambda m, i, o: before.append(o.detach().clone()))
    try:
        with Trace(sd1.unet, ["mid_block"], edit_output=steering_edit(d, coef, steps=chosen)):
            h2 = block.register_forward_hook(lambda m, i, o: after.append(o.detach().clone()))
            try:
                _stock(sd1, [0, 1], guidance=guidance)
            finally:
                h2.remove()
    finally:
        h1.remove()
    assert len(before) == len(after) == STEPS
    batch = 4 if guidance > 1 else 2  # both classifier-free-guidance halves are pushed
    for step in range(STEPS):
        diff = (after[step] - before[step]).numpy()
        assert diff.shape[0] == batch
        if step in chosen:
            expected = np.broadcast_to((coef * d)[None, :, None, None], diff.shape)
            np.testing.assert_allclose(diff, expected, rtol=0, atol=1e-5)
        else:
            np.testing.assert_array_equal(diff, 0.0)


def test_full_direction_is_added_per_position(sd1):
    c = sd1.unet.config.block_out_channels[-1]
    out = torch.zeros(2, c, 2, 2)
    d = np.arange(c * 4, dtype=np.float32)
    steered = steering_edit(d, 1.0)("mid_block", out, 0)
    np.testing.assert_array_equal(steered[1].numpy(), d.reshape(c, 2, 2))
    with pytest.raises(ExtractionError):
        steering_edit(np.ones(c + 1), 1.0)("mid_block", out, 0)


def test_trace_reads_and_edits_tuple_outputs_and_counts_calls():
    """A block returning a tuple is read and edited through its first element; the rest of
    the tuple passes through; calls count per layer and reset() starts again."""

    class Block(torch.nn.Module):
        def forward(self, x):
            return x * 2, "extra"

    model = torch.nn.Sequential()
    model.add_module("block", Block())
    seen = []

    def edit(name, hidden, call):
        seen.append((name, call))
        return hidden + 1 if call == 1 else None

    with Trace(model, ["block"], edit_output=edit) as trace:
        first = model(torch.ones(1))
        second = model(torch.ones(1))
        assert first[1] == second[1] == "extra"
        assert first[0].item() == 2.0 and second[0].item() == 3.0
        assert trace.outputs["block"].item() == 3.0 and trace.calls["block"] == 2
        trace.reset()
        model(torch.ones(1))
    assert seen == [("block", 0), ("block", 1), ("block", 0)]
    assert model(torch.ones(1))[0].item() == 2.0  # hooks removed on exit
    with pytest.raises(ExtractionError, match="no submodule 'nope'"):
        Trace(model, ["nope"])


def test_run_until_traced_skips_only_what_follows_the_last_tap():
    """The forward ends once every traced layer has run: the taps' outputs are the full
    forward's, the layers after them never run, and a later plain forward runs them again."""
    ran = []

    class Layer(torch.nn.Module):
        def __init__(self, name, factor):
            super().__init__()
            self.name, self.factor = name, factor

        def forward(self, x):
            ran.append(self.name)
            return x * self.factor

    model = torch.nn.Sequential()
    for name, factor in [("a", 2.0), ("b", 3.0), ("c", 5.0), ("d", 7.0)]:
        model.add_module(name, Layer(name, factor))
    with Trace(model, ["c", "a"]) as trace:
        trace.run_until_traced(model, torch.ones(1))
        assert ran == ["a", "b", "c"]
        assert trace.outputs["a"].item() == 2.0 and trace.outputs["c"].item() == 30.0
        ran.clear()
        assert model(torch.ones(1)).item() == 210.0 and ran == ["a", "b", "c", "d"]


def test_steer_rejects_steps_outside_the_schedule(sd1):
    with pytest.raises(ValueError, match="steps"):
        steer(sd1, PROMPT, _direction(sd1), [1.0], [0], steps=[STEPS], num_inference_steps=STEPS)


# -- projection ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.random((3, 16, 16, 3)).astype(np.float32)


def _project(pipe, imgs, dirs, **kw):
    kw = {"step_indices": [0, 2], "num_inference_steps": STEPS, "prompt": PROMPT} | kw
    return project_images(pipe, imgs, dirs, **kw)


def test_projection_is_deterministic_and_batch_invariant(sd1, images):
    dirs = np.stack([_direction(sd1, 0), _direction(sd1, 1)])
    a = _project(sd1, images, dirs, batch_size=3)
    b = _project(sd1, images, dirs, batch_size=3)
    assert a.shape == (3, 2, 2)
    np.testing.assert_array_equal(a, b)
    single = np.concatenate([_project(sd1, images[i : i + 1], dirs) for i in range(3)])
    np.testing.assert_allclose(a, single, rtol=1e-5, atol=1e-5)
    assert not np.allclose(a[0], a[1])  # different images score differently


def test_projection_equals_a_manual_computation(sd1, images):
    d = _direction(sd1, 2) * 5.0  # not unit: project_images normalises
    scores = _project(sd1, images[:1], d[None], step_indices=[1], seed=4)
    pipe = sd1
    x = torch.from_numpy(images[:1]).permute(0, 3, 1, 2) * 2 - 1
    with torch.inference_mode():
        lat = pipe.vae.encode(x).latent_dist.mean * pipe.vae.config.scaling_factor
        sched = copy.deepcopy(pipe.scheduler)
        sched.set_timesteps(STEPS)
        t = sched.timesteps[1]
        noise = torch.randn(lat.shape, generator=torch.Generator("cpu").manual_seed(4))
        noisy = sched.add_noise(lat, noise, t.reshape(1))
        embeds, _ = pipe.encode_prompt(PROMPT, "cpu", 1, False)
        seen = []
        handle = pipe.unet.mid_block.register_forward_hook(lambda m, i, o: seen.append(o))
        try:
            pipe.unet(noisy, t, encoder_hidden_states=embeds)
        finally:
            handle.remove()
    pooled = seen[0].mean(dim=(2, 3))[0].numpy()
    expected = float(pooled @ (d / np.linalg.norm(d)))
    np.testing.assert_allclose(scores[0, 0, 0], expected, rtol=1e-5, atol=1e-6)


def test_projection_reads_full_maps(sd1, images):
    c = sd1.unet.config.block_out_channels[-1]
    hw = (16 // 2 // 2) ** 2  # 16 px images, VAE factor 2, one UNet downsampling
    pooled_dir = _direction(sd1, 3)
    full_dir = np.repeat(pooled_dir[:, None], hw, axis=1).reshape(-1)  # same d at every position
    pooled = _project(sd1, images, pooled_dir[None])
    full = _project(sd1, images, full_dir[None])
    # <flat(h), repeat(d)> / |repeat(d)| = hw * <mean(h), d> / sqrt(hw)
    np.testing.assert_allclose(full, np.sqrt(hw) * pooled, rtol=1e-4, atol=1e-5)
    with pytest.raises(ExtractionError):
        _project(sd1, images, np.ones((1, c + 3)))


@pytest.mark.parametrize("family", ["sdxl", "lcm", "sd2"])
def test_projection_and_steering_run_on_other_families(tiny_pipes, family, images):
    pipe = tiny_pipes(family)
    d = _direction(pipe)
    scores = _project(pipe, images[:2], d[None])
    assert scores.shape == (2, 2, 1) and np.isfinite(scores).all()
    steered = steer(pipe, PROMPT, d, [0.0, 3.0], [0], num_inference_steps=2, guidance_scale=1.0)
    assert np.abs(steered[1] - steered[0]).max() > 1e-4


def test_auc_known_values():
    assert auc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0
    assert auc([4, 3, 2, 1], [0, 0, 1, 1]) == 0.0
    assert auc([1, 1, 1, 1], [0, 1, 0, 1]) == 0.5  # ties count half
    # pairs (pos, neg): (2,1) win, (2,3) loss, (3,1) win, (3,3) tie -> 2.5 / 4
    assert auc([2, 3, 1, 3], [True, True, False, False]) == pytest.approx(0.625)
    with pytest.raises(ValueError):
        auc([1, 2], [1, 1])


# -- workflow side -------------------------------------------------------------------------------
def test_combined_direction_uses_mean_differences():
    d = {
        "ids": ["man", "woman"],
        "mean_diff": np.array([[[0.0, 1.0], [0.0, 3.0]], [[4.0, 0.0], [2.0, 0.0]]]),
    }
    unit, norm = combined_direction(d, ["woman"], ["man"])
    np.testing.assert_allclose(unit, np.array([3.0, -2.0]) / np.sqrt(13), rtol=1e-6)
    assert norm == pytest.approx(np.sqrt(13))
    with pytest.raises(ConfigError):
        combined_direction(d, ["nurse"])


def test_image_grid_rows_are_alphas_columns_seeds():
    imgs = np.zeros((2, 3, 32, 32, 3), dtype=np.float32)
    imgs[1, 2] = 1.0
    grid = image_grid(imgs)
    assert grid.shape == (2 * 65 - 1, 3 * 65 - 1, 3) and grid.dtype == np.uint8
    assert grid[65:, 130:].min() == 255 and grid[:64, :64].max() == 0


def _config(tmp_path: Path, **analysis):
    from scalex.concepts import load_concepts
    from scalex.config import validate_config

    sheet = write_sheet(tmp_path / "concepts.tsv")
    cfg = workflow_config(REFERENCE if REFERENCE.is_dir() else tmp_path, sheet, analysis=analysis)
    cfg = validate_config(cfg, base=tmp_path)
    return cfg, load_concepts(cfg, base=tmp_path)


def test_config_keys_are_validated(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "labels.tsv").write_text("image\tlabel\n")
    steering = {"s": {"prompt": PROMPT, "positive": ["woman"], "negative": ["doctor"]}}
    steering["s"]["alphas"] = [-1, 0, 1]
    projection = {"p": {"images": "imgs", "labels": "labels.tsv", "positive": ["woman"]}}
    cfg, concepts = _config(tmp_path, steering=steering, projection=projection)
    assert cfg["analysis"]["steering"]["s"]["seeds"] == 8
    assert cfg["analysis"]["steering"]["s"]["unit"] == "mean_diff"
    assert cfg["analysis"]["projection"]["p"]["step_indices"] is None
    check_conditioning_config(cfg, concepts, base=tmp_path)
    cfg0, _ = _config(tmp_path)
    assert cfg0["analysis"]["steering"] == {} and cfg0["analysis"]["projection"] == {}

    bad = copy.deepcopy(steering)
    bad["s"]["positive"] = ["astronaut"]
    cfg, concepts = _config(tmp_path, steering=bad)
    with pytest.raises(ConfigError, match="astronaut"):
        check_conditioning_config(cfg, concepts, base=tmp_path)
    bad = copy.deepcopy(steering)
    bad["s"]["steps"] = [5]
    cfg, concepts = _config(tmp_path, steering=bad)
    with pytest.raises(ConfigError, match="beyond sampling.steps"):
        check_conditioning_config(cfg, concepts, base=tmp_path)
    bad = copy.deepcopy(projection)
    bad["p"]["images"] = "missing"
    cfg, concepts = _config(tmp_path, projection=bad)
    with pytest.raises(ConfigError, match="images"):
        check_conditioning_config(cfg, concepts, base=tmp_path)
    for broken in ({"prompt": PROMPT, "positive": ["woman"]}, {**steering["s"], "alphas": "x"}):
        with pytest.raises(ConfigError, match="analysis.steering"):
            _config(tmp_path, steering={"s": broken})


# -- the reference model ---------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(not (REFERENCE / "unet").is_dir(), reason="reference model not trained")
def test_reference_model_steering_and_projection():
    from scalex.models import load_pipeline
    from scalex_refworld.conditioning_check import (
        gender_direction,
        projection_auc,
        steering_curve,
    )

    pipe = load_pipeline(str(REFERENCE), device="cpu")
    direction, scale = gender_direction(pipe, range(8), steps=10)
    curve, _ = steering_curve(pipe, direction, scale, alphas=[-3.0, 0.0, 3.0], seeds=range(32))
    frac = [row["woman_fraction"] for row in curve]
    assert frac[-1] > frac[0], curve
    aucs = projection_auc(pipe, direction, step_indices=[4, 7], copies=1)
    assert max(row["auc"] for row in aucs) > 0.75, aucs


# -- the rules -----------------------------------------------------------------------------------
def _workflow(tmp_path: Path, model: Path, make_workflow_config) -> Path:
    """A Snakefile including every rule file plus rules/conditioning.smk, on a tiny model."""
    import yaml

    (tmp_path / "imgs").mkdir()
    rng = np.random.default_rng(0)
    from PIL import Image

    for i in range(4):
        Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8)).save(
            tmp_path / "imgs" / f"i{i}.png"
        )
    (tmp_path / "labels.tsv").write_text("image\tlabel\ni0.png\t1\ni1.png\t1\ni2.png\t0\n")
    config, _ = make_workflow_config(tmp_path, model)
    cfg = yaml.safe_load(config.read_text())
    cfg["analysis"] = {
        "steering": {
            "doc": {
                "prompt": PROMPT,
                "positive": ["woman"],
                "negative": ["engineer"],
                "alphas": [-1, 0, 1],
                "seeds": 2,
            }
        },
        "projection": {
            "gender": {
                "images": str(tmp_path / "imgs"),
                "labels": str(tmp_path / "labels.tsv"),
                "positive": ["woman"],
                "step_indices": [1],
            }
        },
        "descriptors": {"enabled": False},
    }
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    rules = [
        "common",
        "prompts",
        "extract",
        "directions",
        "similarity",
        "analysis",
        "findings",
        "conditioning",
    ]
    lines = [f'include: "{ROOT}/rules/{r}.smk"' for r in rules]
    lines += ["", "rule all:", "    input:", "        all_outputs(),"]
    (tmp_path / "Snakefile").write_text("\n".join(lines) + "\n")
    return config


def _snakemake(tmp_path: Path, config: Path, *args: str):
    import os
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("snakemake")
    return subprocess.run(
        [str(exe), "-s", "Snakefile", "--configfile", str(config), "--cores", "1", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
        timeout=900,
    )


def test_rules_plan_steering_and_projection(tmp_path, tiny_models, make_workflow_config):
    config = _workflow(tmp_path, tiny_models["sd1"], make_workflow_config)
    proc = _snakemake(tmp_path, config, "-n", "--quiet", "rules")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "steering" in proc.stdout and "projection" in proc.stdout


@pytest.mark.slow
def test_rules_run_steering_and_projection(tmp_path, tiny_models, make_workflow_config):
    import pandas as pd

    config = _workflow(tmp_path, tiny_models["sd1"], make_workflow_config)
    proc = _snakemake(tmp_path, config, "--resources", "gpu=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    tree = next((tmp_path / "results").iterdir()) / "analysis"
    images = np.load(tree / "steering/doc/images.npz")["images"]
    assert images.shape == (3, 2, 16, 16, 3)
    assert (tree / "steering/doc/grid.png").is_file()
    scores = pd.read_csv(tree / "projection/gender/scores.tsv", sep="\t")
    assert len(scores) == 4 and scores["step_index"].eq(1).all()
    curve = pd.read_csv(tree / "projection/gender/auc.tsv", sep="\t")
    assert list(curve["n_positive"]) == [2] and list(curve["n_negative"]) == [1]
