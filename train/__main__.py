"""`python -m train`: Hydra entry point; bad input ends with one line on stderr and exit status 2."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from train.checkpoint import CheckpointError
from train.config import ConfigError, register_configs, to_run_config
from world.replay import ReplayError

#: Errors that mean bad input (config, CLI, files), reported in one line.
INPUT_ERRORS = (ConfigError, CheckpointError, ReplayError)

#: Names in the ConfigStore that are schemas, not choices a user picks.
SCHEMA_NODES = ("schema", "run_schema")
#: The config folder shipped with the package.
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def hydra_main(cfg: DictConfig) -> dict:
    """Run one job (one mode) with the composed config."""
    from train.modes import eval_mode, organism_mode, train_mode, view_mode  # after Hydra parsed the CLI

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        run = to_run_config(cfg)
        if run.mode == "view":
            sys.exit(view_mode(run))
        if run.mode == "eval":
            return eval_mode(run, run_dir)
        if run.mode == "governor":
            from governor.training import governor_mode

            return governor_mode(run, run_dir)
        if run.runtime.name == "processes":
            return organism_mode(run, run_dir)
        return train_mode(run, run_dir, overrides=list(hydra_cfg.overrides.task))
    except INPUT_ERRORS as error:  # here, so Hydra does not log the job's failure as well
        print(f"error: {one_line(error)}", file=sys.stderr)
        sys.exit(2)
    finally:  # a refused run, or a mode that wrote its files elsewhere (view, eval beside its checkpoint)
        remove_if_only_hydra(run_dir)


def remove_if_only_hydra(run_dir: Path) -> None:
    """Remove a run folder that holds only what Hydra put there (`.hydra/`, an empty log), and empty parents.

    A run refused at start leaves nothing behind; a folder holding anything else is left as it is."""
    if not run_dir.is_dir():
        return
    made_by_hydra = [run_dir / ".hydra", *(log for log in run_dir.glob("*.log") if log.stat().st_size == 0)]
    if any(path not in made_by_hydra for path in run_dir.iterdir()):
        return
    shutil.rmtree(run_dir)
    folder, stop = run_dir.resolve().parent, Path.cwd().resolve()
    while stop in folder.parents and not any(folder.iterdir()):  # outputs/<date>/ left empty
        folder.rmdir()
        folder = folder.parent


def one_line(error: BaseException) -> str:
    """The first line of an error, plus the first line of its cause when that says more."""
    missing = missing_choice(error)
    if missing is not None:
        return missing
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    cause = error.__cause__ or error.__context__
    if cause is not None and str(cause).strip() and not isinstance(error, INPUT_ERRORS):
        text = f"{text.rstrip('.')}: {str(cause).strip().splitlines()[0]}"
    return text


def missing_choice(error: BaseException) -> str | None:
    """For an unknown config group option (`world=stage9`): the choices that exist, in one line."""
    from hydra.errors import MissingConfigException

    if not isinstance(error, MissingConfigException) or not error.missing_cfg_file:
        return None
    group, _, name = error.missing_cfg_file.rpartition("/")
    options = [o for o in (error.options or []) if o not in SCHEMA_NODES]
    if group and options:
        return f"{group}={name}: no such {group} config; choose one of {', '.join(options)}"
    groups = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and not p.name.startswith("_"))
    return f"{error.missing_cfg_file}: no such config group or option; groups: {', '.join(groups)}"


def _check_argv(argv: list[str]) -> None:
    """Catch `world.<field>=...` without a stage before Hydra turns it into an assertion."""
    args = [a for a in argv if not a.startswith("-")]
    if any(a.lstrip("+").startswith("world.") for a in args) and not any(
            a.lstrip("+").startswith("world=") for a in args):
        field = next(a for a in args if a.lstrip("+").startswith("world.")).split("=", 1)[0]
        raise ConfigError(f"{field}: choose a stage first, e.g. world=stage0 {field}=...")


def main() -> None:
    """Run Hydra; print bad-input errors as one line and exit 2 (HYDRA_FULL_ERROR=1 shows tracebacks)."""
    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # make Hydra raise instead of printing its own report
    try:
        _check_argv(sys.argv[1:])
        hydra_main()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as error:
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        if previous != "1" and isinstance(error, (*INPUT_ERRORS, HydraException, OmegaConfBaseException)):
            print(f"error: {one_line(error)}", file=sys.stderr)
            sys.exit(2)
        raise
    finally:
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous


if __name__ == "__main__":
    main()
