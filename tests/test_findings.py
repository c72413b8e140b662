"""Findings: the run's headline table of estimated identity shares, its text-control flag, the
reference comparison, and the ready-made Stable Diffusion config producing it end to end."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT
from scalex.analysis.findings import (
    compare_with_references,
    findings_table,
    validation_label,
)
from scalex.readouts import findings_readout


def _votes(shares: dict[tuple[str, str], dict[str, float]]) -> pd.DataFrame:
    rows = []
    for (concept, axis), values in shares.items():
        for value, share in values.items():
            rows.append(
                {
                    "concept": concept,
                    "axis": axis,
                    "descriptor": value,
                    "share": share,
                    "ci_low": max(0.0, share - 0.1),
                    "ci_high": min(1.0, share + 0.1),
                    "samples": 32,
                    "resampled": "seeds",
                }
            )
    return pd.DataFrame(rows)


def test_text_agrees_only_where_the_text_encoder_names_the_same_majority():
    model = _votes(
        {
            ("nurse", "gender"): {"female": 0.9, "male": 0.1},
            ("doctor", "gender"): {"female": 0.2, "male": 0.8},
            ("chef", "gender"): {"female": 0.5, "male": 0.5},
        }
    )
    text = _votes(
        {
            ("nurse", "gender"): {"female": 1.0, "male": 0.0},  # same majority
            ("doctor", "gender"): {"female": 1.0, "male": 0.0},  # opposite
            ("chef", "gender"): {"female": 1.0, "male": 0.0},  # the model has no majority
        }
    )
    table = findings_table(model, "content", True, text)
    flag = table.groupby("concept")["text_agrees"].first()
    assert flag.to_dict() == {"nurse": True, "doctor": False, "chef": False}
    nurse = table[(table["concept"] == "nurse") & (table["value"] == "female")].iloc[0]
    assert nurse["share"] == 0.9 and nurse["text_share"] == 1.0
    assert nurse["readout"] == "content" and bool(nurse["method_validated"])
    # validated takes both facts: the method, and this model's check of the axis
    assert not bool(nurse["validated"]) and nurse["check"] == "not checked"
    check = pd.DataFrame(
        [{"axis": "gender", "status": "passed", "agreement": 0.96, "determined": 50}]
    )
    checked = findings_table(model, "content", True, text, check)
    assert checked["validated"].all() and (checked["check_samples"] == 50).all()
    assert "check passed on this model (agreement 0.96, n 50)" in validation_label(checked)
    failed = findings_table(model, "content", True, text, check.assign(status="failed"))
    assert not failed["validated"].any() and "check FAILED" in validation_label(failed)
    unvalidated = findings_table(model, "content", False, text, check)
    assert not unvalidated["validated"].any()
    assert "method NOT validated" in validation_label(unvalidated)
    alone = findings_table(model, "prompt", False, None)
    assert alone["text_share"].isna().all() and not alone["text_agrees"].any()
    assert not alone["validated"].any()


def test_findings_readout_is_the_validated_one_when_stored():
    assert findings_readout(["content", "prompt", "text"]) == ("content", True)
    assert findings_readout(["prompt", "text"]) == ("prompt", False)
    # validated on UNet denoisers only: a transformer's (or an unknown) content readout is not
    assert findings_readout(["content", "text"], "transformer") == ("content", False)
    assert findings_readout(["content", "text"], "unknown") == ("content", False)
    with pytest.raises(ValueError, match="H-space readout"):
        findings_readout(["text"])


def test_references_are_compared_with_shares_and_the_published_score_beside():
    concepts = [f"job{i}" for i in range(8)]
    share = np.linspace(0.1, 0.9, 8)
    findings = findings_table(
        _votes(
            {
                (c, "gender"): {"female": s, "male": 1 - s}
                for c, s in zip(concepts, share, strict=True)
            }
        ),
        "content",
        True,
    )
    # percent women rising with the share; the published score reversed (a score can disagree)
    ref = pd.DataFrame({"job": [c.upper() for c in concepts], "pct": share * 100 + 5})
    published = pd.Series(-share, index=concepts)
    spec = {"file": "x", "key": "job", "column": "pct", "axis": "gender", "value": "female"}
    out = compare_with_references(
        findings, {"bls": {**spec, "scale": 100, "published": "gender"}}, {"bls": ref},
        {"bls": published}, n_boot=200,
    )  # fmt: skip
    row = out.iloc[0]
    assert row["n"] == 8 and row["spearman_share"] == pytest.approx(1.0)
    assert row["mae_share"] == pytest.approx(0.05)
    assert row["spearman_published"] == pytest.approx(-1.0)
    male = compare_with_references(
        findings, {"img": {**spec, "value": "male", "scale": 1}}, {"img": ref.assign(pct=share)}
    ).iloc[0]
    assert male["spearman_share"] == pytest.approx(-1.0) and np.isnan(male["spearman_published"])


@pytest.mark.slow
def test_the_stable_diffusion_config_yields_gender_shares_for_every_occupation(
    tmp_path, tiny_models
):
    """config/models/common-sd.yaml, as shipped, with a tiny random SD 1.x model in place of
    the model file: the findings table has a gender share for each of the 37 occupations, and
    the labour-statistics and SD 1.4 comparisons use the shares, the cosine score beside them."""
    for name in ("config", "resources"):
        os.symlink(ROOT / name, tmp_path / name)
    model = {
        "model": {"id": str(tiny_models["sd1"]), "family": "sd1"},
        "sampling": {"steps": 2, "seeds": [0, 1], "device": "cpu", "batch_size": 64},
        "extraction": {"buckets": 1, "progress": False},
        "check": {"enabled": False},  # no CLIP checkpoint here: the "not checked" label
    }
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(model))
    from scalex.config import load_configs, results_tree

    cfg = load_configs(
        [ROOT / "config" / "models" / "common-sd.yaml", tmp_path / "model.yaml"], base=tmp_path
    )
    tree = results_tree(cfg)
    cmd = [
        sys.executable, "-m", "snakemake", f"{tree}/findings/references.tsv", "--cores", "1",
        "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
        "--configfile", "config/models/common-sd.yaml", "model.yaml",
    ]  # fmt: skip
    env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    findings = pd.read_csv(tmp_path / tree / "findings" / "findings.tsv", sep="\t")
    occupations = pd.read_csv(ROOT / "resources/reference/winobias_bls_sd14.csv")["profession"]
    gender = findings[findings["axis"] == "gender"]
    from scalex.analysis.defaults import normalise_name

    names = {normalise_name(c) for c in gender["concept"]}
    assert names == {normalise_name(o) for o in occupations} and len(occupations) == 37
    assert set(gender["value"]) == {"female", "male"}
    per_concept = gender.groupby("concept")["share"].sum()
    assert np.allclose(per_concept, 1.0)
    assert (gender["samples"] == 3 * 2).all()  # 3 templates x 2 seeds
    assert (gender["readout"] == "content").all() and gender["method_validated"].all()
    # a real-model config without `check:`: the method is validated, this model is not checked
    assert (gender["check"] == "not checked").all() and not gender["validated"].any()
    assert gender["text_share"].notna().all()
    assert set(findings["axis"]) == {"gender", "age"}
    refs = pd.read_csv(tmp_path / tree / "findings" / "references.tsv", sep="\t")
    assert set(refs["reference"]) == {"bls-women", "sd14-images-male"}
    reference = pd.read_csv(ROOT / "resources/reference/winobias_bls_sd14.csv")
    n = refs.set_index("reference")["n"]  # occupations with a figure (BLS lacks two)
    assert n["bls-women"] == reference["bls_percent_women"].notna().sum() == 35
    assert n["sd14-images-male"] == reference["sd14_clip_male_fraction"].notna().sum() == 37
    assert refs["spearman_share"].notna().all() and refs["spearman_published"].notna().all()
    for axis in ("gender", "age"):
        assert (tmp_path / tree / "findings" / f"{axis}.png").stat().st_size > 1000
