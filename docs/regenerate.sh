#!/usr/bin/env bash
# Regenerate the README's pictures with the project's own viewer, headless: run it from the
# repository root with a training checkpoint when the look changes, e.g.
#   docs/regenerate.sh outputs/<run>/checkpoints/latest.pt
set -euo pipefail
checkpoint=${1:?usage: docs/regenerate.sh outputs/<run>/checkpoints/latest.pt}
run=$(dirname "$(dirname "$checkpoint")")
export SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy
# one stage-4 episode (every kind of tile) of the checkpoint's brains, written beside it
python -m train mode=eval checkpoint="$checkpoint" world=stage4 episodes=16 record=true logger.mode=disabled seed=2
python -m train.view --replay "$run/replay_stage4.npz" --frames 40 --screenshot docs/viewer.png
python -m train.view --replay "$run/replay_stage4.npz" --frames 48 --speed 8 --record docs/run.gif
