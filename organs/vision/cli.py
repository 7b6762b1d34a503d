"""Command line of the vision organ: ``train`` writes weights into a run folder, ``evaluate`` measures them.

    python -m organs.vision train [--run-dir runs/vision] [--epochs 8] [--worlds 48] [--threads 1]
    python -m organs.vision evaluate [--weights PATH]

Both print one JSON object (train: the metrics also written to ``<run-dir>/metrics.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import fields

from organs.vision.train import TrainConfig


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run it; the exit status."""
    parser = argparse.ArgumentParser(prog="python -m organs.vision", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train_p = sub.add_parser("train", help="train on rendered frames, write vision.pt and metrics.json")
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        value = getattr(defaults, f.name)
        train_p.add_argument(f"--{f.name.replace('_', '-')}", type=type(value), default=value,
                             help=f"(default {value})")
    eval_p = sub.add_parser("evaluate", help="per-cell accuracy of a weight file on the held-out frames")
    eval_p.add_argument("--weights", default=None, help="weight file (default: the shipped one)")
    eval_p.add_argument("--worlds", type=int, default=12, help="held-out worlds (default 12)")
    eval_p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    import torch

    from organs.vision.detect import SHIPPED_WEIGHTS
    from organs.vision.model import WeightsError, load_weights
    from organs.vision.train import evaluate, heldout_windows, train

    try:
        if args.command == "train":
            config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
            result = train(config)
        else:
            torch.set_num_threads(args.threads)
            result = evaluate(load_weights(args.weights or SHIPPED_WEIGHTS), heldout_windows(args.worlds))
    except (ValueError, WeightsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1))
    return 0
