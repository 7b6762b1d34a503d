"""The vision organ: a small CNN that names what is drawn in every cell of a window of the rendered world.

It reads pixels, not the tile grid: a ``15 x 15``-cell window (wider than any NPC's view) of the grid
as the viewer draws it (``organs.vision.frames.render``: tile shapes, night, fog, rain, NPCs), and
answers a tile code per cell (food, water, fire, charger, key, door, lock, wall, NPC, empty ground).

- ``frames``: rendering and labelled windows (labels from the tile grid);
- ``model``: the network and its weight file;
- ``detect``: ``Vision.detect``, ``detect_window`` and ``merge_detections`` (into a seen map);
- ``train`` / ``python -m organs.vision train``: training on frames the project renders itself;
- ``organ``: the organ as the organ host loads it (``detect`` verb on ``{env}.organs.vision.detect``);
- ``look``: one NPC's look in the in-process runtime (its window as a ``VisionRequest``, the reply merged
  into its seen map): the cortex planner's use of the organ (``organs.link``, ``cortex.vision_gate``).

Shipped weights: ``organs/vision/weights/vision.pt``, 113,829 bytes (float16), made by ``python -m
organs.vision train --run-dir runs/vision`` with the defaults of ``TrainConfig`` (48 worlds x 4 frames x
6 windows x 6 skies = 6,912 windows, 8 epochs, seed 0, 1 torch thread: 142 s of training after 5 s
of rendering on a shared 2-core machine). On the 1,728 held-out windows (12 unseen worlds) it names
99.994 % of cells right, 99.99 % in each of clear, night, fog, rain and their night mixes; the lowest
class recalls are door 99.3 % and NPC 99.5 %. The renderer is deterministic, so this is a reading
task, not a perception one in the wild: it says the organ reads the world's own pictures faithfully.
"""

from pathlib import Path

#: The weights that ship with the package.
SHIPPED_WEIGHTS = Path(__file__).parent / "weights" / "vision.pt"
