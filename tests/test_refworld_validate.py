"""The ground-truth check itself: it must pass on the truth and fail on wrong results."""

import pandas as pd
import pytest
from scalex_refworld import validate as V
from scalex_refworld import world as W

PLANTED = W.world_table("stereotyped")
WORLD = W.load_world("stereotyped")
PROFESSIONS = WORLD.professions


def _inputs(tmp_path, gender_score, cluster_of, descriptor_of):
    table = WORLD.rates
    bias = pd.DataFrame(
        {
            "concept": list(PROFESSIONS),
            "step": "all",
            "score": [gender_score(p, table[p]["p_woman"]) for p in PROFESSIONS],
            "ci_low": 0.0,
            "ci_high": 0.0,
        }
    )
    clusters = pd.DataFrame(
        {
            "concept": list(PROFESSIONS),
            "set": "professions",
            "cluster": [cluster_of(p) for p in PROFESSIONS],
        }
    )
    top = pd.DataFrame(
        [
            {"concept": p, "axis": axis, "descriptor": descriptor_of(p, axis, table[p])}
            for p in PROFESSIONS
            for axis in ("age", "wealth")
        ]
    )
    rates = pd.DataFrame(
        [
            {
                "profession": p,
                "axis": axis,
                "value": value,
                "planted": table[p][col],
                "realised": table[p][col] + 0.01,
                "gap": 0.01,
                "guidance_scale": 3.0,
            }
            for p in PROFESSIONS
            for axis, value, col in (
                ("gender", "woman", "p_woman"),
                ("age", "old", "p_old"),
                ("wealth", "rich", "p_rich"),
            )
        ]
    )
    paths = {}
    for name, frame in (("bias", bias), ("clusters", clusters), ("top", top), ("rates", rates)):
        paths[name] = tmp_path / f"{name}.tsv"
        frame.to_csv(paths[name], sep="\t", index=False)
    return paths


def _truthful_descriptor(_p, axis, rates):
    column, positive, negative = V.AXES[axis]
    return positive if rates[column] > 0.5 else negative


def _truthful_inputs(tmp_path):
    """Workflow outputs that say exactly what the stereotyped world planted."""
    families = sorted(WORLD.families)
    return _inputs(
        tmp_path,
        gender_score=lambda _p, pw: 2 * pw - 1,
        cluster_of=lambda prof: families.index(WORLD.family(prof)) + 1,
        descriptor_of=_truthful_descriptor,
    )


def test_truth_meets_every_target(tmp_path):
    p = _truthful_inputs(tmp_path)
    summary = V.validate(
        p["bias"], p["clusters"], p["top"], PLANTED, p["rates"], tmp_path / "v", p["clusters"]
    )
    values = summary.set_index("metric")["value"]
    assert values["ari_families_raw"] == pytest.approx(1.0)
    assert values["spearman_planted"] == pytest.approx(1.0)
    assert values["spearman_realised"] == pytest.approx(1.0)
    assert values["ari_families"] == pytest.approx(1.0)
    assert values["top1"] == pytest.approx(1.0)
    assert summary["met"].dropna().all()
    for name in ("gender_defaults", "clustering", "descriptors", "summary"):
        assert (tmp_path / "v" / f"{name}.tsv").is_file()


def test_wrong_results_miss_targets(tmp_path):
    p = _inputs(
        tmp_path,
        gender_score=lambda _prof, pw: 1 - 2 * pw,
        cluster_of=lambda prof: PROFESSIONS.index(prof) % 2 + 1,
        descriptor_of=lambda prof, axis, r: (
            V.AXES[axis][2]
            if _truthful_descriptor(prof, axis, r) == V.AXES[axis][1]
            else V.AXES[axis][1]
        ),
    )
    summary = V.validate(p["bias"], p["clusters"], p["top"], PLANTED, p["rates"], tmp_path / "v")
    values = summary.set_index("metric")["value"]
    assert values["spearman_planted"] == pytest.approx(-1.0)
    assert values["top1"] == pytest.approx(0.0)
    assert values["ari_families"] < 0.8
    assert not summary["met"].dropna().any()


def test_scrambled_world_judges_against_its_own_families(tmp_path):
    """Clusters by semantic category pass on the stereotyped world and fail on the scrambled."""
    stereo = W.load_world("stereotyped")
    semantic = sorted(stereo.families)
    p = _inputs(
        tmp_path,
        gender_score=lambda _p, pw: 2 * pw - 1,
        cluster_of=lambda prof: semantic.index(stereo.family(prof)) + 1,
        descriptor_of=_truthful_descriptor,
    )
    ok = V.validate(p["bias"], p["clusters"], p["top"], PLANTED, p["rates"], tmp_path / "a")
    scrambled = W.world_table("scrambled")
    bad = V.validate(p["bias"], p["clusters"], p["top"], scrambled, p["rates"], tmp_path / "b")
    assert ok.set_index("metric")["value"]["ari_families"] == pytest.approx(1.0)
    assert bad.set_index("metric")["value"]["ari_families"] < 0.2


def test_rates_of_other_weights_are_refused(tmp_path):
    import json

    (tmp_path / "summary.json").write_text(json.dumps({"model_digest": "sha256:aaa"}))
    V.check_evaluation(tmp_path, "sha256:aaa")
    with pytest.raises(SystemExit, match="measured on model sha256:aaa"):
        V.check_evaluation(tmp_path, "sha256:bbb")


def test_world_check_needs_validated_readouts_and_a_failing_text_control():
    from scalex_refworld.validate_worlds import GENDER_MARGIN, VALIDATED, check, markdown

    rows = []
    for world in ("stereotyped", "opposed"):
        for readout in ("content", "prompt", "text"):
            for metric, target in V.TARGETS.items():
                good = readout in VALIDATED.get(metric, ("content", "prompt"))
                rows.append(
                    {"world": world, "readout": readout, "metric": metric,
                     "value": 1.0 if good else 0.0, "target": target}
                )  # fmt: skip
    table = pd.DataFrame(rows)
    assert check(table) == []
    assert "| opposed | prompt |" in markdown(table)
    worse = table.copy()
    hit = (worse["world"] == "opposed") & (worse["readout"] == "content")
    worse.loc[hit & (worse["metric"] == "top1"), "value"] = 0.5
    assert check(worse) == ["opposed: the content readout misses top1 (0.500 < 0.9)"]
    lucky = table.copy()
    lucky.loc[(lucky["world"] == "opposed") & (lucky["readout"] == "text"), "value"] = 1.0
    problems = check(lucky)
    assert "opposed: the text-encoder control meets every target" in problems
    assert any("not 0.3 above the text control" in p for p in problems)
    close = table.copy()
    gender = close["metric"] == "spearman_realised"
    close.loc[gender & (close["readout"] == "text"), "value"] = 1.0 - GENDER_MARGIN / 2
    assert [p.split(":")[0] for p in check(close)] == ["opposed", "stereotyped"]


def test_gender_descriptor_metric(tmp_path):
    """The profession's own "female X" vs "male X" alignment, ranked against realised rates."""
    p = _truthful_inputs(tmp_path)
    rows = []
    for prof in PROFESSIONS:
        pw = WORLD.rates[prof]["p_woman"]
        rows += [
            {"concept": prof, "axis": "gender", "descriptor": "female", "alignment": 0.5 + pw},
            {"concept": prof, "axis": "gender", "descriptor": "male", "alignment": 1.5 - pw},
        ]
    full = tmp_path / "descriptors_full.tsv"
    pd.DataFrame(rows).to_csv(full, sep="\t", index=False)
    args = (p["bias"], p["clusters"], p["top"], PLANTED, p["rates"], tmp_path / "v")
    summary = V.validate(*args, descriptors_tsv=full).set_index("metric")
    assert summary.loc["spearman_realised_descriptor", "value"] == pytest.approx(1.0)
    flipped = pd.DataFrame(rows)
    flipped["descriptor"] = flipped["descriptor"].map({"female": "male", "male": "female"})
    flipped.to_csv(full, sep="\t", index=False)
    summary = V.validate(*args, descriptors_tsv=full).set_index("metric")
    assert summary.loc["spearman_realised_descriptor", "value"] == pytest.approx(-1.0)


def _sample_tables(n_seeds=10, flip_within=False):
    """Sample votes and image readings for the stereotyped world's professions: every vote is
    its image's reading, or (``flip_within``) the votes are the readings shuffled among the
    profession's own samples, which keeps every share and loses the per-sample information."""
    import numpy as np

    rng = np.random.default_rng(0)
    votes, images = [], []
    for p in PROFESSIONS:
        women = rng.random(n_seeds) < WORLD.rates[p]["p_woman"]
        shown = np.where(women, "woman", "man")
        voted = rng.permutation(shown) if flip_within else shown
        for s in range(n_seeds):
            prompt = f"a photo of a {p}"
            images.append(
                {"concept": p, "prompt": prompt, "seed": s, "profession": p,
                 "gender": shown[s], "age": "old", "wealth": "rich"}
            )  # fmt: skip
            votes.append(
                {"concept": p, "axis": "gender", "prompt": prompt, "seed": s,
                 "vote": "female" if voted[s] == "woman" else "male"}
            )  # fmt: skip
    return pd.DataFrame(votes), pd.DataFrame(images)


def test_sample_agreement_is_one_when_every_vote_reads_its_own_image():
    from scalex_refworld.sample_check import agreement

    votes, images = _sample_tables()
    summary, per_concept = agreement(votes, images)
    row = summary.set_index("axis").loc["gender"]
    assert row["agreement"] == 1.0 and row["share_mae"] == 0.0
    assert row["samples"] == 10 * len(PROFESSIONS) and row["chance"] < 1.0
    assert set(per_concept["concept"]) == set(PROFESSIONS)


def test_sample_agreement_sees_votes_that_know_only_the_share():
    """Right shares, wrong samples: the MAE is zero but agreement falls to its chance level."""
    from scalex_refworld.sample_check import agreement

    votes, images = _sample_tables(n_seeds=40, flip_within=True)
    row = agreement(votes, images)[0].set_index("axis").loc["gender"]
    assert row["share_mae"] == 0.0
    assert row["agreement"] < 0.95 and abs(row["agreement"] - row["chance"]) < 0.1


def test_sample_agreement_refuses_votes_without_an_image():
    from scalex_refworld.sample_check import agreement

    votes, images = _sample_tables()
    with pytest.raises(ValueError, match="not the voted ones"):
        agreement(votes, images[images["seed"] != 3])


def test_validate_reports_the_per_sample_agreement_with_its_target(tmp_path):
    paths = _truthful_inputs(tmp_path)

    def summary_of(out: str) -> pd.DataFrame:
        return V.validate(
            paths["bias"], paths["clusters"], paths["top"], PLANTED, paths["rates"],
            tmp_path / out, sample_votes_tsv=tmp_path / "sv.tsv",
            sample_images_tsv=tmp_path / "si.tsv",
        ).set_index("metric")  # fmt: skip

    votes, images = _sample_tables()
    votes.to_csv(tmp_path / "sv.tsv", sep="\t", index=False)
    images.to_csv(tmp_path / "si.tsv", sep="\t", index=False)
    summary = summary_of("out")
    assert summary.loc["agreement_gender", "value"] == 1.0
    assert summary.loc["agreement_gender", "target"] == 0.95
    assert bool(summary.loc["agreement_gender", "met"])
    assert (tmp_path / "out" / "samples.tsv").is_file()
    shuffled, _ = _sample_tables(n_seeds=10, flip_within=True)
    shuffled.to_csv(tmp_path / "sv.tsv", sep="\t", index=False)
    worse = summary_of("out2")
    assert not bool(worse.loc["agreement_gender", "met"])
