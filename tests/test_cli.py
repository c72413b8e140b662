"""The ``scalex`` command's own words: help, version and usage errors (run and resume are tested
by running workflows, in test_resume.py and test_bad_inputs.py)."""

from __future__ import annotations

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
