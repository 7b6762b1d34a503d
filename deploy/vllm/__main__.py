"""``python -m deploy.vllm setup | where | serve``: make vLLM's venv, say where it is, serve the tiny model.

    python -m deploy.vllm setup                 # venv + tiny model (reused when already made)
    python -m deploy.vllm where                 # the venv's python and the model, or how to make them
    python -m deploy.vllm serve --port 31000    # nyx on 127.0.0.1:31000 until Ctrl-C

``--venv DIR`` (or ``NIMMERVERSE_VLLM_VENV``) picks another venv folder; arguments after ``--`` go to
vLLM's server as they are.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from deploy.vllm import environment


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; 0 on success, 1 with a one-line reason otherwise."""
    args = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in args:
        args, extra = args[: args.index("--")], args[args.index("--") + 1 :]
    parser = argparse.ArgumentParser(prog="python -m deploy.vllm", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["setup", "where", "serve"])
    parser.add_argument("--venv", type=Path, default=None, help="venv folder (default: keyed cache folder)")
    parser.add_argument("--host", default="127.0.0.1", help="serve: address to listen on")
    parser.add_argument("--port", type=int, default=31000, help="serve: port to listen on")
    parser.add_argument("--cache", type=Path, default=None, help="serve: cache folder (default: in the venv)")
    options = parser.parse_args(args)
    venv = options.venv.expanduser().resolve() if options.venv else None
    try:
        if options.command == "setup":
            started = time.monotonic()
            env = environment.setup(venv)
            print(f"ready in {time.monotonic() - started:.0f} s: python {env.python}, model {env.model}")
            return 0
        env = environment.find(venv)
    except (environment.VllmEnvMissing, OSError, subprocess.CalledProcessError) as exc:
        print(f"deploy.vllm {options.command}: {exc}", file=sys.stderr)
        return 1
    if options.command == "where":
        print(f"python {env.python}\nmodel {env.model}")
        return 0
    cache = options.cache or env.venv / "serve-cache"
    command, environ = environment.serve_command(env, options.port, cache, options.host, extra)
    os.execve(command[0], command, environ)


if __name__ == "__main__":
    sys.exit(main())
