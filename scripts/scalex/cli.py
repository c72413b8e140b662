"""``scalex``: the workflow's command line, a thin layer over ``snakemake``.

    scalex run [SNAKEMAKE ARGS...]      # check the config files, then snakemake with the args
    scalex resume [SNAKEMAKE ARGS...]   # after a kill: unlock if nobody holds the lock, go on
    scalex prune [--all] [ARGS...]      # free what reuse/ keeps that the config no longer makes
    scalex --help | --version           # what the commands do and where the findings land

Why a wrapper at all: Snakemake reads every ``--configfile`` itself, before the workflow's own
checks run, and a YAML error there names no file; and after a killed run a plain rerun stops on
Snakemake's lock, and even after ``--unlock`` may need ``--rerun-incomplete``. ``resume`` does
both steps, but unlocks only when no Snakemake process is running in the same folder.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from scalex.errors import ConfigError

USAGE = (
    "usage: scalex {run,resume} [snakemake arguments...]\n"
    "       scalex prune [--all] [--configfile ...]\n"
    "       scalex --help | --version"
)

HELP = f"""{USAGE}

Audit a text-to-image diffusion model through its H-space: a thin layer over snakemake; every
argument after the command goes to snakemake unchanged.

commands:
  run      Check the files given to --configfile (a YAML error names the file and line), then
           run the workflow, e.g.
             scalex run --cores 8 --configfile config/config.yaml
  resume   After a killed or crashed run: unlock the folder if no snakemake is running in it,
           then go on with --rerun-incomplete. Takes the same arguments as run. On SLURM it
           first names the killed run's jobs that still run: wait for them, or scancel them.
  prune    Delete what results/<model>-<hash>/reuse/ keeps (finished shards, each job's last
           outputs) for buckets, vocabularies or analyses that the config no longer makes, and
           print the space freed; --all empties it (the next run recomputes everything).

findings, after a run (under results/<model>-<hash>/):
  findings/findings.tsv   per concept and identity axis (e.g. gender), the estimated share of
                          the concept's generated samples that show each value, with its CI
                          and sample count, from the content readout; `method_validated`
                          (validated on the reference worlds for this denoiser) and `check`
                          (this model's own check: passed, failed or not checked); beside it
                          the text encoder alone, and whether that alone gives the same answer
  check/agreement.tsv     with `check:`, each vote against its own sample's image, per axis
  findings/<axis>.png     the same shares as a figure, one per axis
  snakemake --report report.html --configfile ...
                          every table and figure of the run in one HTML report

options:
  -h, --help   show this help and exit
  --version    print the version and exit
"""


def config_files(args: Sequence[str]) -> list[Path]:
    """The files given to ``--configfile``/``--configfiles`` (each takes one or more values)."""
    files: list[Path] = []
    taking = False
    for arg in args:
        if arg in ("--configfile", "--configfiles"):
            taking = True
            continue
        if arg.startswith("--configfile=") or arg.startswith("--configfiles="):
            files.append(Path(arg.split("=", 1)[1]))
            taking = False
            continue
        if taking and not arg.startswith("-"):
            files.append(Path(arg))
            continue
        taking = False
    return files


def check_config_file(path: Path) -> None:
    """A config file must exist and hold a YAML mapping; the error names the file and line."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {err.start})") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"config file {path}{where} is not valid YAML: {problem}") from err
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings at the top level")


def workdir_of(args: Sequence[str], cwd: Path | None = None) -> Path:
    """Snakemake's working directory: ``--directory``/``-d`` (relative to ``cwd``) or ``cwd``."""
    cwd = Path.cwd() if cwd is None else cwd
    for i, arg in enumerate(args):
        if arg in ("--directory", "-d") and i + 1 < len(args):
            return (cwd / args[i + 1]).resolve()
        if arg.startswith("--directory="):
            return (cwd / arg.split("=", 1)[1]).resolve()
    return cwd.resolve()


def running_snakemakes(workdir: Path, job_steps: bool = True) -> list[int]:
    """PIDs of other Snakemake processes working in ``workdir`` (Linux ``/proc``); with
    ``job_steps=False`` only those that may hold its lock, without the processes that run one
    job each (``--target-jobs``, started by an executor such as SLURM's; they take no lock)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        pid = int(proc.name)
        if pid == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = (proc / "cwd").resolve()
        except OSError:
            continue
        words = [w.decode(errors="replace") for w in cmdline if w]
        if not any(w.endswith("snakemake") or w == "snakemake" for w in words):
            continue
        if "--unlock" in words or any("scalex" in w and "cli" in w for w in words):
            continue
        if not job_steps and "--target-jobs" in words:
            continue
        if workdir_of(words[1:], cwd) == workdir:
            pids.append(pid)
    return pids


def snakemake(args: Sequence[str], *extra: str) -> int:
    return subprocess.call([sys.executable, "-m", "snakemake", *args, *extra])


def slurm_jobs(workdir: Path) -> list[tuple[str, str, str]] | None:
    """This user's queued or running SLURM jobs that the SLURM plugin submitted from ``workdir``,
    as (job id, rule and wildcards, state); None without SLURM (no ``squeue``, or no answer).

    The plugin names a job after its run's uuid, runs it in the workflow's folder (``-D``) and
    sets its comment to ``rule_<rule>`` or ``rule_<rule>_wildcards_<values>``."""
    if shutil.which("squeue") is None:
        return None
    cmd = ["squeue", "--noheader", "--user", getpass.getuser(), "--format", "%i\t%T\t%Z\t%k"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    jobs = []
    for line in out.stdout.splitlines():
        fields = line.split("\t", 3)
        if len(fields) != 4 or not fields[3].startswith("rule_"):
            continue
        jobid, state, folder, comment = fields
        if Path(folder).resolve() != workdir:
            continue
        rule, _, wildcards = comment.removeprefix("rule_").partition("_wildcards_")
        jobs.append((jobid, f"{rule} ({wildcards})" if wildcards else rule, state))
    return jobs


def slurm_jobs_message(workdir: Path, jobs: list[tuple[str, str, str]]) -> str:
    ids = [jobid for jobid, _, _ in jobs]
    rows = "".join(f"\n  {jobid}  {name}  {state}" for jobid, name, state in jobs)
    return (
        f"{workdir}: {len(jobs)} SLURM job(s) of an earlier run still queued or running (a "
        f"resume now would submit them again while they still write their outputs):{rows}\n"
        f"Wait until they end (`squeue -j {','.join(ids)}` lists them until then), or cancel "
        f"them: `scancel {' '.join(ids)}`; then run `scalex resume` again."
    )


def resume(args: Sequence[str]) -> int:
    """Unlock a folder that no running Snakemake holds, then rerun incomplete jobs; on SLURM, not
    while jobs of an earlier run in this folder are still queued or running."""
    workdir = workdir_of(args)
    locks = workdir / ".snakemake" / "locks"
    locked = locks.is_dir() and any(locks.iterdir())
    holders = running_snakemakes(workdir, job_steps=False) if locked else []
    if not holders:
        jobs = slurm_jobs(workdir)
        if jobs:
            raise ConfigError(slurm_jobs_message(workdir, jobs))
        # without SLURM, the processes of a killed run's jobs keep the folder too
        holders = running_snakemakes(workdir) if locked else []
    if holders:
        raise ConfigError(
            f"{workdir} is locked by running Snakemake processes {holders}; "
            "wait for them or stop them first"
        )
    if locked:
        code = snakemake(args, "--unlock")
        if code:
            return code
    return snakemake(args, "--rerun-incomplete")


def prune(args: Sequence[str]) -> int:
    """Delete what the results trees keep for reuse but this config no longer makes
    (:mod:`scalex.prune`); never while a Snakemake process works in the folder."""
    from scalex import prune as pruning

    holders = running_snakemakes(workdir_of(args))
    if holders:
        raise ConfigError(
            f"Snakemake processes {holders} are running in {workdir_of(args)}: prune after they end"
        )
    try:
        return pruning.main(args)
    except RuntimeError as err:
        raise ConfigError(f"cannot list the workflow's outputs: {err}") from err


def version() -> str:
    """The installed distribution's version, or the package's own when run from a source tree."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("scalex")
    except PackageNotFoundError:
        from scalex import __version__

        return __version__


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(HELP, end="")
        return 2
    if args[0] in ("-h", "--help"):
        print(HELP, end="")
        return 0
    if args[0] == "--version":
        print(f"scalex {version()}")
        return 0
    if args[0] not in ("run", "resume", "prune"):
        print(
            f"scalex: unknown command {args[0]!r}\n{USAGE}\n(scalex --help says more)",
            file=sys.stderr,
        )
        return 2
    command, rest = args[0], args[1:]
    try:
        for path in config_files(rest):
            check_config_file(path)
        if command == "resume":
            return resume(rest)
        if command == "prune":
            return prune(rest)
        return snakemake(rest)
    except ConfigError as err:
        print(f"scalex: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
