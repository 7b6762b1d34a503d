"""Stage sweeps: the summary table from a multirun folder (CLI and Hydra callback)."""

import json
import subprocess
import sys

import pytest

from train.report import main, write_report


def _job(sweep, name, stage, success):
    job = sweep / name
    job.mkdir(parents=True)
    summary = {
        "world": f"s{stage}",
        "stage": stage,
        "success": success,
        "return": -0.5,
        "agent_steps": 1000,
        "wall_s": 1.5,
    }
    (job / "summary.json").write_text(json.dumps(summary))


def test_report_writes_a_table_row_per_job(tmp_path, capsys):
    for i in range(11):
        _job(tmp_path, str(i), i % 6, i / 10)
    (tmp_path / ".hydra").mkdir()
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = (tmp_path / "summary.md").read_text().splitlines()
    assert lines[0].startswith("| job | world | stage | success | return | agent_steps | wall_s |")
    assert [line.split("|")[1].strip() for line in lines[2:]] == [str(i) for i in range(11)]  # numeric order
    assert "| 0.500 |" in lines[7] and "saved" in out
    assert len(json.loads((tmp_path / "summary.json").read_text())) == 11


def test_report_errors_are_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: sweep_dir=") for line in err)
    with pytest.raises(ValueError):
        write_report(tmp_path)


def test_report_help_and_usage(capsys):
    assert main(["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: python -m train.report [-h] sweep_dir")
    assert main([]) == 2 and "the following arguments are required: sweep_dir" in capsys.readouterr().err


@pytest.mark.slow
def test_a_hydra_stage_sweep_writes_the_summary_at_the_end(tmp_path):
    sweep = tmp_path / "sweep"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "train",
            "-m",
            "world=stage0,stage1",
            "+experiment=quick",
            "brain.hidden=16",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads((sweep / "summary.json").read_text())
    assert [(row["job"], row["stage"], row["world"]) for row in rows] == [
        ("0", 0, "meadow"),
        ("1", 1, "walls"),
    ]
    assert "| job |" in result.stdout
