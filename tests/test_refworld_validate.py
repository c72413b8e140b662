"""The ground-truth check itself: it must pass on the truth and fail on wrong results."""

from pathlib import Path

import pandas as pd
import pytest
from scalex_refworld import validate as V
from scalex_refworld import world as W

PLANTED = Path(__file__).resolve().parents[1] / "resources" / "reference" / "planted.tsv"


def _inputs(tmp_path, gender_score, cluster_of, descriptor_of):
    table = W.load_table(PLANTED)
    bias = pd.DataFrame(
        {
            "concept": list(W.PROFESSIONS),
            "step": "all",
            "score": [gender_score(p, table[p]["p_woman"]) for p in W.PROFESSIONS],
            "ci_low": 0.0,
            "ci_high": 0.0,
        }
    )
    clusters = pd.DataFrame(
        {
            "concept": list(W.PROFESSIONS),
            "set": "professions",
            "cluster": [cluster_of(p) for p in W.PROFESSIONS],
        }
    )
    top = pd.DataFrame(
        [
            {"concept": p, "axis": axis, "descriptor": descriptor_of(p, axis, table[p])}
            for p in W.PROFESSIONS
            for axis in ("age", "wealth")
        ]
    )
    rates = pd.DataFrame(
        [
            {
                "profession": p,
                "axis": "gender",
                "value": "woman",
                "planted": table[p]["p_woman"],
                "realised": table[p]["p_woman"] + 0.01,
                "gap": 0.01,
                "guidance_scale": 3.0,
            }
            for p in W.PROFESSIONS
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


def test_truth_meets_every_target(tmp_path):
    families = sorted(W.FAMILIES)
    p = _inputs(
        tmp_path,
        gender_score=lambda _p, pw: 2 * pw - 1,
        cluster_of=lambda prof: families.index(W.FAMILY_OF[prof]) + 1,
        descriptor_of=_truthful_descriptor,
    )
    summary = V.validate(p["bias"], p["clusters"], p["top"], PLANTED, p["rates"], tmp_path / "v")
    values = summary.set_index("metric")["value"]
    assert values["spearman_planted"] == pytest.approx(1.0)
    assert values["spearman_realised"] == pytest.approx(1.0)
    assert values["ari_families"] == pytest.approx(1.0)
    assert values["top1"] == pytest.approx(1.0)
    assert summary["met"].all()
    for name in ("gender_defaults", "clustering", "descriptors", "summary"):
        assert (tmp_path / "v" / f"{name}.tsv").is_file()


def test_wrong_results_miss_targets(tmp_path):
    p = _inputs(
        tmp_path,
        gender_score=lambda _prof, pw: 1 - 2 * pw,
        cluster_of=lambda prof: W.PROFESSIONS.index(prof) % 2 + 1,
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
    assert not summary["met"].any()
