"""Report figures: each function draws one figure and writes it to ``path`` (PNG or SVG by suffix).

Figures are built on :class:`matplotlib.figure.Figure`, which saves through the Agg renderer
without pyplot or a display and leaves pyplot's global state alone, so they run headless and in
parallel Snakemake jobs (and do not switch the backend of a notebook that imports them).
Categorical colours use the Okabe-Ito palette and continuous maps are cividis (sequential) or PuOr
(diverging), which stay readable under the common colour-vision deficiencies; markers or line
styles double the colour where the number of categories exceeds the palette.
"""

from __future__ import annotations

import textwrap
from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.transforms import ScaledTranslation
from scipy.cluster import hierarchy

from scalex.analysis.defaults import correlate_with_reference, normalise_name

#: Okabe-Ito colours (black last), safe for the common colour-vision deficiencies.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">"]
LINESTYLES = ["-", "--", ":", "-."]
NEUTRAL = "#999999"
LEAN_A, LEAN_B = PALETTE[1], PALETTE[3]
DIVERGING = "PuOr_r"
SEQUENTIAL = "cividis"


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    return path


def _colours(labels: Sequence[Hashable]) -> dict:
    """Stable colour per category, in order of first appearance."""
    uniq = list(dict.fromkeys(labels))
    return {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(uniq)}


def _pair(table: pd.DataFrame, pair: Sequence[str] | None) -> tuple[str, str]:
    pair = pair or table.attrs.get("pair") or ("a", "b")
    return str(pair[0]), str(pair[1])


def _ci_note(table: pd.DataFrame) -> str:
    level, n_boot = table.attrs.get("level"), table.attrs.get("n_boot")
    if level is None:
        return "whiskers: bootstrap CI over seeds and templates"
    return f"whiskers: {level:.0%} bootstrap CI over seeds and templates ({n_boot} replicates)"


def bias_bar(
    table: pd.DataFrame,
    path: str | Path,
    pair: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Ranked horizontal bars of the pooled bias score with CI whiskers (from ``default_bias``)."""
    a, b = _pair(table, pair)
    rows = table[table["step"].astype(str) == "all"].sort_values("score", kind="stable")
    n = len(rows)
    fig = Figure(figsize=(7, max(2.5, 0.28 * n + 1.5)), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(n)
    score = rows["score"].to_numpy(dtype=float)
    err = np.vstack([score - rows["ci_low"].to_numpy(), rows["ci_high"].to_numpy() - score])
    # Same sides as the per-step heatmap (PuOr_r): orange leans to a, purple to b.
    colours = [LEAN_A if s > 0 else LEAN_B for s in score]
    ax.barh(y, score, color=colours, xerr=np.abs(err), ecolor="#333333", capsize=2)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, rows["concept"].astype(str))
    ax.set_xlabel(f"bias score = cos(d, d_{a}) − cos(d, d_{b})")
    ax.set_title(title or f"Default bias: {a} vs {b}\n{_ci_note(table)}", fontsize=10)
    ax.legend(
        handles=[
            Patch(color=LEAN_A, label=f"closer to '{a}'"),
            Patch(color=LEAN_B, label=f"closer to '{b}'"),
        ],
        loc="lower right",
        fontsize=8,
    )
    return _save(fig, path)


def bias_profile(
    table: pd.DataFrame,
    path: str | Path,
    pair: Sequence[str] | None = None,
    title: str | None = None,
    max_lines: int = 10,
) -> Path:
    """Bias score per denoising step: lines with CI bands, or a heatmap when concepts are many."""
    a, b = _pair(table, pair)
    per_step = table[table["step"].astype(str) != "all"].copy()
    per_step["step"] = per_step["step"].astype(int)
    concepts = list(dict.fromkeys(per_step["concept"]))
    steps = sorted(per_step["step"].unique())
    grid = per_step.pivot(index="concept", columns="step", values="score").loc[concepts, steps]
    label = f"bias score: cos(d, d_{a}) − cos(d, d_{b})"
    heading = title or f"Bias per denoising step: {a} vs {b}"
    if len(concepts) <= max_lines:
        fig = Figure(figsize=(7, 4.5), layout="constrained")
        ax = fig.add_subplot()
        for i, c in enumerate(concepts):
            r = per_step[per_step["concept"] == c].sort_values("step")
            colour = PALETTE[i % len(PALETTE)]
            ls = LINESTYLES[(i // len(PALETTE)) % len(LINESTYLES)]
            ax.plot(
                r["step"],
                r["score"],
                marker=MARKERS[i % len(MARKERS)],
                ls=ls,
                color=colour,
                label=str(c),
            )
            ax.fill_between(r["step"], r["ci_low"], r["ci_high"], color=colour, alpha=0.15)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(steps)
        ax.set_xlabel("kept denoising step")
        ax.set_ylabel(label)
        ax.legend(fontsize=8, bbox_to_anchor=(1.02, 1), loc="upper left")
        ax.set_title(f"{heading}\nbands: {_ci_note(table).removeprefix('whiskers: ')}", fontsize=10)
    else:
        fig = Figure(
            figsize=(2 + 0.6 * len(steps), 1.5 + 0.25 * len(concepts)), layout="constrained"
        )
        ax = fig.add_subplot()
        vmax = float(np.nanmax(np.abs(grid.to_numpy()))) or 1.0
        im = ax.imshow(grid.to_numpy(), cmap=DIVERGING, vmin=-vmax, vmax=vmax, aspect="auto")
        ax.set_xticks(range(len(steps)), [str(s) for s in steps])
        ax.set_yticks(range(len(concepts)), [str(c) for c in concepts])
        ax.set_xlabel("kept denoising step")
        fig.colorbar(im, ax=ax, label=label)
        ax.set_title(heading, fontsize=10)
    return _save(fig, path)


def reference_scatter(
    scores: pd.Series,
    reference: pd.Series,
    path: str | Path,
    correlation: dict | None = None,
    xlabel: str = "reference",
    ylabel: str = "bias score",
    title: str | None = None,
) -> Path:
    """Bias score against an external reference per concept, labelled, correlation in the title."""
    corr = correlation or correlate_with_reference(scores, reference)
    ref_lookup = {normalise_name(k): v for k, v in reference.items()}
    names = list(corr["concepts"])
    x = np.array([ref_lookup[normalise_name(n)] for n in names], dtype=float)
    y = scores.loc[names].to_numpy(dtype=float)
    fig = Figure(figsize=(6.5, 5.5), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(x, y, color=PALETTE[0], s=22, zorder=3)
    for xi, yi, n in zip(x, y, names, strict=True):
        ax.annotate(str(n), (xi, yi), xytext=(3, 3), textcoords="offset points", fontsize=7)
    if len(x) >= 2 and np.ptp(x) > 0:
        slope, icpt = np.polyfit(x, y, 1)
        xs = np.linspace(x.min(), x.max(), 2)
        ax.plot(xs, slope * xs + icpt, color=PALETTE[1], lw=1, ls="--", label="least squares")
        ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    lv = corr.get("level", 0.95)
    ax.set_title(
        (title + "\n" if title else "")
        + f"Pearson r = {corr['pearson_r']:.2f} [{corr['pearson_ci_low']:.2f}, "
        f"{corr['pearson_ci_high']:.2f}], Spearman ρ = {corr['spearman_rho']:.2f} "
        f"[{corr['spearman_ci_low']:.2f}, {corr['spearman_ci_high']:.2f}]\n"
        f"n = {corr['n']} concepts, {lv:.0%} bootstrap CIs over concepts",
        fontsize=9,
    )
    return _save(fig, path)


def descriptor_heatmap(table: pd.DataFrame, path: str | Path, title: str | None = None) -> Path:
    """Per axis, a concepts x descriptor-values heatmap of alignment with the top value boxed."""
    axes_names = list(dict.fromkeys(table["axis"]))
    concepts = list(dict.fromkeys(table["concept"]))
    widths = [max(2, table.loc[table["axis"] == ax_, "descriptor"].nunique()) for ax_ in axes_names]
    fig = Figure(figsize=(2.5 + 0.8 * sum(widths), 1.8 + 0.3 * len(concepts)), layout="constrained")
    subplots = fig.subplots(1, len(axes_names), squeeze=False, width_ratios=widths)[0]
    finite = table["alignment"].to_numpy(dtype=float)
    vmin, vmax = float(np.nanmin(finite)), float(np.nanmax(finite))
    im = None
    for ax, axis in zip(subplots, axes_names, strict=True):
        part = table[table["axis"] == axis]
        values = list(dict.fromkeys(part["descriptor"]))
        grid = part.pivot(index="concept", columns="descriptor", values="alignment")
        grid = grid.reindex(index=concepts, columns=values)
        im = ax.imshow(
            grid.to_numpy(dtype=float), cmap=SEQUENTIAL, vmin=vmin, vmax=vmax, aspect="auto"
        )
        arr = grid.to_numpy(dtype=float)
        for (i, j), val in np.ndenumerate(arr):
            if np.isfinite(val):
                light = (val - vmin) / ((vmax - vmin) or 1.0) > 0.6
                ax.text(
                    j,
                    i,
                    f"{val:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if light else "white",
                )
        for _, r in part[part["rank"] == 1].iterrows():
            i, j = concepts.index(r["concept"]), values.index(r["descriptor"])
            clear = bool(r.get("margin_ci_low", 0) > 0)
            ls = "-" if clear else "--"
            # A white halo under a black frame stays visible on dark and light cells alike.
            for ec, lw in (("white", 3.5), ("black", 1.5)):
                ax.add_patch(
                    Rectangle((j - 0.45, i - 0.45), 0.9, 0.9, fill=False, ec=ec, lw=lw, ls=ls)
                )
        ax.set_xticks(range(len(values)), [str(v) for v in values], rotation=45, ha="right")
        ax.set_yticks(range(len(concepts)), [str(c) for c in concepts])
        ax.set_title(f"axis: {axis}", fontsize=10)
    fig.colorbar(im, ax=list(subplots), label="alignment cos(d_c, d_(v c))")
    fig.suptitle(
        title
        or "Descriptor alignment per axis (frame: top-1; solid = margin CI above 0, dashed = not)",
        fontsize=10,
    )
    return _save(fig, path)


def dendrogram(
    linkage: np.ndarray,
    labels: Sequence[str],
    clusters: Sequence[Hashable],
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Dendrogram of a scipy linkage; links and leaf labels coloured by the given cluster labels.

    A link takes a cluster's colour when every leaf under it belongs to that cluster, grey
    otherwise, so the colours show the chosen cut rather than scipy's own threshold.
    """
    n = len(labels)
    if len(clusters) != n or linkage.shape[0] != n - 1:
        raise ValueError("need one label and one cluster per leaf and n - 1 linkage rows")
    colours = _colours(sorted(set(clusters), key=str))
    members: list[set] = [{clusters[i]} for i in range(n)]
    for left, right in linkage[:, :2].astype(int):
        members.append(members[left] | members[right])

    def link_colour(k: int) -> str:
        m = members[k]
        return colours[next(iter(m))] if len(m) == 1 else NEUTRAL

    fig = Figure(figsize=(7, max(3, 0.22 * n + 1.2)), layout="constrained")
    ax = fig.add_subplot()
    dn = hierarchy.dendrogram(
        linkage,
        labels=[str(x) for x in labels],
        orientation="left",
        link_color_func=link_colour,
        ax=ax,
        leaf_font_size=8,
    )
    by_label = {str(lab): c for lab, c in zip(labels, clusters, strict=True)}
    for tick in ax.get_yticklabels():
        tick.set_color(colours[by_label[tick.get_text()]])
    ax.set_xlabel("linkage distance (1 − cosine)")
    ax.set_title(title or f"Hierarchical clustering of {n} concept directions", fontsize=10)
    ax.legend(
        handles=[Patch(color=c, label=f"cluster {k}") for k, c in colours.items()],
        fontsize=7,
        loc="lower left",
        ncol=max(1, len(colours) // 12 + 1),
    )
    del dn
    return _save(fig, path)


def cluster_order(clusters: Sequence[Hashable], order: Sequence[int] | None = None) -> np.ndarray:
    """Indices grouping items by cluster, keeping ``order`` (e.g. dendrogram leaves) within."""
    base = np.arange(len(clusters)) if order is None else np.asarray(order)
    first = {}
    for i in base:
        first.setdefault(clusters[i], len(first))
    return np.array(sorted(base, key=lambda i: first[clusters[i]]), dtype=int)


def similarity_heatmap(
    similarity: np.ndarray,
    ids: Sequence[str],
    clusters: Sequence[Hashable],
    path: str | Path,
    order: Sequence[int] | None = None,
    title: str | None = None,
) -> Path:
    """Cosine-similarity matrix with rows/columns grouped by cluster and cluster blocks outlined."""
    sim = np.asarray(similarity, dtype=float)
    n = len(ids)
    if sim.shape != (n, n) or len(clusters) != n:
        raise ValueError("similarity must be square with one id and one cluster per row")
    idx = cluster_order(clusters, order)
    s = sim[np.ix_(idx, idx)]
    off = s[~np.eye(n, dtype=bool)]
    vmax = float(np.nanmax(np.abs(off))) if off.size else 1.0
    size = min(14, 3 + 0.18 * n)
    fig = Figure(figsize=(size + 1.5, size), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(s, cmap=DIVERGING, vmin=-vmax, vmax=vmax)
    labs = [clusters[i] for i in idx]
    bounds = [i for i in range(1, n) if labs[i] != labs[i - 1]]
    edges = [0, *bounds, n]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        ax.add_patch(
            Rectangle((lo - 0.5, lo - 0.5), hi - lo, hi - lo, fill=False, ec="black", lw=1.2)
        )
    if n <= 80:
        ax.set_xticks(range(n), [str(ids[i]) for i in idx], rotation=90, fontsize=7)
        ax.set_yticks(range(n), [str(ids[i]) for i in idx], fontsize=7)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=ax, label="cosine similarity of directions", shrink=0.8)
    ax.set_title(
        title or f"Concept similarity, grouped into {len(edges) - 1} clusters", fontsize=10
    )
    return _save(fig, path)


def classical_mds(distances: np.ndarray, n_components: int = 2) -> np.ndarray:
    """Classical (Torgerson) MDS: coordinates whose Euclidean distances best match ``distances``."""
    d = np.asarray(distances, dtype=float)
    n = d.shape[0]
    j = np.eye(n) - np.full((n, n), 1.0 / n)
    b = -0.5 * j @ (d**2) @ j
    vals, vecs = np.linalg.eigh((b + b.T) / 2)
    top = np.argsort(vals)[::-1][:n_components]
    coords = vecs[:, top] * np.sqrt(np.clip(vals[top], 0, None))
    if coords.shape[1] < n_components:
        coords = np.pad(coords, ((0, 0), (0, n_components - coords.shape[1])))
    # Fix each axis's sign so reruns give the same picture.
    signs = np.sign(coords[np.argmax(np.abs(coords), axis=0), range(n_components)])
    return coords * np.where(signs == 0, 1, signs)


def concept_map(
    ids: Sequence[str],
    clusters: Sequence[Hashable],
    path: str | Path,
    similarity: np.ndarray | None = None,
    directions: np.ndarray | None = None,
    sets: Sequence[Hashable] | None = None,
    method: str = "mds",
    title: str | None = None,
) -> Path:
    """2-D map of concepts: classical MDS of 1 − cosine, or PCA of the directions.

    Colour shows the cluster, marker shape the concept's set (e.g. professions, identities).
    """
    fig = concept_map_figure(
        ids,
        clusters,
        similarity=similarity,
        directions=directions,
        sets=sets,
        method=method,
        title=title,
    )
    return _save(fig, path)


#: Size (inches) of the map's own part of the concept map; the legends get a strip to its right.
_MAP_SIZE = (7.5, 6.0)
_LEGEND_PAD = 0.15  # inches around and between the legends
_LABEL_WIDTH = 40  # characters per line of a set name in the legend


def concept_map_figure(
    ids: Sequence[str],
    clusters: Sequence[Hashable],
    similarity: np.ndarray | None = None,
    directions: np.ndarray | None = None,
    sets: Sequence[Hashable] | None = None,
    method: str = "mds",
    title: str | None = None,
) -> Figure:
    """The figure :func:`concept_map` saves (same arguments, less ``path``).

    The legends (clusters above, sets below) sit in a strip right of the map whose size is
    measured from the legends themselves, and the figure grows by that strip, so that no legend
    reaches past the figure's edge or covers the other however many sets there are and however
    long their names (wrapped at 40 characters).
    """
    n = len(ids)
    if method == "mds":
        if similarity is None:
            if directions is None:
                raise ValueError("concept_map needs a similarity matrix or directions")
            u = directions / np.linalg.norm(directions, axis=1, keepdims=True)
            similarity = u @ u.T
        coords = classical_mds(1.0 - np.asarray(similarity, dtype=float))
        xlabel, ylabel = "MDS 1", "MDS 2"
    elif method == "pca":
        if directions is None:
            raise ValueError("method='pca' needs the directions")
        x = np.asarray(directions, dtype=float)
        x = x - x.mean(axis=0)
        uu, sv, _ = np.linalg.svd(x, full_matrices=False)
        coords = uu[:, :2] * sv[:2]
        var = sv**2 / max(float(np.sum(sv**2)), 1e-300)
        xlabel, ylabel = f"PC 1 ({var[0]:.0%} var.)", f"PC 2 ({var[1]:.0%} var.)"
    else:
        raise ValueError(f"method must be 'mds' or 'pca'; got {method!r}")
    sets = list(sets) if sets is not None else ["concept"] * n
    colours = _colours(sorted(set(clusters), key=str))
    set_names = list(dict.fromkeys(sets))
    markers = {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(set_names)}
    fig = Figure(figsize=_MAP_SIZE, layout="constrained")
    FigureCanvasAgg(fig)  # a renderer, to measure the legends
    ax = fig.add_subplot()
    for i in range(n):
        ax.scatter(
            coords[i, 0],
            coords[i, 1],
            color=colours[clusters[i]],
            marker=markers[sets[i]],
            s=36,
            edgecolors="black",
            linewidths=0.4,
        )
        if n <= 80:
            ax.annotate(
                str(ids[i]), coords[i], xytext=(3, 3), textcoords="offset points", fontsize=7
            )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    what = "classical MDS of 1 − cosine" if method == "mds" else "PCA of directions"
    ax.set_title(title or f"Map of {n} concepts ({what})", fontsize=10)

    # Figure legends, which the constrained layout leaves alone: it lays the map out in the
    # rectangle left of the legend strip (set below), and the legends are stacked in the strip.
    handles = [[Patch(color=c, label=f"cluster {k}") for k, c in colours.items()]]
    titles = ["cluster"]
    if len(set_names) > 1:
        handles.append(
            [
                Line2D(
                    [],
                    [],
                    ls="",
                    marker=markers[s],
                    color="#555555",
                    label=textwrap.fill(str(s), _LABEL_WIDTH),
                )
                for s in set_names
            ]
        )
        titles.append("set")
    inches = fig.dpi_scale_trans.inverted()
    renderer = fig.canvas.get_renderer()
    ncols = [1] * len(handles)
    while True:
        legends = [
            fig.legend(handles=h, title=t, fontsize=7, loc="upper left", borderaxespad=0, ncols=c)
            for h, t, c in zip(handles, titles, ncols, strict=True)
        ]
        sizes = [inches.transform_bbox(leg.get_window_extent(renderer)) for leg in legends]
        height = sum(b.height for b in sizes) + (len(sizes) + 1) * _LEGEND_PAD
        # Too tall for the map's height: spread the tallest legend that can over more columns.
        taller = [
            i
            for i in sorted(range(len(sizes)), key=lambda i: -sizes[i].height)
            if ncols[i] < len(handles[i])
        ]
        if height <= _MAP_SIZE[1] or not taller:
            break
        for leg in legends:
            leg.remove()
        ncols[taller[0]] += 1
    strip = max(b.width for b in sizes) + 2 * _LEGEND_PAD
    width = _MAP_SIZE[0] + strip
    fig.set_size_inches(width, max(_MAP_SIZE[1], height))
    fig.get_layout_engine().set(rect=(0, 0, _MAP_SIZE[0] / width, 1))
    top = 0.0  # inches below the figure's top edge
    for leg, size in zip(legends, sizes, strict=True):
        top += _LEGEND_PAD
        # Anchored in inches from the figure's top-right corner, which holds at any save dpi.
        leg.set_bbox_to_anchor(
            (1.0, 1.0),
            transform=fig.transFigure
            + ScaledTranslation(-(strip - _LEGEND_PAD), -top, fig.dpi_scale_trans),
        )
        top += size.height
    return fig


def silhouette_curve(
    ks: Sequence[int],
    scores: Sequence[float],
    chosen_k: int,
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Mean silhouette against the number of clusters, with the chosen k marked."""
    ks = np.asarray(ks)
    scores = np.asarray(scores, dtype=float)
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(ks, scores, marker="o", color=PALETTE[0])
    if chosen_k in set(ks.tolist()):
        s = scores[list(ks).index(chosen_k)]
        ax.plot(
            [chosen_k],
            [s],
            marker="*",
            ms=16,
            color=PALETTE[5],
            ls="",
            label=f"chosen k = {chosen_k}",
        )
        ax.legend(fontsize=8)
    ax.set_xlabel("number of clusters k")
    ax.set_ylabel("mean silhouette (cosine distance)")
    ax.set_title(title or "Choosing the number of clusters", fontsize=10)
    return _save(fig, path)


def discovery_bars(
    table: pd.DataFrame, path: str | Path, max_queries: int = 6, title: str | None = None
) -> Path:
    """Per query, the most and least aligned vocabulary prompts as horizontal bars."""
    queries = list(dict.fromkeys(table["query"]))[:max_queries]
    per_q = max((table["query"] == q).sum() for q in queries) if queries else 1
    fig = Figure(figsize=(5.5 * len(queries) or 5, 1.5 + 0.25 * per_q), layout="constrained")
    subplots = fig.subplots(1, max(1, len(queries)), squeeze=False)[0]
    for ax, q in zip(subplots, queries, strict=False):
        part = table[table["query"] == q]
        top = part[part["end"] == "top"].sort_values("cosine")
        bottom = part[part["end"] == "bottom"].sort_values("cosine")
        rows = pd.concat([bottom, top])
        y = np.arange(len(rows))
        colours = [PALETTE[0] if e == "top" else PALETTE[5] for e in rows["end"]]
        ax.barh(y, rows["cosine"], color=colours)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(y, rows["name"].astype(str), fontsize=7)
        ax.set_xlabel("cosine with query direction")
        ax.set_title(f"query: {q}", fontsize=10)
    subplots[0].legend(
        handles=[
            Patch(color=PALETTE[0], label="most aligned"),
            Patch(color=PALETTE[5], label="least aligned"),
        ],
        fontsize=7,
    )
    fig.suptitle(title or "Vocabulary prompts most and least aligned with each query", fontsize=11)
    return _save(fig, path)


def readouts_scatter(wide: pd.DataFrame, path: str | Path, title: str | None = None) -> Path:
    """Each H-space readout's scores against the text-encoder control's, one panel each."""
    others = [c.removesuffix("_score") for c in wide.columns if c.endswith("_score")]
    others = [r for r in others if r != "text"]
    fig = Figure(figsize=(4.2 * max(1, len(others)), 4.2), layout="constrained")
    axes = fig.subplots(1, max(1, len(others)), squeeze=False)[0]
    x = wide["text_score"].to_numpy(float)
    for ax, readout in zip(axes, others, strict=False):
        y = wide[f"{readout}_score"].to_numpy(float)
        ax.axhline(0, color=NEUTRAL, lw=0.6)
        ax.axvline(0, color=NEUTRAL, lw=0.6)
        ax.scatter(x, y, color=PALETTE[0], s=18, zorder=3)
        for xi, yi, n in zip(x, y, wide["concept"], strict=True):
            ax.annotate(str(n), (xi, yi), xytext=(2, 2), textcoords="offset points", fontsize=6)
        rho = pd.Series(x).corr(pd.Series(y), method="spearman")
        ax.set_title(f"{readout} readout vs text encoder alone\nSpearman ρ = {rho:.2f}", fontsize=9)
        ax.set_xlabel("text-encoder control score")
        ax.set_ylabel(f"{readout} readout score")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)
