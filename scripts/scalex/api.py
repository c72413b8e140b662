"""Load a results tree into pandas (and xarray, when installed) for a notebook.

    from scalex.api import Results
    res = Results.from_config("config/config.yaml")   # or Results("results/<model>-<hash>")
    res.findings()                # estimated share of each concept's samples per identity value
    res.bias("gender")            # the published SCALEX cosine score with CIs (not a share)
    res.bias("gender", readout="text")   # the same analysis on the text-encoder control
    res.similarity()              # concept x concept cosine matrix
    res.activations("nurse")      # (prompt, seed, step, channel) array of one concept
    res.comparison()              # with `compare:`: both models' findings, paired differences

Every read goes through the same checks as the workflow (format, completeness, one settings
hash for the whole tree), so a notebook cannot silently mix results of different runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalex import layout
from scalex.errors import StoreError
from scalex.io import (
    ACTIVATIONS,
    SIMILARITY,
    attr_json,
    open_checked,
    read_activations,
    read_directions,
    read_similarity,
    read_strings,
    readout_steps,
)


class Results:
    """One results tree: ``<results>/<model-slug>-<settings hash>``.

    Every analysis exists once per readout (``content``, ``prompt``, ``text``); ``readout``
    picks the default for the methods below, each of which also takes its own ``readout``.
    """

    def __init__(self, tree: str | Path, readout: str = "prompt"):
        self.tree = Path(tree)
        if not self.tree.is_dir():
            raise StoreError(f"{self.tree}: no such results tree")
        self.settings_hash = self.tree.name.rsplit("-", 1)[-1]
        self.readout = readout

    def path(self, key: str, **wildcards: Any) -> Path:
        """The path of output ``key`` of :data:`scalex.layout.OUTPUTS` in this tree (``readout``
        defaults to the tree's)."""
        if "readout" in layout.fields(key):
            wildcards["readout"] = wildcards.get("readout") or self.readout
        missing = [f for f in layout.fields(key) if f not in wildcards]
        if missing:
            raise TypeError(f"output {key!r} needs {', '.join(missing)}")
        return Path(layout.path(key, self.tree, **wildcards))

    def table(self, key: str, **wildcards: Any) -> pd.DataFrame:
        """Any TSV output of the tree by its registry key (``res.table("bias", name="gender")``):
        an analysis added to :data:`scalex.layout.OUTPUTS` is readable here with no other code."""
        path = self.path(key, **wildcards)
        if path.suffix != ".tsv":
            raise StoreError(f"{path}: output {key!r} is not a table")
        if not path.is_file():
            raise StoreError(f"{path}: not produced yet (run the workflow target that makes it)")
        return pd.read_csv(path, sep="\t")

    @classmethod
    def from_config(cls, *configfiles: str | Path, workdir: str | Path | None = None) -> Results:
        """The tree that ``snakemake [--configfile FILE ...]`` run in ``workdir`` writes to.

        The same files as on Snakemake's command line, merged the same way (in order, later
        keys over earlier ones); none means the workflow's default, ``config/config.yaml``.
        ``workdir`` defaults to the folder that holds the first file's ``config/`` folder when it
        is in one (the workflow root), else the current folder.
        """
        from scalex.config import load_configs, results_tree

        files = [Path(f) for f in configfiles] or [Path("config/config.yaml")]
        if workdir is None:
            first = files[0].resolve()
            workdir = first.parent.parent if first.parent.name == "config" else Path.cwd()
        cfg = load_configs(files, base=workdir)
        return cls(Path(workdir) / results_tree(cfg), readout=cfg["directions"]["readout"])

    # -- tables ---------------------------------------------------------------------------------
    def findings(self, axis: str | None = None) -> pd.DataFrame:
        """The run's headline table: for every concept, identity axis and value, the estimated
        share of the concept's generated samples showing the value, with its CI and sample
        count, the text control's share beside it, and whether the text encoder alone gives the
        same majority (``findings/findings.tsv``; the content readout's per-sample vote).
        Two facts label each row: ``method_validated`` (the reading is validated image by image
        on the reference worlds for this kind of denoiser) and ``check`` (this model's own
        check: ``passed``/``failed`` with ``check_agreement`` and ``check_samples``, or ``not
        checked``); ``validated`` holds where both do. ``unvalidated_corrected_share`` and its
        CI: the share corrected for the vote's misclassification on the checked samples, not
        validated (on the reference worlds it moved biased votes further from the images)."""
        path = self.path("findings")
        table = self.table("findings")
        if axis is not None:
            if axis not in set(table["axis"]):
                raise StoreError(f"{path}: no axis {axis!r} (axes: {sorted(set(table['axis']))})")
            table = table[table["axis"] == axis].reset_index(drop=True)
        return table

    def check(self, samples: bool = False) -> pd.DataFrame:
        """This model's check (config ``check:``): per identity axis, the agreement of the
        votes with their own images and its CI, chance, kappa, the undetermined rate and
        ``status`` (``check/agreement.tsv``); ``samples``: each checked sample's vote beside its
        image's reading (``check/samples.tsv``)."""
        return self.table("check_samples" if samples else "check_agreement")

    def comparisons(self) -> list[str]:
        """The new models' trees this tree was compared with (``compare/<tree>/``)."""
        folder = self.tree / "compare"
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def comparison(self, compared: str | None = None, finding: str = "share") -> pd.DataFrame:
        """A comparison with a second model (config ``compare:``): per concept and identity
        axis, the finding in the base model (this tree) and the new one, the paired difference
        with its bootstrap CI, p- and q-value and ``flagged``. ``finding``: ``share`` (the
        estimated identity shares, ``diff.tsv``), ``descriptors`` (the descriptor ranking) or
        ``clusters``. ``compared``: the new model's tree name, needed when there are several."""
        keys = {"share": "comparison", "descriptors": "comparison_descriptors"}
        keys |= {"clusters": "comparison_clusters", "flagged": "comparison_flagged"}
        if finding not in keys:
            raise ValueError(f"finding must be one of {sorted(keys)}, not {finding!r}")
        if compared is None:
            found = self.comparisons()
            if len(found) != 1:
                raise StoreError(
                    f"{self.tree}: {len(found)} comparisons ({', '.join(found) or 'none'}): "
                    "name one with compared="
                )
            compared = found[0]
        return self.table(keys[finding], compared=compared)

    def comparison_summary(self, compared: str | None = None) -> dict[str, Any]:
        """A comparison's summary: both trees and model digests, the pairing, the FDR, how many
        changes were flagged, and the clusters' adjusted Rand index."""
        from scalex.io import read_json

        compared = compared or (self.comparisons() or [""])[0]
        path = self.path("comparison_summary", compared=compared)
        if not path.is_file():
            raise StoreError(f"{path}: not produced yet (run the workflow with compare:)")
        return read_json(path)

    def bias(self, name: str, step: str | int = "all", readout: str | None = None) -> pd.DataFrame:
        """Defaults analysis ``name``: the published SCALEX cosine score and its CI per concept at
        one step ("all" = pooled). A score, not a share: :meth:`findings` gives the shares."""
        table = self.table("bias", readout=readout, name=name)
        return table[table["step"].astype(str) == str(step)].reset_index(drop=True)

    def bias_profile(self, name: str, readout: str | None = None) -> pd.DataFrame:
        """Bias score per concept (rows) and denoising step (columns)."""
        table = self.table("bias", readout=readout, name=name)
        per_step = table[table["step"].astype(str) != "all"]
        return per_step.pivot(index="concept", columns="step", values="score")

    def descriptors(self, readout: str | None = None) -> pd.DataFrame:
        return self.table("descriptors", readout=readout)

    def discovery(self, vocabulary: str, readout: str | None = None) -> pd.DataFrame:
        return self.table("discovery", readout=readout, vocab=vocabulary)

    def clusters(self, variant: str = "raw", readout: str | None = None) -> pd.DataFrame:
        """Cluster labels: ``raw`` directions or after the declared ``axes_removed``."""
        return self.table("clusters", readout=readout, variant=variant)

    def similarity(self, step: int | None = None, readout: str | None = None) -> pd.DataFrame:
        """Cosine similarity of concept directions, aggregated or at one kept step index."""
        from scalex.vectors import cosine_matrix

        sim = read_similarity(self.path("similarity", readout=readout), self.settings_hash)
        if sim["aggregate"] is not None:
            matrix = sim["aggregate"] if step is None else sim["per_step"][step]
            return pd.DataFrame(matrix, index=sim["ids"], columns=sim["ids"])
        # a large run stored neighbours only: compute the matrix from the directions
        files = self.direction_files(readout)
        field = "aggregate" if step is None else "per_step"
        d = read_directions(files, self.settings_hash, fields=(field,))
        vectors = d["aggregate"] if step is None else d["per_step"][:, step]
        return pd.DataFrame(cosine_matrix(vectors), index=d["ids"], columns=d["ids"])

    def neighbours(self, readout: str | None = None) -> pd.DataFrame:
        """Each concept's nearest concepts by cosine (concept, rank, neighbour, cosine)."""
        return self.table("neighbours", readout=readout)

    def directions(self, readout: str | None = None) -> pd.DataFrame:
        """Aggregate unit directions, one row per concept, with set and split-half stability."""
        d = read_directions(self.direction_files(readout), self.settings_hash)
        frame = pd.DataFrame(d["aggregate"], index=d["ids"])
        frame.insert(0, "split_half", d["split_half"])
        frame.insert(0, "set", d["sets"])
        return frame

    def direction_files(self, readout: str | None = None) -> list[Path]:
        """The direction files of the finished run, from the manifest that the similarity step
        writes: a file left in the folder by an earlier bucket layout (whose concepts may since
        have been removed) is not listed."""
        path = self.path("similarity", readout=readout)
        with open_checked(path, SIMILARITY, self.settings_hash) as f:
            names = [str(n) for n in f.attrs["direction_files"]]
        return [self.path("directions", readout=readout, bucket=Path(n).stem) for n in names]

    # -- activations ----------------------------------------------------------------------------
    def shards(self) -> list[Path]:
        """The activation shards of the finished run (the manifest's buckets and the baseline)."""
        buckets = [p.stem for p in self.direction_files()] + [layout.BASELINE]
        return [self.path("activations", bucket=b) for b in buckets]

    def settings(self) -> dict[str, Any]:
        """The extraction settings recorded in the shards."""
        with open_checked(self.shards()[0], ACTIVATIONS, self.settings_hash) as f:
            return attr_json(f, "settings_json")

    def activations(
        self,
        concept: str,
        tap: str = "mid_block",
        kind: str = "pooled",
        readout: str | None = None,
    ) -> Any:
        """A concept's activations as an ``xarray.DataArray`` (numpy array without xarray).

        Dimensions: prompt, seed, step (scheduler timestep), channel (and y, x for full maps).
        """
        for shard in self.shards():
            with open_checked(shard, ACTIVATIONS, self.settings_hash) as f:
                if f"concepts/{concept}" not in f:
                    continue
                readout = readout or self.readout
                data = read_activations(f, concept, tap, kind, readout)
                coords = {
                    "prompt": read_strings(f[f"concepts/{concept}/prompts"]),
                    "seed": np.asarray(f.attrs["seeds"]),
                    "step": np.asarray(readout_steps(f, readout)[1]),
                }
            try:
                import xarray as xr
            except ImportError:
                return data
            dims = ["prompt", "seed", "step", "channel", "y", "x"][: data.ndim]
            return xr.DataArray(data, dims=dims, coords=coords, name=f"{concept}:{tap}")
        raise StoreError(f"{self.tree}: no activation shard holds concept {concept!r}")
