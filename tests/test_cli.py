"""The ``scalex`` command's own words: help, version and usage errors (run and resume are tested
by running workflows, in test_resume.py and test_bad_inputs.py)."""

from __future__ import annotations

import subprocess
import time

import pytest
import scalex
from scalex import cli


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_explains_the_commands_and_where_the_findings_are(capsys, flag):
    assert cli.main([flag]) == 0
    out = capsys.readouterr().out
    for word in ("run", "resume", "--rerun-incomplete", "--configfile"):
        assert word in out, word
    assert "results/<model>-<hash>/" in out
    assert "findings/findings.tsv" in out and "findings/<axis>.png" in out
    assert "snakemake --report report.html" in out


def test_no_arguments_prints_the_help_and_fails(capsys):
    assert cli.main([]) == 2
    out = capsys.readouterr().out
    assert "resume" in out and "findings.tsv" in out


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"scalex {cli.version()}\n"
    assert cli.version() == scalex.__version__


def test_an_unknown_command_is_refused_with_the_usage(capsys):
    assert cli.main(["runn", "--cores", "1"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'runn'" in err and "usage: scalex {run,resume}" in err


def test_run_checks_the_config_files_before_snakemake(tmp_path, capsys, monkeypatch):
    """A broken config file stops ``run`` with its name and line; snakemake is never called."""
    monkeypatch.setattr(cli, "snakemake", lambda *a, **k: pytest.fail("snakemake was called"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\nb: [\n")
    assert cli.main(["run", "--configfile", str(bad)]) == 1
    assert f"config file {bad}" in capsys.readouterr().err


def test_run_passes_its_arguments_to_snakemake(monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "snakemake", lambda args, *extra: calls.append([*args, *extra]) or 0)
    assert cli.main(["run", "--cores", "2", "-n"]) == 0
    assert calls == [["--cores", "2", "-n"]]


def fake_squeue(folder, lines: list[str]) -> None:
    """A ``squeue`` on PATH that prints ``lines`` as the real one does for ``--format
    %i\\t%T\\t%Z\\t%k``: job id, state, working folder, comment."""
    folder.mkdir()
    squeue = folder / "squeue"
    squeue.write_text("#!/bin/sh\ncat <<'EOF'\n" + "".join(f"{x}\n" for x in lines) + "EOF\n")
    squeue.chmod(0o755)


def locked_folder(tmp_path):
    work = tmp_path / "work"
    (work / ".snakemake" / "locks").mkdir(parents=True)
    (work / ".snakemake" / "locks" / "0.input.lock").write_text("x\n")
    return work.resolve()


def test_resume_names_the_killed_runs_slurm_jobs_and_what_to_do(tmp_path, monkeypatch, capsys):
    """The SLURM plugin runs its jobs in the workflow's folder and comments them rule_<rule>:
    resume lists this folder's jobs and says to wait for them or scancel them, and stops."""
    monkeypatch.setattr(cli, "snakemake", lambda *a, **k: pytest.fail("snakemake was called"))
    work = locked_folder(tmp_path)
    other = tmp_path / "other"
    fake_squeue(tmp_path / "bin", [
        f"41\tRUNNING\t{work}\trule_extract_wildcards_sd1_0",
        f"42\tPENDING\t{work}/\trule_analysis",
        f"43\tRUNNING\t{other}\trule_extract_wildcards_sd1_1",  # another folder's run
        f"44\tRUNNING\t{work}\tmy own job",  # not the plugin's
    ])  # fmt: skip
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    assert cli.main(["resume", "--directory", str(work), "--cores", "1"]) == 1
    err = capsys.readouterr().err
    assert "41  extract (sd1_0)  RUNNING" in err and "42  analysis  PENDING" in err
    assert "43" not in err and "44" not in err
    assert "Wait until they end" in err and "`scancel 41 42`" in err
    assert "`scalex resume` again" in err


def test_resume_without_slurm_jobs_unlocks_and_goes_on(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "snakemake", lambda args, *extra: calls.append(extra) or 0)
    work = locked_folder(tmp_path)
    # no squeue at all, then a squeue with nothing of this folder
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert cli.main(["resume", "--directory", str(work)]) == 0
    fake_squeue(tmp_path / "bin", [f"7\tRUNNING\t{tmp_path}\trule_extract"])
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert cli.main(["resume", "--directory", str(work)]) == 0
    assert calls == [("--unlock",), ("--rerun-incomplete",)] * 2


def test_resume_tells_a_live_head_from_the_processes_of_slurm_jobs(tmp_path, monkeypatch, capsys):
    """A job's own Snakemake (``--target-jobs``, here on the same machine) does not make resume
    speak of a running Snakemake when SLURM lists its job; without SLURM it still stops resume,
    as does a live head process, whatever SLURM lists."""
    monkeypatch.setattr(cli, "snakemake", lambda *a, **k: pytest.fail("snakemake was called"))
    work = locked_folder(tmp_path)
    fake = tmp_path / "snakemake"
    fake.write_text("#!/bin/sh\n/bin/sleep 30\n")
    fake.chmod(0o755)
    fake_squeue(tmp_path / "bin", [f"9\tRUNNING\t{work}\trule_slow"])
    slurm, no_slurm = f"{tmp_path / 'bin'}:/usr/bin:/bin", str(tmp_path / "empty")
    step = subprocess.Popen([str(fake), "--target-jobs", "slow:", "--nolock"], cwd=work)
    head = None
    try:
        time.sleep(0.3)
        monkeypatch.setenv("PATH", slurm)
        assert cli.main(["resume", "--directory", str(work)]) == 1
        err = capsys.readouterr().err
        assert "9  slow  RUNNING" in err and "locked by running Snakemake" not in err
        monkeypatch.setenv("PATH", no_slurm)
        assert cli.main(["resume", "--directory", str(work)]) == 1
        assert f"locked by running Snakemake processes [{step.pid}]" in capsys.readouterr().err
        head = subprocess.Popen([str(fake), "--cores", "1"], cwd=work)
        time.sleep(0.3)
        monkeypatch.setenv("PATH", slurm)
        assert cli.main(["resume", "--directory", str(work)]) == 1
        err = capsys.readouterr().err
        assert f"locked by running Snakemake processes [{head.pid}]" in err and "9  slow" not in err
    finally:
        for proc in (step, head):
            if proc is not None:
                proc.kill()
                proc.wait()
