"""Recording what the viewer shows: a PNG screenshot, or an animated GIF / mp4 of the frames shown.

GIFs are written with Pillow (pygame cannot write them): each captured frame is quantised to a
128-colour palette image at capture time (one byte per pixel, about 0.8 MB per window-sized frame)
and the file is written on close. mp4 pipes raw frames to ``ffmpeg`` when it is on PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pygame


class RecordError(ValueError):
    """A screenshot or recording that cannot be written; the message names the file."""


def save_screenshot(surface: pygame.Surface, path: str | os.PathLike) -> Path:
    """Write the surface as an image (PNG by suffix) and return the path."""
    path = Path(path)
    if not path.parent.is_dir():
        raise RecordError(f"screenshot {path}: folder {path.parent} does not exist")
    try:
        pygame.image.save(surface, str(path))
    except (pygame.error, OSError) as error:
        raise RecordError(f"screenshot {path}: {error}") from None
    return path


class Recorder:
    """Collects frames of a surface and writes them as a GIF or mp4 at `fps` frames per second."""

    def __init__(self, path: str | os.PathLike, fps: float = 10.0) -> None:
        self.path = Path(path)
        self.fps = max(0.5, float(fps))
        self.frames = 0
        self._images: list[Any] = []
        self._ffmpeg: subprocess.Popen[bytes] | None = None
        suffix = self.path.suffix.lower()
        if suffix not in (".gif", ".mp4"):
            raise RecordError(f"record {self.path}: suffix {suffix or '(none)'} is not .gif or .mp4")
        if not self.path.parent.is_dir():
            raise RecordError(f"record {self.path}: folder {self.path.parent} does not exist")
        if suffix == ".gif":
            try:
                import PIL.Image  # noqa: F401  (checked now, not after a long run)
            except ImportError:
                raise RecordError(f"record {self.path}: GIF writing needs Pillow (pip install pillow)") \
                    from None
        elif shutil.which("ffmpeg") is None:
            raise RecordError(f"record {self.path}: mp4 needs ffmpeg on PATH; record a .gif instead")

    def add(self, surface: pygame.Surface) -> None:
        """Capture the surface as the next frame."""
        size = surface.get_size()
        data = pygame.image.tobytes(surface, "RGB")
        if self.path.suffix.lower() == ".gif":
            from PIL import Image

            image = Image.frombytes("RGB", size, data)
            self._images.append(image.quantize(colors=128, method=Image.Quantize.FASTOCTREE))
        else:
            if self._ffmpeg is None:
                self._ffmpeg = subprocess.Popen(
                    ["ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s",
                     f"{size[0]}x{size[1]}", "-r", f"{self.fps:g}", "-i", "-", "-pix_fmt", "yuv420p",
                     str(self.path)], stdin=subprocess.PIPE)
            assert self._ffmpeg.stdin is not None
            self._ffmpeg.stdin.write(data)
        self.frames += 1

    def close(self) -> Path | None:
        """Write the file (None when no frame was captured) and return its path."""
        if self._ffmpeg is not None:
            assert self._ffmpeg.stdin is not None
            self._ffmpeg.stdin.close()
            if self._ffmpeg.wait() != 0:
                raise RecordError(f"record {self.path}: ffmpeg exited with {self._ffmpeg.returncode}")
            return self.path
        if not self._images:
            return None
        first, *rest = self._images
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            first.save(tmp, format="GIF", save_all=True, append_images=rest, loop=0,
                       duration=max(20, round(1000 / self.fps)))
            os.replace(tmp, self.path)
        except OSError as error:
            raise RecordError(f"record {self.path}: {error}") from None
        self._images = []
        return self.path
