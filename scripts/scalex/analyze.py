"""The work of the analysis rules: defaults (bias), descriptors, cluster figures, discovery.

These functions read the workflow's HDF5 files, call the numerical analyses of
:mod:`scalex.analysis` and write tables (TSV) and figures. The bootstrap analyses need every
(prompt, seed) difference, not just directions, so they read the activation shards.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalex.directions import paired_differences
from scalex.errors import ConfigError
from scalex.jobs import check_same_noise, read_directions
from scalex.store import (
    ACTIVATIONS,
    atomic_text,
    open_checked,
    read_activations,
    read_strings,
    readout_steps,
)

log = logging.getLogger("scalex")


def write_tsv(frame: pd.DataFrame, path: str | Path) -> None:
    """TSV with six significant digits, written atomically."""
    atomic_text(path, frame.to_csv(sep="\t", index=False, float_format="%.6g"))


def locate_concepts(shards: Sequence[str | Path], concept_ids: Sequence[str]) -> dict[str, str]:
    """Which of ``shards`` holds each concept; a concept in none of them is an error."""
    where: dict[str, str] = {}
    for shard in shards:
        with open_checked(shard, ACTIVATIONS) as f:
            for cid in f["concepts"]:
                where.setdefault(cid, str(shard))
    missing = sorted(set(concept_ids) - set(where))
    if missing:
        raise ConfigError(f"no activation shard holds the concepts {missing}")
    return {cid: where[cid] for cid in concept_ids}


def load_concept_diffs(
    shards: Mapping[str, str | Path],
    baseline: str | Path,
    settings_hash: str,
    tap: str,
    kind: str,
    seeds: Sequence[int] | None = None,
    readout: str = "prompt",
) -> dict[str, Any]:
    """Paired differences (P, S, T, D) and template indices of concepts, by id.

    ``shards`` maps each concept id to the shard that holds it (see :func:`locate_concepts`).
    ``seeds`` keeps only those seeds (default all). Also returns the step labels (timesteps).
    """
    with open_checked(baseline, ACTIVATIONS, settings_hash) as fb:
        base = read_activations(fb, "baseline", tap, kind, readout)
        base_noise = fb.attrs.get("noise_source")
        all_seeds = [int(s) for s in fb.attrs["seeds"]]
        timesteps = readout_steps(fb, readout)[1]
    pick = slice(None) if seeds is None else [all_seeds.index(int(s)) for s in seeds]
    base = base[:, pick]
    diffs, templates, prompts = {}, {}, {}
    by_shard: dict[str, list[str]] = {}
    for cid, shard in shards.items():
        by_shard.setdefault(str(shard), []).append(cid)
    for shard, ids in by_shard.items():
        with open_checked(shard, ACTIVATIONS, settings_hash) as f:
            check_same_noise(f, base_noise, baseline)
            for cid in ids:
                if f"concepts/{cid}" not in f:
                    raise ConfigError(f"{shard}: holds no concept {cid!r}")
                acts = read_activations(f, cid, tap, kind, readout)[:, pick]
                diffs[cid] = paired_differences(acts, base)
                templates[cid] = f[f"concepts/{cid}/template_index"][()]
                prompts[cid] = read_strings(f[f"concepts/{cid}/prompts"])
    return {"diffs": diffs, "templates": templates, "prompts": prompts, "timesteps": timesteps}


# -- defaults ------------------------------------------------------------------------------------
def run_defaults(
    data: dict[str, Any],
    targets: Sequence[str],
    pair: tuple[str, str],
    out_dir: str | Path,
    boot: Mapping[str, Any],
    reference: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Bias table, bar chart, step profile and, with a reference table, its correlation."""
    from scalex.analysis import figures
    from scalex.analysis.defaults import correlate_with_reference, default_bias

    out = Path(out_dir)
    table = default_bias(
        data["diffs"],
        pair,
        targets=list(targets),
        templates=data["templates"],
        n_boot=boot["bootstrap"],
        level=boot["confidence"],
        seed=boot["seed"],
        step_names=data["timesteps"],
    )
    write_tsv(table, out / "bias.tsv")
    figures.bias_bar(table, out / "bias_bar.png", pair=pair)
    figures.bias_profile(table, out / "bias_profile.png", pair=pair)
    overall = table[table["step"].astype(str) == "all"].set_index("concept")["score"]
    rows = []
    if reference:
        ref = pd.read_csv(reference["file"], sep=None, engine="python")
        for col in (reference["key"], reference["column"]):
            if col not in ref.columns:
                raise ConfigError(
                    f"analysis.defaults reference: column {col!r} not in {reference['file']}"
                )
        series = ref.set_index(reference["key"])[reference["column"]].astype(float)
        corr = correlate_with_reference(
            overall, series, n_boot=boot["bootstrap"], seed=boot["seed"], level=boot["confidence"]
        )
        rows.append({k: v for k, v in corr.items() if k != "concepts"})
        figures.reference_scatter(
            overall,
            series,
            out / "reference_scatter.png",
            correlation=corr,
            xlabel=reference["column"],
            ylabel=f"bias score ({pair[0]} - {pair[1]})",
        )
    else:
        _placeholder_figure(out / "reference_scatter.png", "no reference table configured")
    write_tsv(pd.DataFrame(rows), out / "reference_correlation.tsv")
    return table


def _placeholder_figure(path: Path, text: str) -> None:
    """A small image that says why a figure is absent (outputs must exist for the report)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 1.2))
    fig.text(0.5, 0.5, text, ha="center", va="center")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


# -- descriptors ---------------------------------------------------------------------------------
def run_descriptors(
    data: dict[str, Any],
    targets: Sequence[str],
    axes: Mapping[str, Sequence[str]],
    out_dir: str | Path,
    boot: Mapping[str, Any],
) -> pd.DataFrame:
    """Descriptor ranking per concept and axis: table, top-1 table and heatmap."""
    from scalex.analysis import figures
    from scalex.analysis.descriptors import descriptor_alignment, top_descriptors

    out = Path(out_dir)
    slug_axes = {axis: [descriptor_slug(v) for v in values] for axis, values in axes.items()}
    table = descriptor_alignment(
        data["diffs"],
        list(targets),
        slug_axes,
        templates=data["templates"],
        n_boot=boot["bootstrap"],
        level=boot["confidence"],
        seed=boot["seed"],
    )
    write_tsv(table, out / "descriptors.tsv")
    write_tsv(top_descriptors(table), out / "top_descriptors.tsv")
    figures.descriptor_heatmap(table, out / "descriptors.png")
    return table


def descriptor_slug(value: str) -> str:
    """How a descriptor value appears in derived concept ids (see concepts.py)."""
    return value.lower().replace(" ", "-")


# -- clusters ------------------------------------------------------------------------------------
def run_cluster_figures(
    matrix_tsv: str | Path,
    clusters_tsv: str | Path,
    silhouette_tsv: str | Path,
    out_dir: str | Path,
    linkage_method: str = "average",
) -> None:
    """Dendrogram, cluster-ordered heatmap, 2-D map and silhouette curve of the clustering."""
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    from scalex.analysis import figures

    out = Path(out_dir)
    matrix = pd.read_csv(matrix_tsv, sep="\t", index_col=0)
    labels = pd.read_csv(clusters_tsv, sep="\t")
    ids = list(labels["concept"])
    sub = matrix.loc[ids, ids].to_numpy(dtype=np.float64)
    distance = np.clip(1.0 - (sub + sub.T) / 2, 0.0, 2.0)
    np.fill_diagonal(distance, 0.0)
    clusters = list(labels["cluster"])
    if len(ids) >= 2:
        tree = linkage(squareform(distance, checks=False), method=linkage_method)
        figures.dendrogram(tree, ids, clusters, out / "dendrogram.png")
    else:
        _placeholder_figure(out / "dendrogram.png", "fewer than two concepts")
    figures.similarity_heatmap(sub, ids, clusters, out / "similarity_heatmap.png")
    figures.concept_map(
        ids, clusters, out / "concept_map.png", similarity=sub, sets=list(labels["set"])
    )
    curve = pd.read_csv(silhouette_tsv, sep="\t")
    if len(curve):
        # k = 1 (no structure by the permutation null) is no row of the curve
        chosen = int(curve.loc[curve["chosen"], "k"].iloc[0]) if curve["chosen"].any() else 1
        figures.silhouette_curve(curve["k"], curve["silhouette"], chosen, out / "silhouette.png")
    else:
        _placeholder_figure(out / "silhouette.png", "too few concepts for a silhouette curve")


# -- discovery -----------------------------------------------------------------------------------
def read_vocabulary(path: str | Path) -> list[str]:
    """Non-empty, non-comment lines of a vocabulary file, in order, duplicates dropped."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"analysis.discovery vocabulary file {path} does not exist")
    seen: dict[str, None] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"analysis.discovery vocabulary file {path} is not UTF-8 text (byte {err.start})"
        ) from err
    for line in text.splitlines():
        term = line.strip()
        if term and not term.startswith("#"):
            seen.setdefault(term, None)
    if not seen:
        raise ConfigError(f"analysis.discovery vocabulary file {path} is empty")
    return list(seen)


def query_directions(
    direction_files: Sequence[str | Path], settings_hash: str, queries: Mapping[str, Any]
) -> tuple[list[str], np.ndarray]:
    """Unit query vectors ``sum(positive) - sum(negative)`` of concept directions."""
    wanted = sorted({c for q in queries.values() for c in q["positive"] + q.get("negative", [])})
    d = read_directions(direction_files, settings_hash, concepts=wanted)
    vec = dict(zip(d["ids"], d["aggregate"], strict=True))
    names, rows = [], []
    for name, q in queries.items():
        v = sum(vec[c] for c in q["positive"]) - sum(
            (vec[c] for c in q.get("negative", [])), np.zeros_like(d["aggregate"][0])
        )
        norm = float(np.linalg.norm(v))
        if norm == 0:
            raise ConfigError(f"analysis.discovery.queries.{name} has a zero direction")
        names.append(name)
        rows.append(v / norm)
    return names, np.stack(rows).astype(np.float32)


def vocabulary_latents(
    chunks: Sequence[str | Path],
    baseline: str | Path,
    settings_hash: str,
    tap: str,
    kind: str,
    readout: str = "prompt",
) -> tuple[list[str], list[str], np.ndarray]:
    """Seed-averaged, step-averaged differences to the baseline of every vocabulary prompt."""
    terms, prompts, rows = [], [], []
    for chunk in chunks:
        with open_checked(chunk, ACTIVATIONS, settings_hash) as f:
            cid = next(iter(f["concepts"]))
            seeds = [int(s) for s in f.attrs["seeds"]]
        data = load_concept_diffs(
            {cid: chunk}, baseline, settings_hash, tap, kind, seeds, readout=readout
        )
        diffs = data["diffs"][cid]
        rows.append(diffs.mean(axis=(1, 2)))
        prompts += data["prompts"][cid]
        with open_checked(chunk, ACTIVATIONS, settings_hash) as f:
            terms += read_strings(f[f"concepts/{cid}/terms"])
    return terms, prompts, np.concatenate(rows).astype(np.float32)


def run_discovery(
    chunks: Sequence[str | Path],
    baseline: str | Path,
    direction_files: Sequence[str | Path],
    out_dir: str | Path,
    settings_hash: str,
    queries: Mapping[str, Any],
    tap: str,
    kind: str,
    top_k: int,
    readout: str = "prompt",
) -> pd.DataFrame:
    """Rank a vocabulary by alignment with each query direction; table and figure."""
    from scalex.analysis import figures
    from scalex.analysis.discovery import rank_vocabulary

    out = Path(out_dir)
    names, qvec = query_directions(direction_files, settings_hash, queries)
    terms, _, latents = vocabulary_latents(
        chunks, baseline, settings_hash, tap, kind, readout=readout
    )
    table = rank_vocabulary(latents, terms, qvec, query_names=names, k=top_k)
    write_tsv(table, out / "discovery.tsv")
    figures.discovery_bars(table, out / "discovery.png")
    return table


# -- readouts side by side -----------------------------------------------------------------------
def run_compare_readouts(
    bias_tables: Mapping[str, str | Path], out_table: str | Path, out_figure: str | Path, title: str
) -> pd.DataFrame:
    """Per-concept scores of every readout in one table, and the scatter against the text
    control (when it was extracted)."""
    from scalex.analysis import figures
    from scalex.analysis.readouts import defaults_side_by_side

    wide = defaults_side_by_side({r: pd.read_csv(p, sep="\t") for r, p in bias_tables.items()})
    write_tsv(wide, out_table)
    if "text_score" in wide and len(bias_tables) > 1:
        figures.readouts_scatter(wide, out_figure, title=title)
    else:
        _placeholder_figure(Path(out_figure), "no text-encoder control to compare with")
    return wide


def run_readouts_summary(
    defaults: Mapping[str, str | Path], tops: Mapping[str, str | Path], out: str | Path
) -> pd.DataFrame:
    from scalex.analysis.readouts import agreement_with_text

    table = agreement_with_text(
        {name: pd.read_csv(p, sep="\t") for name, p in defaults.items()},
        {r: pd.read_csv(p, sep="\t") for r, p in tops.items()},
    )
    write_tsv(table, out)
    return table
