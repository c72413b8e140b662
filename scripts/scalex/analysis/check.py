"""The check's tables: each checked sample's vote beside its own image's reading, and per axis
how often they agree, beyond chance, with what confusion.

The rule a check passes by is declared in docs/validation.md ("The check") before any outcome:
at least :data:`MIN_SAMPLES` determined readings, a Wilson lower bound of the agreement of at
least :data:`MIN_AGREEMENT`, and Cohen's kappa of at least :data:`MIN_KAPPA`. Kappa measures the
agreement beyond what each concept's vote and image shares alone would give: a reader that
knows only the shares (the shuffled control) agrees by chance, and where a model draws almost
every nurse as a woman that chance alone is high.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from scalex.readers import UNDETERMINED

#: The declared pass rule (docs/validation.md, "The check").
MIN_SAMPLES = 20
MIN_AGREEMENT = 0.80
MIN_KAPPA = 0.40
PASSED, FAILED, NOT_CHECKED = "passed", "failed", "not checked"

SAMPLE_COLUMNS = [
    "concept",
    "axis",
    "template_index",
    "prompt",
    "seed",
    "vote",
    "reading",
    "margin",
]
AGREEMENT_COLUMNS = [
    "axis",
    "samples",
    "determined",
    "undetermined_rate",
    "agreement",
    "ci_low",
    "ci_high",
    "chance",
    "kappa",
    "vote_share",
    "image_share",
    "value",
    "status",
]


def checked_subsample(sample_votes: pd.DataFrame, seeds: int) -> pd.DataFrame:
    """The votes of the samples to check: every concept, axis and prompt (so every template)
    at the first ``seeds`` seeds."""
    chosen = sample_votes[sample_votes["seed_index"] < seeds]
    return chosen.sort_values(["concept", "axis", "prompt_index", "seed_index"], kind="stable")


def wilson(hits: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (sound at 0 and n hits, unlike the normal one)."""
    if n == 0:
        return float("nan"), float("nan")
    z = stats.norm.ppf(0.5 + level / 2)
    p = hits / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def chance_agreement(determined: pd.DataFrame) -> float:
    """The agreement expected if votes and readings were independent within each concept: the
    sum over values of the concept's vote share times its image share, pooled over samples."""
    total = 0.0
    for _, block in determined.groupby("concept", sort=False):
        votes = block["vote"].value_counts(normalize=True)
        reads = block["reading"].value_counts(normalize=True)
        total += len(block) * float((votes * reads.reindex(votes.index).fillna(0)).sum())
    return total / len(determined) if len(determined) else float("nan")


def status(determined: int, ci_low: float, kappa: float) -> str:
    """The declared pass rule (module docstring)."""
    ok = determined >= MIN_SAMPLES and ci_low >= MIN_AGREEMENT and kappa >= MIN_KAPPA
    return PASSED if ok else FAILED


def agreement_table(
    checked: pd.DataFrame, axes: dict[str, list[str]], level: float = 0.95
) -> pd.DataFrame:
    """Per axis: determined readings, undetermined rate, agreement with its Wilson CI, chance,
    kappa, the first value's vote and image shares on the same samples, and the status."""
    rows = []
    for axis, values in axes.items():
        block = checked[checked["axis"] == axis]
        determined = block[block["reading"] != UNDETERMINED]
        n = len(determined)
        hits = int((determined["vote"] == determined["reading"]).sum())
        agree = hits / n if n else float("nan")
        low, high = wilson(hits, n, level)
        chance = chance_agreement(determined)
        kappa = (agree - chance) / (1 - chance) if n and chance < 1 else float("nan")
        first = values[0]
        rows.append(
            {
                "axis": axis,
                "samples": len(block),
                "determined": n,
                "undetermined_rate": 1 - n / len(block) if len(block) else float("nan"),
                "agreement": agree,
                "ci_low": low,
                "ci_high": high,
                "chance": chance,
                "kappa": kappa,
                "vote_share": float((determined["vote"] == first).mean()) if n else np.nan,
                "image_share": float((determined["reading"] == first).mean()) if n else np.nan,
                "value": first,
                "status": status(n, low, kappa) if n else FAILED,
            }
        )
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


def confusion_table(checked: pd.DataFrame, axes: dict[str, list[str]]) -> pd.DataFrame:
    """Counts per axis of (image reading, vote), undetermined readings included."""
    rows = []
    for axis, values in axes.items():
        block = checked[checked["axis"] == axis]
        for reading in [*values, UNDETERMINED]:
            for vote in values:
                n = int(((block["reading"] == reading) & (block["vote"] == vote)).sum())
                rows.append({"axis": axis, "image": reading, "vote": vote, "count": n})
    return pd.DataFrame(rows, columns=["axis", "image", "vote", "count"])


def shuffled(checked: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The control: each concept's readings (and margins) of one axis permuted among its checked
    samples, so they keep the concept's image shares but no longer belong to their images."""
    rng = np.random.default_rng(seed)
    out = checked.copy()
    for _, index in out.groupby(["concept", "axis"], sort=True).groups.items():
        order = rng.permutation(len(index))
        out.loc[index, ["reading", "margin"]] = out.loc[index, ["reading", "margin"]].to_numpy()[
            order
        ]
    return out
