"""Defaults analysis: which side of an attribute pair a neutral concept leans to.

For a target concept t and an attribute pair (a, b), e.g. (woman, man), the score is
``cos(d_t, d_a) - cos(d_t, d_b)``: positive means the model's default for "a photo of a t" sits
closer to a than to b in H-space. The projection ``d_t . unit(d_a - d_b)`` is reported too; with
unit directions it equals ``score / |d_a - d_b|``, i.e. the same ranking on a scale that does not
depend on how similar a and b are to each other, which makes values comparable across pairs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from scalex.analysis.stats import (
    DEFAULT_MAX_BYTES,
    PairedBootstrap,
    _check_compatible,
    as_concepts,
    bootstrap_dots,
    cosine_from_dots,
    percentile_ci,
    step_labels,
    template_groups,
)

BIAS_COLUMNS = [
    "concept",
    "step",
    "score",
    "ci_low",
    "ci_high",
    "projection",
    "projection_ci_low",
    "projection_ci_high",
    "n_prompts",
    "n_seeds",
    "resampled",
]


def default_bias(
    diffs: Mapping[str, np.ndarray],
    pair: tuple[str, str],
    targets: Sequence[str] | None = None,
    templates: Mapping[str, np.ndarray] | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    step_names: Sequence[int] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> pd.DataFrame:
    """Bias score and projection of each target along ``pair = (a, b)``, per step and pooled.

    ``diffs`` maps concept names (targets *and* the two attributes) to ``(P, S, T, D)`` arrays;
    ``templates`` maps names to per-prompt template indices (missing: one template). ``targets``
    defaults to every concept except the pair. CIs are percentile intervals over ``n_boot``
    replicates that resample seeds and, with at least five templates, templates (both shared by
    all concepts, attributes included); the ``resampled`` column says which.
    ``step_names`` labels the kept steps (e.g. scheduler timesteps); default their index.

    Returns one row per (concept, step) with ``step`` an int or ``"all"`` (pooled over steps),
    concepts ranked by pooled score, highest (most ``a``-leaning) first.
    """
    a, b = pair
    if a == b:
        raise ValueError(f"the attribute pair needs two different concepts; got {pair}")
    concepts = as_concepts(diffs, templates)
    for name in pair:
        if name not in concepts:
            raise KeyError(f"no diffs for attribute concept {name!r}")
    if targets is None:
        targets = [n for n in concepts if n not in pair]
    targets = list(dict.fromkeys(targets))
    missing = [n for n in targets if n not in concepts]
    if missing:
        raise KeyError(f"no diffs for target concept(s) {missing}")
    if not targets:
        return pd.DataFrame(columns=BIAS_COLUMNS)
    n_seeds, n_steps, _ = _check_compatible({n: concepts[n] for n in [*targets, a, b]})
    labels = step_labels(n_steps, step_names)
    boot = PairedBootstrap(n_seeds=n_seeds, n_boot=n_boot, seed=seed)

    # One pass over the features for all concepts: the attributes' replicate sums are computed
    # once, and bootstrap_dots sizes its feature chunks to stay within max_bytes.
    pairs = [(t, x) for t in targets for x in (a, b)] + [(a, b)]
    dots = bootstrap_dots(boot, concepts, pairs, max_bytes=max_bytes)
    cos_ab = cosine_from_dots(dots, a, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        inv_gap = 1.0 / np.sqrt(np.maximum(2.0 - 2.0 * cos_ab, 0.0))
    rows = []
    pooled = {}
    for t in targets:
        score = cosine_from_dots(dots, t, a) - cosine_from_dots(dots, t, b)
        proj = score * inv_gap
        s_lo, s_hi = percentile_ci(score[1:], level)
        p_lo, p_hi = percentile_ci(proj[1:], level)
        pooled[t] = score[0, -1]
        for j, label in enumerate(labels):
            rows.append(
                {
                    "concept": t,
                    "step": label,
                    "score": float(score[0, j]),
                    "ci_low": float(s_lo[j]),
                    "ci_high": float(s_hi[j]),
                    "projection": float(proj[0, j]),
                    "projection_ci_low": float(p_lo[j]),
                    "projection_ci_high": float(p_hi[j]),
                    "n_prompts": concepts[t].n_prompts,
                    "n_seeds": n_seeds,
                    "resampled": PairedBootstrap.resampled(
                        int(template_groups(concepts[t].templates, concepts[t].n_prompts).max()) + 1
                    ),
                }
            )
    order = sorted(targets, key=lambda n: (-np.nan_to_num(pooled[n], nan=-np.inf), n))
    step_order = {lab: i for i, lab in enumerate(["all", *labels[:-1]])}
    df = pd.DataFrame(rows, columns=BIAS_COLUMNS)
    df["_c"] = df["concept"].map({n: i for i, n in enumerate(order)})
    df["_s"] = df["step"].map(step_order)
    df = df.sort_values(["_c", "_s"]).drop(columns=["_c", "_s"]).reset_index(drop=True)
    df.attrs.update({"pair": list(pair), "level": level, "n_boot": n_boot, "seed": seed})
    return df


def normalise_name(name: object) -> str:
    """Match names case-insensitively and treat space, '-' and '_' alike."""
    return " ".join(str(name).strip().lower().replace("-", " ").replace("_", " ").split())


def _normalised(series: pd.Series, what: str) -> pd.Series:
    keys = [normalise_name(k) for k in series.index]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ValueError(f"{what} has names that coincide ignoring case/separators: {dup}")
    return pd.Series(series.to_numpy(dtype=float), index=keys)


def _rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (xc * yc).sum(-1) / np.sqrt((xc**2).sum(-1) * (yc**2).sum(-1))


def correlate_with_reference(
    scores: pd.Series,
    reference: pd.Series,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Pearson r and Spearman rho between scores and an external reference, with bootstrap CIs.

    Uses the concepts present in both series with a non-missing value (names matched ignoring
    case and space/'-'/'_'), so an occupation table with extra or missing rows can be passed as
    is. CIs resample concepts with replacement; degenerate replicates (constant values) are
    dropped. Returns ``n``, ``pearson_r``, ``pearson_ci_low/high``, ``spearman_rho``,
    ``spearman_ci_low/high``, ``level`` and the matched ``concepts`` (names as in ``scores``).
    """
    s = _normalised(scores, "scores")
    r = _normalised(reference, "reference")
    common = [k for k in s.index if k in r.index and np.isfinite(s[k]) and np.isfinite(r[k])]
    display = dict(zip(s.index, scores.index, strict=True))
    out: dict = {"n": len(common), "level": level, "concepts": [display[k] for k in common]}
    nan_keys = ["pearson_r", "pearson_ci_low", "pearson_ci_high"]
    nan_keys += ["spearman_rho", "spearman_ci_low", "spearman_ci_high"]
    if len(common) < 3:
        out.update(dict.fromkeys(nan_keys, float("nan")))
        return out
    x = s[common].to_numpy()
    y = r[common].to_numpy()
    out["pearson_r"] = float(_rowwise_pearson(x, y))
    out["spearman_rho"] = float(_rowwise_pearson(sps.rankdata(x), sps.rankdata(y)))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(common), size=(n_boot, len(common)))
    xb, yb = x[idx], y[idx]
    pear = _rowwise_pearson(xb, yb)
    spear = _rowwise_pearson(sps.rankdata(xb, axis=1), sps.rankdata(yb, axis=1))
    out["pearson_ci_low"], out["pearson_ci_high"] = map(float, percentile_ci(pear, level))
    out["spearman_ci_low"], out["spearman_ci_high"] = map(float, percentile_ci(spear, level))
    return out
