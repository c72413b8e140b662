"""The results tree's layout and the workflow's names: the one place that spells them.

Every path of a results tree (``<results>/<model-slug>-<hash8>/``) is an entry of :data:`OUTPUTS`,
a template relative to the tree whose ``{wildcards}`` are Snakemake's. The rules take their
inputs and outputs from :func:`path` (through ``out()`` in ``rules/common.smk``), the default
target is :func:`default_targets`, :class:`scalex.api.Results` reads the same entries, the
wildcard constraints are :data:`WILDCARDS`, and the README's outputs table is generated from
:data:`OUTPUTS` (``python -m scalex.layout --check README.md`` runs in ``make lint``).

A light module (no numpy, no torch): the workflow imports it while it is parsed.
"""

from __future__ import annotations

import argparse
import itertools
import re
import string
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# -- names --------------------------------------------------------------------------------------
#: H-space under the sample's own prompt: the published SCALEX readout.
PROMPT = "prompt"
#: The same trajectory read under one fixed text: what the latent holds.
CONTENT = "content"
#: The text encoder's states alone, no diffusion model: the control.
TEXT = "text"
READOUTS = (PROMPT, CONTENT, TEXT)
#: The pseudo-tap under which the text readout is stored.
TEXT_TAP = "text_encoder"
#: Clusters of the raw directions, and after projecting out the declared identity axes.
RAW, AXES_REMOVED = "raw", "axes_removed"
CLUSTER_VARIANTS = (RAW, AXES_REMOVED)
#: The concept every direction is measured from (``concepts.baseline``).
BASELINE = "baseline"

#: The id of a derived concept ("female nurse" of ``nurse``): ``<descriptor slug>-<concept>``.
DERIVED_ID_FORMAT = "{descriptor}-{concept}"


def descriptor_slug(value: str) -> str:
    """How a descriptor value appears in derived concept ids (``"Very old"`` -> ``very-old``)."""
    return value.lower().replace(" ", "-")


def derived_id(descriptor: str, concept: str) -> str:
    """The id of concept ``concept`` described by ``descriptor`` (``female-nurse``)."""
    return DERIVED_ID_FORMAT.format(descriptor=descriptor_slug(descriptor), concept=concept)


#: Wildcard constraints of the workflow (``rules/common.smk``).
WILDCARDS = {
    "concept": r"[a-z0-9][a-z0-9_.-]*",
    "bucket": rf"b[0-9]{{4}}|{BASELINE}",
    "readout": "|".join(READOUTS),
    "variant": "|".join(CLUSTER_VARIANTS),
    "compared": r"[A-Za-z0-9_.-]+",
}


# -- the tree -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Output:
    """One file (or folder) of a results tree."""

    template: str
    #: the rule that writes it (None: written by the run's machinery, not by one rule)
    rule: str | None
    #: what it holds, for the README (markdown)
    what: str
    #: part of the default target (``rule all``), for every value of its wildcards
    target: bool = False
    #: the config section whose entries its ``{name}`` wildcard ranges over
    names: str | None = None


OUTPUTS: dict[str, Output] = {
    "findings": Output(
        "findings/findings.tsv",
        "findings",
        "**read first**: per concept, identity axis and value, the estimated share of the "
        "concept's generated samples (content readout), CI, n; `method_validated` (the readout "
        "is validated on the reference worlds for this denoiser), `check` (this model's check: "
        "`passed`, `failed` or `not checked`, with `check_agreement`, `check_samples`), "
        "`validated` (both), `unvalidated_corrected_share` with its CI (corrected for the vote's "
        "misclassification on the checked samples; not validated); the text control's share and "
        "`text_agrees`",
        target=True,
    ),
    "findings_figure": Output("findings/{axis}.png", "findings", "the shares of one axis"),
    "findings_references": Output(
        "findings/references.tsv",
        "findings",
        "the shares against reference tables (`analysis.findings.references`), the published "
        "score beside",
        target=True,
    ),
    "check_samples": Output(
        "check/samples.tsv",
        "check",
        "with `check.enabled`: each checked sample (`check.seeds` seeds of every concept and "
        "template): concept, axis, template, prompt, seed, its vote, its own image's reading "
        "(or `undetermined`) and the reader's margin",
    ),
    "check_agreement": Output(
        "check/agreement.tsv",
        "check",
        "per identity axis: agreement of the votes with their images and its Wilson CI, "
        "chance, Cohen's kappa, undetermined rate, the first value's vote and image shares on "
        "the same samples, and `status` (`passed`/`failed` by the declared rule)",
        target=True,
    ),
    "check_confusion": Output(
        "check/confusion.tsv", "check", "counts of (image reading, vote) per axis"
    ),
    "check_figure": Output("check/check.png", "check", "the agreement per axis, chance beside"),
    "prompts": Output(
        "prompts/{bucket}.json",
        "prompts",
        "prompts, template index and set of each concept of a bucket, and the seeds",
    ),
    "activations": Output(
        "activations/{bucket}.h5",
        "extract",
        "every readout's activations of a bucket of concepts, or of the baseline "
        "(`baseline.h5`; format: docs/design.md)",
    ),
    "directions": Output(
        "{readout}/directions/{bucket}.h5",
        "directions",
        "per-step and aggregate directions, mean differences, split-half stability",
    ),
    "similarity": Output(
        "{readout}/similarity/similarity.h5",
        "similarity",
        "cosine matrices (up to `similarity.max_full_concepts` concepts) and the manifest of "
        "direction files",
    ),
    "neighbours": Output(
        "{readout}/similarity/neighbours.tsv",
        "similarity",
        "each concept's nearest concepts",
        target=True,
    ),
    "similarity_table": Output(
        "{readout}/similarity/similarity.tsv",
        "similarity",
        "the full cosine matrix, only while it is written (`similarity.full_matrices`)",
        target=True,
    ),
    "clusters": Output(
        "{readout}/clusters/{variant}/clusters.tsv",
        "clusters",
        "the cluster of each concept",
        target=True,
    ),
    "silhouette": Output(
        "{readout}/clusters/{variant}/silhouette.tsv",
        "clusters",
        "per k, with the null's p-value and how many concepts the tree was built on",
    ),
    "clustered_matrix": Output(
        "{readout}/clusters/{variant}/similarity.tsv", "clusters", "the matrix that was clustered"
    ),
    "bias": Output(
        "{readout}/analysis/defaults/{name}/bias.tsv",
        "defaults",
        "the published SCALEX cosine score (not a share): score, CI, projection per concept "
        "and step",
        target=True,
        names="analysis.defaults",
    ),
    "bias_bar": Output("{readout}/analysis/defaults/{name}/bias_bar.png", "defaults", "bar chart"),
    "bias_profile": Output(
        "{readout}/analysis/defaults/{name}/bias_profile.png", "defaults", "step profile"
    ),
    "bias_scatter": Output(
        "{readout}/analysis/defaults/{name}/reference_scatter.png",
        "defaults",
        "against the reference table",
    ),
    "bias_correlation": Output(
        "{readout}/analysis/defaults/{name}/reference_correlation.tsv",
        "defaults",
        "correlation with the reference table",
    ),
    "descriptors": Output(
        "{readout}/analysis/descriptors/descriptors.tsv",
        "descriptors",
        "descriptor alignments with CIs",
        target=True,
    ),
    "top_descriptors": Output(
        "{readout}/analysis/descriptors/top_descriptors.tsv",
        "descriptors",
        "top descriptor per concept and axis",
    ),
    "votes": Output(
        "{readout}/analysis/descriptors/votes.tsv",
        "descriptors",
        "the share of each concept's samples voting for each value (on the content readout, "
        "what `findings.tsv` reports)",
    ),
    "sample_votes": Output(
        "{readout}/analysis/descriptors/sample_votes.tsv",
        "descriptors",
        "each sample's vote (prompt, seed, the nearest described variant at the same template "
        "and seed)",
    ),
    "descriptors_figure": Output(
        "{readout}/analysis/descriptors/descriptors.png", "descriptors", "heatmap"
    ),
    "dendrogram": Output(
        "{readout}/analysis/clusters/{variant}/dendrogram.png",
        "cluster_figures",
        "dendrogram",
        target=True,
    ),
    "heatmap": Output(
        "{readout}/analysis/clusters/{variant}/similarity_heatmap.png",
        "cluster_figures",
        "ordered heatmap",
    ),
    "concept_map": Output(
        "{readout}/analysis/clusters/{variant}/concept_map.png", "cluster_figures", "2-D map"
    ),
    "silhouette_figure": Output(
        "{readout}/analysis/clusters/{variant}/silhouette.png",
        "cluster_figures",
        "silhouette curve",
    ),
    "vocabulary_prompts": Output(
        "discovery/{vocab}/prompts/{chunk}.json",
        "vocabulary_prompts",
        "a vocabulary's prompt chunk",
    ),
    "vocabulary_activations": Output(
        "discovery/{vocab}/activations/{chunk}.h5",
        "extract_vocabulary",
        "its activation shard",
    ),
    "discovery": Output(
        "{readout}/analysis/discovery/{vocab}/discovery.tsv",
        "discovery",
        "top and bottom vocabulary items per query",
        target=True,
    ),
    "discovery_figure": Output(
        "{readout}/analysis/discovery/{vocab}/discovery.png", "discovery", "figure"
    ),
    "readouts_defaults": Output(
        "readouts/defaults/{name}.tsv",
        "compare_readouts",
        "every readout's bias scores side by side, each H-space readout against the text control",
    ),
    "readouts_defaults_figure": Output(
        "readouts/defaults/{name}.png", "compare_readouts", "figure"
    ),
    "readouts_summary": Output(
        "readouts/summary.tsv",
        "readouts_summary",
        "per analysis and readout: Spearman rho and sign agreement with the text control",
        target=True,
    ),
    "steering_grid": Output(
        "analysis/steering/{name}/grid.png",
        "steering",
        "image grid (columns: alpha, rows: seeds)",
        target=True,
        names="analysis.steering",
    ),
    "steering_images": Output("analysis/steering/{name}/images.npz", "steering", "the images"),
    "projection_scores": Output(
        "analysis/projection/{name}/scores.tsv", "projection", "score of every image per step"
    ),
    "projection_auc": Output(
        "analysis/projection/{name}/auc.tsv",
        "projection",
        "AUC per step",
        target=True,
        names="analysis.projection",
    ),
    "sample_images": Output(
        "validation/sample_images.tsv",
        "sample_images",
        "with a reference-world model: every voted sample rendered with the stock pipeline and "
        "read",
    ),
    "validation": Output(
        "{readout}/validation/summary.tsv",
        "validate_reference",
        "the ground-truth check of one readout",
        target=True,
    ),
    "validation_gender": Output(
        "{readout}/validation/gender_defaults.tsv", "validate_reference", "gender defaults"
    ),
    "validation_clustering": Output(
        "{readout}/validation/clustering.tsv", "validate_reference", "clustering"
    ),
    "validation_descriptors": Output(
        "{readout}/validation/descriptors.tsv", "validate_reference", "descriptors"
    ),
    "validation_samples": Output(
        "{readout}/validation/samples.tsv", "validate_reference", "per-sample check"
    ),
    "validation_summary": Output(
        "validation/summary.tsv",
        "validation_summary",
        "all readouts' ground-truth figures",
        target=True,
    ),
    "comparison": Output(
        "compare/{compared}/diff.tsv",
        "diff",
        "**with `compare:`**, against the new model's tree `<compared>`: per concept, identity "
        "axis and first value, the estimated share in both models (content readout, `validated` "
        "as in the findings), the "
        "paired difference new - base with its bootstrap CI, p- and Benjamini-Hochberg q-value, "
        "`flagged` (q <= `compare.fdr`) and the text control's difference",
        target=True,
    ),
    "comparison_flagged": Output(
        "compare/{compared}/flagged.tsv",
        "diff",
        "**read first**: the flagged changes only (identity shares and descriptor ranking), "
        "largest first",
        target=True,
    ),
    "comparison_descriptors": Output(
        "compare/{compared}/descriptors.tsv",
        "diff",
        "the descriptor ranking of both models (the top value, the first value's margin) with "
        "the paired difference, CI, q-value and flag",
        target=True,
    ),
    "comparison_clusters": Output(
        "compare/{compared}/clusters.tsv",
        "diff",
        "each concept's cluster in both models (the new clusters matched to the base's) and "
        "whether it moved",
    ),
    "comparison_summary": Output(
        "compare/{compared}/summary.json",
        "diff",
        "both trees and model digests, the pairing, the FDR, the flag counts and the clusters' "
        "adjusted Rand index",
        target=True,
    ),
    "comparison_figure": Output(
        "compare/{compared}/{axis}.png",
        "diff",
        "dumbbell figure of one axis: base -> new share per concept with the CI of the "
        "difference, flagged changes marked",
    ),
    "reuse": Output(
        "reuse/",
        None,
        "finished shards and each job's last outputs with its key (`reuse/jobs/<rule>/`), as "
        "clones or hard links with stamps: what lets a rerun take unchanged samples and skip "
        "unchanged jobs (see Reruns); `scalex prune` frees what the config no longer makes, "
        "deleting it recomputes everything",
    ),
    "log": Output(
        "logs/{rule}/{job}.log",
        None,
        "a log for every job (`<job>`: the wildcard values joined by `-`, or the rule's name)",
    ),
    "benchmark": Output("benchmarks/{rule}/{job}.tsv", None, "a Snakemake benchmark per job"),
}


class _Keep(dict):
    """Format map that leaves unknown fields as ``{field}`` (Snakemake wildcards)."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def path(key: str, tree: str | Path = "", **wildcards: object) -> str:
    """``OUTPUTS[key]`` under ``tree``, with the given wildcards filled in and the rest left as
    Snakemake wildcards (``{readout}``)."""
    try:
        template = OUTPUTS[key].template
    except KeyError:
        raise KeyError(f"no output {key!r} in scalex.layout.OUTPUTS") from None
    filled = string.Formatter().vformat(template, (), _Keep(wildcards))
    return f"{tree}/{filled}" if str(tree) else filled


def fields(key: str) -> list[str]:
    """The wildcards of an output's template, in order."""
    return [f for _, f, _, _ in string.Formatter().parse(OUTPUTS[key].template) if f]


@dataclass(frozen=True)
class Plan:
    """What a run makes, from its validated config (``rules/common.smk`` builds it)."""

    #: values of the wildcards: readout, variant, vocab
    values: Mapping[str, Sequence[str]]
    #: the validated config, whose sections give the ``{name}`` values (``Output.names``)
    config: Mapping[str, Any]
    #: target outputs this run does not make (e.g. ``descriptors`` with no descriptor concepts)
    off: frozenset[str] = frozenset()


def default_targets(tree: str | Path, plan: Plan) -> list[str]:
    """Every file of the default target (``rule all``): each ``target`` output not switched off,
    for every combination of its wildcards' values."""
    out: list[str] = []
    for key, spec in OUTPUTS.items():
        if not spec.target or key in plan.off:
            continue
        values = dict(plan.values)
        if spec.names:
            section: Any = plan.config
            for part in spec.names.split("."):
                section = section[part]
            values["name"] = list(section)
        names = fields(key)
        for combo in itertools.product(*(values[n] for n in names)):
            out.append(path(key, tree, **dict(zip(names, combo, strict=True))))
    return out


# -- the README's outputs table -----------------------------------------------------------------
BEGIN = "<!-- outputs table: generated by `python -m scalex.layout --write README.md` -->"
END = "<!-- end of the outputs table -->"


def _shown(template: str) -> str:
    return re.sub(r"\{(\w+)\}", r"<\1>", template)


def markdown_table(outputs: Iterable[Output] = ()) -> str:
    """One row per folder of the tree, its files and what each holds, in registry order."""
    rows: dict[str, list[Output]] = {}
    for out in outputs or OUTPUTS.values():
        folder = out.template if out.template.endswith("/") else out.template.rsplit("/", 1)[0]
        rows.setdefault(folder.rstrip("/") + "/", []).append(out)
    lines = ["| folder | files | rule |", "|---|---|---|"]
    for folder, outs in rows.items():
        files = "; ".join(
            out.what
            if out.template.endswith("/")
            else f"`{_shown(out.template.rsplit('/', 1)[1])}`: {out.what}"
            for out in outs
        )
        rules = ", ".join(dict.fromkeys(f"`{o.rule}`" for o in outs if o.rule)) or "-"
        lines.append(f"| `{_shown(folder)}` | {files} | {rules} |")
    return "\n".join(lines)


def with_table(text: str) -> str:
    """``text`` (the README) with the generated table between its markers."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"README has no outputs-table markers ({BEGIN!r} ... {END!r})")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{markdown_table()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write or check the README's outputs table.")
    parser.add_argument("readme", type=Path)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true", help="rewrite the table in place")
    group.add_argument("--check", action="store_true", help="fail when the table is stale")
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    new = with_table(text)
    if args.write:
        args.readme.write_text(new, encoding="utf-8")
        return 0
    if new != text:
        print(f"{args.readme}: the outputs table is stale: run make docs", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
