"""Training and evaluation of the vision network on frames the project renders itself.

Training windows come from worlds of seeds ``0 .. worlds-1`` (every stage, random actions, drawn in
every condition of ``organs.vision.frames.CONDITIONS``); held-out windows from worlds of seeds
``HELDOUT_SEED ..``, never trained on. Labels come from the tile grid. The loss is per-cell cross
entropy weighted by inverse square-root class frequency, so rare tiles (keys, doors, locks) are learnt
too; the report gives per-cell accuracy per condition and recall per class on the held-out windows.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from organs.vision.frames import CONDITIONS, NUM_CLASSES, WindowSet, make_windows
from organs.vision.model import VisionNet, save_weights
from world.tiles import Tile

log = logging.getLogger(__name__)

#: First world seed of held-out windows; training worlds use seeds below it.
HELDOUT_SEED = 100_000


@dataclass
class TrainConfig:
    """One training run of the vision network."""

    run_dir: str = "runs/vision"
    """Folder for vision.pt and metrics.json."""
    worlds: int = 48
    """Training worlds (seeds 0 .. worlds-1), each giving frames_per_world frames."""
    heldout_worlds: int = 12
    """Held-out worlds (seeds HELDOUT_SEED ..)."""
    frames_per_world: int = 4
    """Frames taken from each world."""
    windows_per_frame: int = 6
    """Windows cut from each frame, per condition."""
    epochs: int = 8
    """Passes over the training windows."""
    batch: int = 64
    """Windows per optimiser step."""
    lr: float = 3e-3
    """Adam learning rate at the start (cosine decay to 5 % of it)."""
    width: int = 64
    """Channels per cell of the network."""
    threads: int = 1
    """Torch CPU threads."""
    seed: int = 0
    """Seed of initialisation and batch order."""

    def __post_init__(self) -> None:
        for name in ("worlds", "heldout_worlds", "frames_per_world", "windows_per_frame", "epochs", "batch",
                     "width", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"vision.{name}={value!r}: must be an integer >= 1")
        if not self.lr > 0:
            raise ValueError(f"vision.lr={self.lr!r}: must be > 0")


def heldout_windows(worlds: int = 12, frames_per_world: int = 4, windows_per_frame: int = 6) -> WindowSet:
    """The held-out windows of the first ``worlds`` held-out seeds (deterministic)."""
    return make_windows(range(HELDOUT_SEED, HELDOUT_SEED + worlds), frames_per_world=frames_per_world,
                        windows_per_frame=windows_per_frame)


def predict(net: VisionNet, pixels: np.ndarray, batch: int = 256) -> np.ndarray:
    """Predicted tile codes uint8 [n, side, side] of windows [n, S, S, 3]."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(pixels), batch):
            out.append(net(torch.from_numpy(pixels[i:i + batch])).argmax(1).numpy().astype(np.uint8))
    return np.concatenate(out) if out else np.zeros((0,), np.uint8)


def evaluate(net: VisionNet, windows: WindowSet) -> dict[str, Any]:
    """Per-cell accuracy overall and per condition, and recall per class, on labelled windows."""
    net.eval()
    pred = predict(net, windows.pixels)
    right = pred == windows.labels
    report: dict[str, Any] = {"cells": int(right.size), "accuracy": float(right.mean())}
    for c, name in enumerate(CONDITIONS):
        keep = windows.condition == c
        if keep.any():
            report[f"accuracy_{name}"] = float(right[keep].mean())
    recall = {}
    for code in range(NUM_CLASSES):
        mask = windows.labels == code
        if mask.any():
            recall[Tile(code).name.lower()] = round(float(right[mask].mean()), 5)
    report["recall"] = recall
    return report


def class_weights(labels: np.ndarray) -> torch.Tensor:
    """Inverse square-root frequency per class, mean 1 over the classes present."""
    counts = np.bincount(labels.ravel(), minlength=NUM_CLASSES).astype(np.float64)
    weights = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(counts, 1.0)), 0.0)
    weights *= (counts > 0).sum() / weights.sum()
    return torch.tensor(weights, dtype=torch.float32)


def train(config: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Train, evaluate on held-out windows, write vision.pt and metrics.json into the run folder."""
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    # --- data: render the frames -------------------------------------------------------------
    train_set = make_windows(range(config.worlds), frames_per_world=config.frames_per_world,
                             windows_per_frame=config.windows_per_frame)
    test_set = heldout_windows(config.heldout_worlds, config.frames_per_world, config.windows_per_frame)
    render_s = time.perf_counter() - started
    log.info("rendered %d training and %d held-out windows in %.1f s", len(train_set), len(test_set),
             render_s)

    # --- optimise ----------------------------------------------------------------------------
    net = VisionNet(width=config.width)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    steps = config.epochs * math.ceil(len(train_set) / config.batch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    weights = class_weights(train_set.labels)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc="vision", unit="step")
    loss_value = float("nan")
    for _ in range(config.epochs):
        net.train()
        order = rng.permutation(len(train_set))
        for i in range(0, len(order), config.batch):
            idx = np.sort(order[i:i + config.batch])
            x = torch.from_numpy(train_set.pixels[idx])
            y = torch.from_numpy(train_set.labels[idx]).long()
            loss = F.cross_entropy(net(x), y, weight=weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_value = loss.item()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.4f}")
    if bar is not None:
        bar.close()
    train_s = time.perf_counter() - started - render_s

    # --- evaluate and write ------------------------------------------------------------------
    path = save_weights(net, run_dir / "vision.pt")
    from organs.vision.model import load_weights

    report = evaluate(load_weights(path), test_set)  # what ships is float16: measure that
    metrics = {
        "heldout": report,
        "train_windows": len(train_set),
        "heldout_windows": len(test_set),
        "final_loss": loss_value,
        "render_s": round(render_s, 2),
        "train_s": round(train_s, 2),
        "threads": config.threads,
        "weights": str(path),
        "weights_bytes": path.stat().st_size,
        "config": asdict(config),
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics
