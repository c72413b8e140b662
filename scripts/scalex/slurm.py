"""Site settings of the SLURM profiles (profiles/slurm, profiles/slurm-cpu), read from the
environment so that one profile serves every site."""

from __future__ import annotations

import getpass
import shutil
import subprocess
from collections.abc import MutableMapping

#: Each variable the profiles read, with the value it takes when unset.
SLURM_DEFAULTS = {
    "SCALEX_SLURM_ACCOUNT": "",
    "SCALEX_SLURM_CPU_PARTITION": "cpu",
    "SCALEX_SLURM_GPU_PARTITION": "gpu",
    "SCALEX_SLURM_CPU_MEM_MB": "8000",
    "SCALEX_SLURM_GPU_MEM_MB": "32000",
    "SCALEX_SLURM_CPU_RUNTIME": "30",
    "SCALEX_SLURM_GPU_RUNTIME": "240",
    "SCALEX_SLURM_CPU_CPUS": "2",
    "SCALEX_SLURM_GPU_CPUS": "8",
    # caps of a retried job's memory (MB) and time (minutes): a retry asks for twice as much
    "SCALEX_SLURM_MAX_MEM_MB": "64000",
    "SCALEX_SLURM_MAX_RUNTIME": "480",
}


def default_account() -> str:
    """The user's default SLURM account (the one sbatch uses without -A), or "" if unknown."""
    if shutil.which("sacctmgr") is None:
        return ""
    cmd = ["sacctmgr", "-n", "-P", "show", "user", getpass.getuser(), "format=defaultaccount"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    words = out.stdout.split() if out.returncode == 0 else []
    return words[0] if words else ""


def site_environment(environ: MutableMapping[str, str], names_account: bool) -> None:
    """Set every unset site variable to its default. ``names_account``: the run submits with a
    SLURM profile; an empty account then becomes the user's default account, since left empty
    the SLURM plugin guesses one, and its guess (plugin 2.8) hands ``| tail -1`` to sacct as
    arguments and prints ``sacct: invalid option -- '1'``."""
    for name, value in SLURM_DEFAULTS.items():
        environ.setdefault(name, value)
    if names_account and not environ["SCALEX_SLURM_ACCOUNT"]:
        environ["SCALEX_SLURM_ACCOUNT"] = default_account()
