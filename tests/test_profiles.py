"""The cluster and workstation profiles, read statically: every GPU rule lands on a GPU
partition, limits grow with the attempt up to the site caps, and every site variable has a
default."""

from __future__ import annotations

import os
import re

import pytest
import yaml
from conftest import ROOT

PROFILES = ROOT / "profiles"


def gpu_rules() -> set[str]:
    """Rules that declare a GPU resource, read from the rule files."""
    found, rule = set(), None
    for path in sorted((ROOT / "rules").glob("*.smk")):
        for line in path.read_text().splitlines():
            m = re.match(r"^\s*(?:local)?rule (\w+):", line)  # rules inside an if too
            if m:
                rule = m.group(1)
            if re.search(r"\bgpu\s*=\s*[1-9]", line):
                found.add(rule)
    return found


def slurm_defaults() -> dict[str, str]:
    from scalex.slurm import SLURM_DEFAULTS

    return dict(SLURM_DEFAULTS)


def evaluate(value, attempt: int = 1):
    """A profile resource as Snakemake evaluates it: variables expanded, then a Python
    expression with ``attempt`` (a bare word stays a string)."""
    text = os.path.expandvars(str(value))
    try:
        return eval(text, {"attempt": attempt})  # noqa: S307 - the profile's own expression
    except (NameError, SyntaxError):
        return text


@pytest.fixture
def site(monkeypatch):
    for name, value in slurm_defaults().items():
        monkeypatch.setenv(name, value)


def test_gpu_rules_are_known():
    assert gpu_rules() == {
        "extract", "extract_vocabulary", "steering", "projection", "sample_images", "check",
    }  # fmt: skip


def test_every_gpu_rule_runs_on_a_gpu_partition(site):
    profile = yaml.safe_load((PROFILES / "slurm" / "config.yaml").read_text())
    assert evaluate(profile["default-resources"]["slurm_partition"]) == "cpu"
    for rule in gpu_rules():
        spec = profile["set-resources"][rule]
        assert evaluate(spec["slurm_partition"]) == "gpu", rule
        assert spec["gpu"] == 1, rule
    assert profile["rerun-incomplete"] is True and profile["retries"] >= 1


def test_limits_grow_with_the_attempt(site):
    profile = yaml.safe_load((PROFILES / "slurm" / "config.yaml").read_text())
    blocks = [profile["default-resources"], *profile["set-resources"].values()]
    for block in blocks:
        for key in ("mem_mb", "runtime"):
            if key in block:
                assert evaluate(block[key], 2) == 2 * evaluate(block[key], 1) > 0


def test_cpu_profile_asks_for_no_gpu(site):
    profile = yaml.safe_load((PROFILES / "slurm-cpu" / "config.yaml").read_text())
    assert evaluate(profile["default-resources"]["slurm_partition"]) == "cpu"
    for rule in gpu_rules():
        assert profile["set-resources"][rule]["gpu"] == 0, rule
        assert "slurm_partition" not in profile["set-resources"][rule]


def test_every_site_variable_has_a_default():
    used = set()
    for path in PROFILES.glob("*/config.yaml"):
        used |= set(re.findall(r"\$(SCALEX_\w+)", path.read_text()))
    assert used and used <= set(slurm_defaults())


def test_site_variables_override_the_defaults(monkeypatch, site):
    monkeypatch.setenv("SCALEX_SLURM_GPU_PARTITION", "a100")
    monkeypatch.setenv("SCALEX_SLURM_GPU_MEM_MB", "64000")
    monkeypatch.setenv("SCALEX_SLURM_MAX_MEM_MB", "100000")
    spec = yaml.safe_load((PROFILES / "slurm" / "config.yaml").read_text())["set-resources"]
    assert evaluate(spec["extract"]["slurm_partition"]) == "a100"
    assert evaluate(spec["extract"]["mem_mb"]) == 64000
    assert evaluate(spec["extract"]["mem_mb"], 2) == 100000


def snakemake_resources(name: str) -> dict:
    """A profile's resources as Snakemake itself reads them: its profile parser, then its
    parsers of --default-resources (key "*") and --set-resources (one key per rule)."""
    from snakemake.cli import parse_set_resources
    from snakemake.profiles import ProfileConfigFileParser
    from snakemake.resources import Resources

    with open(PROFILES / name / "config.yaml") as stream:
        args = ProfileConfigFileParser().parse(stream)
    blocks = {"*": Resources.parse(args["default-resources"], allow_expressions=True)}
    return blocks | parse_set_resources(args["set-resources"])


def requested(resource, attempt: int):
    """A resource's value for a job's ``attempt``, as Snakemake evaluates it."""
    return resource.evaluate(
        wildcards={}, input=[], attempt=attempt, threads=1, rulename="r", async_run=None
    ).value


@pytest.mark.parametrize("name", ["slurm", "slurm-cpu"])
def test_a_retry_asks_for_no_more_than_the_site_caps(monkeypatch, site, name):
    """A retry doubles memory and time up to SCALEX_SLURM_MAX_*; a first attempt that asks
    for more than the cap keeps its own figure, and so do its retries."""
    monkeypatch.setenv("SCALEX_SLURM_MAX_MEM_MB", "40000")
    monkeypatch.setenv("SCALEX_SLURM_MAX_RUNTIME", "300")
    monkeypatch.setenv("SCALEX_SLURM_CPU_RUNTIME", "500")  # above the cap
    caps = {"mem_mb": 40000, "runtime": 300}
    first = {"*": {"mem_mb": 8000, "runtime": 500}}
    if name == "slurm":
        first |= {rule: {"mem_mb": 32000, "runtime": 240} for rule in gpu_rules()}
    seen = {}
    for rule, block in snakemake_resources(name).items():
        for key, cap in caps.items():
            if key not in block:
                continue
            base = requested(block[key], 1)
            seen.setdefault(rule, {})[key] = base
            for attempt in (2, 3):
                want = min(base * attempt, max(base, cap))
                assert requested(block[key], attempt) == want, (rule, key, attempt)
    assert seen == first
