"""Deployment files (deploy/), checked as far as this machine can check them.

- every file parses (compose and Kubernetes YAML with PyYAML, systemd units with a small unit parser);
- every command a container or unit runs is ``python -m <module>`` of this repo, and the module's own
  argparse parser accepts its flags (run up to ``parse_args`` and stopped there); the image's commands
  import from the folders the Dockerfile copies alone;
- the Kubernetes overlays, built from base + patch (by this test, and by ``kubectl kustomize`` where it
  is installed), differ only in ``NIMMERVERSE_ENV``, the bus URL and the env's namespace; the compose
  files only in ``NIMMERVERSE_ENV``;
- every NATS subject a file mentions is one that ``nervous/subjects.py`` builds;
- the systemd units pass ``systemd-analyze verify`` where it is installed (Debian's ``systemd``; .ci/run
  installs it when missing). The cortex unit runs vLLM, which is not a module of this repo and is not
  installed here (its venv comes from deploy/vllm/): its command is checked against the seed's line.
"""

from __future__ import annotations

import copy
import inspect
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
import yaml

from nervous import subjects
from nervous.cells.bank import CELLS

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
SYSTEMD = DEPLOY / "systemd"
ENVS = subjects.ENVS
ENV_KEYS = ("NIMMERVERSE_ENV", "NIMMERVERSE_BUS_URL")
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"nimmerverse-nervous:{VERSION}"
CORTEX = SYSTEMD / "vllm-nyx.service"
ORGANISM = SYSTEMD / "nimmerverse-organism@.service"
#: The seed's cortex command line (seeds/Deployment-Architecture-v2.md, "Systemd Service Pattern").
SEED_CORTEX = ["/data/venvs/vllm/bin/python3", "-m", "vllm.entrypoints.openai.api_server",
               "--model", "/womb/cognitive/models/qwen3.5-27b",
               "--served-model-name", "nyx", "--port", "31000"]
RESTARTS = {"on-success", "on-failure", "on-abnormal", "on-watchdog", "on-abort", "always"}


# --- reading the files ---------------------------------------------------------------------------

def deploy_files() -> list[Path]:
    """Every manifest and unit this test is about (deploy/vllm/ is another part's scripts)."""
    files = [DEPLOY / "Dockerfile", *sorted(DEPLOY.glob("*/compose.yaml")), *sorted(K8S.rglob("*.yaml")),
             *sorted(SYSTEMD.glob("*.service"))]
    return [f for f in files if "vllm" not in f.relative_to(DEPLOY).parts[:1]]


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (INSTRUCTION, argument) with continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines
            if line and not line.startswith("#")]


def image_cmd() -> list[str]:
    """The image's CMD (exec form)."""
    (cmd,) = [json.loads(arg) for op, arg in dockerfile() if op == "CMD"]
    return cmd


def image_env() -> dict[str, str]:
    """The image's ENV defaults."""
    env: dict[str, str] = {}
    for op, arg in dockerfile():
        if op == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(arg))
    return env


def image_packages() -> set[str]:
    """Top-level folders of this repo the Dockerfile copies into the image."""
    folders = set()
    for op, arg in dockerfile():
        if op == "COPY":
            folders |= {src for src in shlex.split(arg)[:-1] if (REPO / src).is_dir()}
    return folders


def compose(env: str) -> dict[str, Any]:
    """One env's compose file."""
    return yaml.safe_load((DEPLOY / env / "compose.yaml").read_text())


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A systemd unit file as {section: [(key, value), ...]} (keys repeat; backslash continues a line)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    pending = ""
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
        elif "=" in line and current is not None:
            key, value = line.split("=", 1)
            current.append((key.strip(), value.strip()))
        else:
            raise ValueError(f"{path.name}:{number}: neither a [section] nor key=value: {raw!r}")
    return sections


def unit_value(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> str:
    """The one value of a key in a section; AssertionError naming it when absent or repeated."""
    values = [v for k, v in unit.get(section, []) if k == key]
    assert len(values) == 1, f"[{section}] {key}=: expected once, found {len(values)} times"
    return values[0]


def instance(unit: dict[str, list[tuple[str, str]]], name: str) -> dict[str, list[tuple[str, str]]]:
    """A template unit with the specifiers %i (instance name) and %% expanded."""
    expand = lambda v: v.replace("%%", "\0").replace("%i", name).replace("\0", "%")  # noqa: E731
    return {s: [(k, expand(v)) for k, v in items] for s, items in unit.items()}


def organism_unit(env: str) -> dict[str, list[tuple[str, str]]]:
    """The organism's unit for one env (the template's instance)."""
    return instance(parse_unit(ORGANISM), env)


def unit_environment(unit: dict[str, list[tuple[str, str]]]) -> dict[str, str]:
    """The Environment= assignments of a unit's [Service]."""
    env: dict[str, str] = {}
    for key, value in unit["Service"]:
        if key == "Environment":
            env.update(item.split("=", 1) for item in shlex.split(value))
    return env


# --- building the Kubernetes overlays (base + patch) ---------------------------------------------

KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources", "namespace", "patches"}


def merge(base: Any, patch: Any) -> Any:
    """A strategic-merge patch over maps (what the overlays use): maps merge, anything else is replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = merge(base[key], value) if key in base else value
        return out
    return copy.deepcopy(patch)


def key(resource: dict[str, Any]) -> tuple[str, str]:
    """(kind, name) of a Kubernetes resource."""
    return resource["kind"], resource["metadata"]["name"]


def kustomize(folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The resources of a kustomization folder, built here: resources, then patches, then namespace.
    Fields this builder does not implement fail the test rather than being ignored."""
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(spec) - KUSTOMIZATION_FIELDS
    assert not unknown, f"{folder}: kustomization fields {sorted(unknown)} are not built by this test"
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in spec.get("resources", []):
        path = folder / entry
        docs = kustomize(path).values() if path.is_dir() else yaml.safe_load_all(path.read_text())
        for doc in docs:
            assert key(doc) not in out, f"{path}: {key(doc)} defined twice"
            out[key(doc)] = doc
    for entry in spec.get("patches", []):
        assert set(entry) == {"path"}, f"{folder}: patch {entry} is not a strategic-merge file patch"
        patch = yaml.safe_load((folder / entry["path"]).read_text())
        assert key(patch) in out, f"{folder / entry['path']}: patches {key(patch)}, which the base lacks"
        out[key(patch)] = merge(out[key(patch)], patch)
    if "namespace" in spec:
        out = {k: merge(doc, {"metadata": {"namespace": spec["namespace"]}}) for k, doc in out.items()}
    return out


def overlay(env: str) -> dict[tuple[str, str], dict[str, Any]]:
    """One env's overlay, built by this test."""
    return kustomize(K8S / "overlays" / env)


def kustomize_tool() -> list[str] | None:
    """The command that builds a kustomization (kubectl kustomize, or kustomize build), if installed
    with kustomize v4 or newer (older ones lack `patches:`)."""
    for cmd, version in ((["kubectl", "kustomize"], ["kubectl", "version", "--client"]),
                         (["kustomize", "build"], ["kustomize", "version"])):
        if shutil.which(cmd[0]):
            out = subprocess.run(version, capture_output=True, text=True, timeout=30).stdout
            found = re.search(r"v(\d+)\.\d+", out.split("Kustomize", 1)[-1])
            if found and int(found.group(1)) >= 4:
                return cmd
    return None


def containers(resources: dict[tuple[str, str], dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(deployment name, container) of every container of every Deployment."""
    for (kind, name), doc in resources.items():
        if kind == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                yield name, container


# --- every command: what runs where --------------------------------------------------------------

@dataclass
class Command:
    """One command line a deployment file runs, with the environment it runs in."""

    where: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    in_image: bool = True
    """Runs in the nervous image (deploy/Dockerfile), so imports only what it copies."""

    @property
    def module(self) -> str:
        python = Path(self.argv[0]).name.startswith("python")
        assert python and len(self.argv) >= 3 and self.argv[1] == "-m", (
            f"{self.where}: {shlex.join(self.argv)!r} is not `python -m <module> ...`")
        return self.argv[2]


def flag(argv: list[str], name: str) -> str:
    """The value after a flag in a command line."""
    assert name in argv, f"{shlex.join(argv)}: no {name}"
    return argv[argv.index(name) + 1]


def commands() -> list[Command]:
    """Every command run by the Dockerfile, the compose files, the K8s overlays and the organism unit."""
    out = [Command("deploy/Dockerfile CMD", image_cmd(), image_env())]
    for env in ENVS:
        for name, service in compose(env)["services"].items():
            if service.get("image") == IMAGE:
                out.append(Command(f"deploy/{env}/compose.yaml {name}", service.get("command", image_cmd()),
                                   image_env() | service.get("environment", {})))
        resources = overlay(env)
        for name, container in containers(resources):
            config = {}
            for source in container.get("envFrom", []):
                config |= resources["ConfigMap", source["configMapRef"]["name"]]["data"]
            out.append(Command(f"k8s overlay {env} {name}", container["command"] + container.get("args", []),
                               image_env() | config))
        unit = organism_unit(env)
        out.append(Command(f"{ORGANISM.name} ({env})", shlex.split(unit_value(unit, "Service", "ExecStart")),
                           unit_environment(unit), in_image=False))
    return out


#: Runs each (module, argv, env) of its JSON argument as `python -m module argv` up to the module's
#: argparse parse_args and stops there, printing the parsed namespaces as JSON. Project packages come
#: from the working directory only (the editable install's finder is removed), so a module or import
#: missing there fails; every project module loaded must come from there.
PARSE_ONLY = r"""
import argparse, json, os, runpy, sys
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in str(getattr(f, "__module__", ""))]
sys.path[:] = [os.getcwd()] + [p for p in sys.path if p and "__editable__" not in p]
sys.path_importer_cache.clear()
PROJECT = {"world", "nervous", "agents", "governor", "organs", "train", "conf"}
original = argparse.ArgumentParser.parse_args

class Parsed(BaseException):
    pass

def parse_args(self, args=None, namespace=None):
    raise Parsed(vars(original(self, args, namespace)))

argparse.ArgumentParser.parse_args = parse_args
out, environ = [], dict(os.environ)
for number, (module, argv, env) in enumerate(json.loads(sys.argv[1])):
    os.environ.clear()
    os.environ.update(environ | env)
    sys.argv = [module, *argv]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except Parsed as parsed:
        out.append(parsed.args[0])
    except SystemExit:
        sys.exit(f"command #{number} failed")
    else:
        sys.exit(f"{module}: finished without parsing a command line")
elsewhere = sorted(name for name, m in sys.modules.items() if name.split(".")[0] in PROJECT
                   and getattr(m, "__file__", None) and not m.__file__.startswith(os.getcwd()))
print(json.dumps({"parsed": out, "elsewhere": elsewhere}, default=str))
"""


def parse_commands(cmds: list[Command], cwd: Path) -> list[dict[str, Any]]:
    """The parsed namespace of each command, parsed by its module's own parser in one subprocess."""
    calls = [(c.module, c.argv[3:], c.env) for c in cmds]
    env = {k: v for k, v in os.environ.items() if k not in (*ENV_KEYS, "NIMMERVERSE_CELL", "PYTHONPATH")}
    result = subprocess.run([sys.executable, "-c", PARSE_ONLY, json.dumps(calls)], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=120)
    failed = re.search(r"command #(\d+) failed", result.stderr)
    bad = cmds[int(failed.group(1))] if failed else None
    which = f"{bad.where}: {shlex.join(bad.argv)}" if bad else ""
    assert result.returncode == 0, f"{which}\n{result.stderr[-1500:]}"
    answer = json.loads(result.stdout.splitlines()[-1])
    assert answer["elsewhere"] == [], f"project modules loaded from outside {cwd}: {answer['elsewhere']}"
    return answer["parsed"]


# --- every file parses ---------------------------------------------------------------------------

def test_every_deploy_file_parses() -> None:
    files = deploy_files()
    names = {f.relative_to(DEPLOY).as_posix() for f in files}
    assert {"Dockerfile", "dev/compose.yaml", "k8s/base/kustomization.yaml", "k8s/overlays/prod/env.yaml",
            "systemd/vllm-nyx.service", "systemd/nimmerverse-organism@.service"} <= names
    for path in files:
        if path.suffix == ".yaml":
            assert all(doc for doc in yaml.safe_load_all(path.read_text())), f"{path}: empty YAML document"
        elif path.suffix == ".service":
            unit = parse_unit(path)
            assert {"Unit", "Service", "Install"} <= set(unit), f"{path.name}: sections {sorted(unit)}"
    assert image_cmd() and image_packages() >= {"world", "nervous"}


# --- commands: modules of this repo, flags their parsers accept -----------------------------------

def test_every_command_runs_a_module_of_this_repo() -> None:
    cmds = commands()
    assert {c.module for c in cmds} == {"nervous.cells", "governor", "agents.organism"}
    for c in cmds:
        spec = find_spec(c.module)
        assert spec is not None and spec.origin, f"{c.where}: no module {c.module}"
        if spec.submodule_search_locations is not None:  # a package runs its __main__
            spec = find_spec(f"{c.module}.__main__")
            assert spec is not None, f"{c.where}: package {c.module} has no __main__"
        assert Path(spec.origin).resolve().is_relative_to(REPO), f"{c.where}: {c.module} is {spec.origin}"


def test_image_commands_parse_with_only_what_the_image_copies(tmp_path: Path) -> None:
    for folder in image_packages():
        (tmp_path / folder).symlink_to(REPO / folder)
    cmds = [c for c in commands() if c.in_image]
    unique = list({json.dumps([c.argv, c.env], sort_keys=True): c for c in cmds}.values())
    for c, parsed in zip(unique, parse_commands(unique, tmp_path), strict=True):
        if c.module == "nervous.cells":  # the cell name is checked after parsing, against the bank
            assert parsed["cell"] in CELLS, f"{c.where}: cell {parsed['cell']!r} is not one of {list(CELLS)}"
        assert parsed.get("url") == c.env["NIMMERVERSE_BUS_URL"], f"{c.where}: bus url {parsed.get('url')!r}"


def test_the_organism_units_command_parses() -> None:
    cmds = [c for c in commands() if not c.in_image]
    assert len(cmds) == len(ENVS)
    for env, parsed in zip(ENVS, parse_commands(cmds, REPO), strict=True):
        bus = overlay(env)["ConfigMap", "nimmerverse-env"]["data"]["NIMMERVERSE_BUS_URL"]
        assert parsed["bus_url"] == bus, f"{env}: the organism's bus is not the env's ({bus})"
        assert parsed["duration"] == 0 and parsed["cgroups"] == "v2", "lives until stopped, NPCs capped"
        assert parsed["run_dir"].startswith(f"/var/lib/nimmerverse/{env}/")


def test_the_governor_commands_make_a_valid_governor_for_the_organisms_npcs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from governor.service import parse_config

    organism_npcs = {int(flag(shlex.split(unit_value(organism_unit(e), "Service", "ExecStart")), "--npcs"))
                     for e in ENVS}
    governors = [c for c in commands() if c.module == "governor"]
    assert len(governors) == 2 * len(ENVS)  # compose and K8s, each env
    for c in governors:
        monkeypatch.setenv("NIMMERVERSE_BUS_URL", c.env["NIMMERVERSE_BUS_URL"])
        config = parse_config(c.argv[3:])
        assert {config.npcs} == organism_npcs, f"{c.where}: {config.npcs} NPCs, the organism {organism_npcs}"


# --- environments: only NIMMERVERSE_ENV and the bus differ ---------------------------------------

def without_env(resources: dict[tuple[str, str], dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """An overlay with its namespace and the two env-dependent values replaced by placeholders."""
    out = {}
    for k, doc in resources.items():
        doc = merge(doc, {"metadata": {"namespace": "<env>"}})
        if k == ("ConfigMap", "nimmerverse-env"):
            doc = merge(doc, {"data": dict.fromkeys(ENV_KEYS, "<env>")})
        out[k] = doc
    return out


def test_k8s_overlays_differ_only_in_env_and_bus_url() -> None:
    built = {env: overlay(env) for env in ENVS}
    urls = set()
    for env, resources in built.items():
        assert resources["ConfigMap", "nimmerverse-env"]["data"]["NIMMERVERSE_ENV"] == env
        urls.add(resources["ConfigMap", "nimmerverse-env"]["data"]["NIMMERVERSE_BUS_URL"])
        assert {doc["metadata"]["namespace"] for doc in resources.values()} == {f"nimmerverse-{env}"}
        deployments = {name for kind, name in resources if kind == "Deployment"}
        assert deployments == {f"cell-{c}" for c in CELLS} | {"governor"}, f"{env}: {sorted(deployments)}"
        for name, container in containers(resources):
            refs = [s.get("configMapRef", {}).get("name") for s in container.get("envFrom", [])]
            assert "nimmerverse-env" in refs, f"{env} {name}: does not read the nimmerverse-env ConfigMap"
            assert container["image"] == IMAGE, f"{env} {name}: image {container['image']}"
    assert len(urls) == len(ENVS), f"envs share a bus: {sorted(urls)}"
    assert without_env(built["dev"]) == without_env(built["staging"]) == without_env(built["prod"])


def test_k8s_overlays_as_kustomize_builds_them() -> None:
    tool = kustomize_tool()
    if tool is None:
        pytest.skip("neither kubectl (kustomize >= v4) nor kustomize is installed: the overlays were built "
                    "by this test's own base + patch merge only "
                    "(test_k8s_overlays_differ_only_in_env_and_bus_url)")
    for env in ENVS:
        result = subprocess.run([*tool, str(K8S / "overlays" / env)], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stderr
        theirs = {key(doc): doc for doc in yaml.safe_load_all(result.stdout)}
        assert theirs == overlay(env), f"{env}: kustomize builds something else than this test's merge"


def test_compose_files_differ_only_in_env() -> None:
    files = {env: compose(env) for env in ENVS}
    for env, spec in files.items():
        services = spec["services"]
        assert set(services) == {"nats", "governor", *CELLS}, f"{env}: services {sorted(services)}"
        for name, service in services.items():
            if name != "nats":
                assert service["image"] == IMAGE and service["environment"]["NIMMERVERSE_ENV"] == env, name
        for service in services.values():
            if "environment" in service:
                service["environment"]["NIMMERVERSE_ENV"] = "<env>"
    assert files["dev"] == files["staging"] == files["prod"]


# --- subjects: only what nervous/subjects.py builds ----------------------------------------------

#: A subject-shaped mention: an env name, then dot-separated tokens (not part of a host or file name).
MENTION = re.compile(r"(?<![\w.\-/@%])(?:dev|staging|prod)(?:\.[\w*>\-]+)+")
#: Builder arguments whose values are known sets.
DOMAINS = {"cell": set(CELLS), "npc_id": None}
NOT_SUBJECTS = {"env", "token", "build", "inbox_prefix", "in_env"}


def builders() -> list[Any]:
    """The functions of nervous.subjects that return subjects or subject patterns."""
    return [f for name, f in inspect.getmembers(subjects, inspect.isfunction)
            if f.__module__ == subjects.__name__ and not name.startswith("_") and name not in NOT_SUBJECTS]


def built_by_subjects(subject: str, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """The subjects.py call that builds this subject (its own tokens as arguments), or None."""
    env, *tokens = subject.split(".")
    monkeypatch.setenv(subjects.ENV_VAR, env)
    for f in builders():
        params = list(inspect.signature(f).parameters)
        for args in itertools.product(tokens, repeat=len(params)):
            if any(p == "npc_id" and not a.isdigit() or p in DOMAINS and DOMAINS[p] and a not in DOMAINS[p]
                   for p, a in zip(params, args, strict=True)):
                continue
            try:
                built = f(*args)
            except ValueError:
                continue
            if subject == built or isinstance(built, list) and subject in built:
                return f"{f.__name__}({', '.join(map(repr, args))})"
    return None


def test_every_subject_mentioned_is_built_by_subjects_py(monkeypatch: pytest.MonkeyPatch) -> None:
    mentions = {(f.relative_to(DEPLOY).as_posix(), m) for f in deploy_files()
                for m in MENTION.findall(f.read_text())}
    where = {path.split("/")[0] for path, _ in mentions}
    assert {"dev", "k8s", "systemd"} <= where, f"subjects are mentioned only in {sorted(where)}"
    assert len({m for _, m in mentions}) >= 15
    wrong = sorted((path, m) for path, m in mentions if built_by_subjects(m, monkeypatch) is None)
    assert not wrong, f"subjects nervous/subjects.py does not build: {wrong}"


def test_the_subject_check_catches_a_wrong_subject(monkeypatch: pytest.MonkeyPatch) -> None:
    assert built_by_subjects("prod.nervous.cells.math.wave", monkeypatch) == "cell_wave('math')"
    every_state = built_by_subjects("staging.npc.*.state", monkeypatch)
    assert every_state in {"npc_states_pattern()", "npc_pattern('state')"}  # two builders make it
    for wrong in ("dev.nervous.cell.math.wave", "dev.nervous.cells.maths.wave", "dev.npc.x.state",
                  "dev.thalamus.governor.allocation"):
        assert built_by_subjects(wrong, monkeypatch) is None, wrong


# --- systemd units -------------------------------------------------------------------------------

def test_the_cortex_unit_runs_the_seeds_command_for_the_configured_model() -> None:
    unit = parse_unit(CORTEX)
    argv = shlex.split(unit_value(unit, "Service", "ExecStart"))
    assert argv[:len(SEED_CORTEX)] == SEED_CORTEX, f"not the seed's command line: {shlex.join(argv)}"
    cortex = yaml.safe_load((REPO / "conf" / "cortex" / "default.yaml").read_text())
    assert flag(argv, "--served-model-name") == cortex["model"], "serves another model than cortex.model"
    assert unit_value(unit, "Service", "User") == "nyx-cognitive"
    assert unit_value(unit, "Service", "Restart") in RESTARTS
    assert int(unit_value(unit, "Unit", "StartLimitBurst")) >= 1


def test_the_organism_unit_restarts_within_limits() -> None:
    unit = organism_unit("prod")
    assert unit_environment(unit)["NIMMERVERSE_ENV"] == "prod"
    assert unit_value(unit, "Service", "Restart") in RESTARTS
    assert int(unit_value(unit, "Unit", "StartLimitBurst")) >= 1
    assert int(unit_value(unit, "Unit", "StartLimitIntervalSec")) > 0
    assert re.fullmatch(r"\d+%", unit_value(unit, "Service", "CPUQuota"))
    assert re.fullmatch(r"\d+[KMGT]?", unit_value(unit, "Service", "MemoryMax"))
    assert unit_value(unit, "Service", "KillMode") == "mixed", "SIGTERM to the organism, which stops its NPCs"


def systemd_analyze() -> str:
    """The path of systemd-analyze, or a skip saying what was checked instead."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd; .ci/run installs it): the units "
                    "were checked by this file's unit parser only (sections, ExecStart, Restart=, limits)")
    return tool


def verify(tool: str, unit: str) -> list[str]:
    """What systemd-analyze verify says about a unit (a path; a template's instance by its name)."""
    result = subprocess.run([tool, "verify", "--man=no", unit], capture_output=True, text=True, timeout=60)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


def test_units_pass_systemd_analyze_verify() -> None:
    tool = systemd_analyze()
    units = [(CORTEX, CORTEX, parse_unit(CORTEX))]
    units += [(SYSTEMD / f"nimmerverse-organism@{env}.service", ORGANISM, organism_unit(env)) for env in ENVS]
    for path, source, unit in units:
        exe = shlex.split(unit_value(unit, "Service", "ExecStart"))[0]
        # the executables live on the deployment hosts (the vLLM venv, /opt/nimmerverse): a missing one
        # is the only thing verify may say, and only while it is missing here
        allowed = {f"{path.name}: Command {exe} is not executable: No such file or directory"}
        said = [line for line in verify(tool, str(path)) if not (line in allowed and not os.path.exists(exe))]
        assert not said, f"systemd-analyze verify {source.name}: {said}"


def test_systemd_analyze_verify_reports_a_broken_unit(tmp_path: Path) -> None:
    tool = systemd_analyze()
    broken = tmp_path / "broken.service"
    broken.write_text(CORTEX.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    assert any("restart" in line.lower() for line in verify(tool, str(broken)))
