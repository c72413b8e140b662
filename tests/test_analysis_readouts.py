"""Readouts side by side: agreement of each H-space readout with the text-encoder control."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scalex.analysis.readouts import agreement_with_text, defaults_side_by_side


def _bias(scores: dict[str, float]) -> pd.DataFrame:
    rows = []
    for concept, score in scores.items():
        rows.append({"concept": concept, "step": "all", "score": score, "ci_low": score - 0.1,
                     "ci_high": score + 0.1})  # fmt: skip
        rows.append({"concept": concept, "step": 5, "score": 0.0, "ci_low": 0, "ci_high": 0})
    return pd.DataFrame(rows)


def test_side_by_side_and_agreement():
    names = ["nurse", "carpenter", "doctor", "chef"]
    text = dict(zip(names, [0.3, -0.3, 0.1, -0.1], strict=True))
    copy = dict(zip(names, [0.6, -0.6, 0.2, -0.2], strict=True))  # the text's ranking
    opposed = dict(zip(names, [-0.3, 0.3, -0.1, 0.1], strict=True))  # the reverse
    wide = defaults_side_by_side({"content": _bias(opposed), "prompt": _bias(copy),
                                  "text": _bias(text)})  # fmt: skip
    assert list(wide.columns) == ["concept"] + [
        f"{r}_{c}" for r in ("content", "prompt", "text") for c in ("score", "ci_low", "ci_high")
    ]
    assert wide["concept"].iloc[0] == "carpenter"  # sorted by the first readout's score
    summary = agreement_with_text({"gender": wide}).set_index("readout")
    assert summary.loc["prompt", "spearman_with_text"] == pytest.approx(1.0)
    assert summary.loc["prompt", "same_sign_as_text"] == 1.0
    assert summary.loc["content", "spearman_with_text"] == pytest.approx(-1.0)
    assert summary.loc["content", "same_sign_as_text"] == 0.0
    assert "text" not in summary.index


def test_descriptor_agreement():
    def top(pairs):
        return pd.DataFrame(
            [{"concept": c, "axis": "age", "descriptor": d} for c, d in pairs.items()]
        )

    text = top({"nurse": "young", "judge": "old"})
    same = top({"nurse": "young", "judge": "old"})
    half = top({"nurse": "old", "judge": "old"})
    out = agreement_with_text({}, {"text": text, "prompt": same, "content": half})
    got = out.set_index("readout")["same_sign_as_text"]
    assert got["prompt"] == 1.0 and got["content"] == 0.5
    assert np.isnan(out["spearman_with_text"]).all()
