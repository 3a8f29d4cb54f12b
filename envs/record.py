"""Write rendered frames to a GIF or MP4 file.

    frames = [renderer.render(engine.frame(0)) for _ in range(...)]   # uint8 [H, W, 3] each
    save_video(frames, "videos/match.gif", fps=20)

GIF is written by Pillow (imageio's GIF backend) with one shared palette and loops forever.
MP4 needs the optional ``imageio-ffmpeg`` package (``pip install imageio-ffmpeg``, or the ``video``
extra).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

VIDEO_EXTENSIONS = (".gif", ".mp4")
FFMPEG_HINT = "pip install imageio-ffmpeg  (or: pip install 'marl-grpo[video]')"


def _as_frames(frames: Iterable[np.ndarray]) -> list[np.ndarray]:
    """Check and stack-ready the frames: each uint8 [H, W, 3], all the same size."""
    out = []
    for index, frame in enumerate(frames):
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame {index} has shape {frame.shape}, expected [H, W, 3] (RGB)")
        if frame.dtype != np.uint8:
            raise ValueError(f"frame {index} has dtype {frame.dtype}, expected uint8")
        if out and frame.shape != out[0].shape:
            raise ValueError(f"frame {index} has shape {frame.shape}, but frame 0 has {out[0].shape}")
        out.append(frame)
    if not out:
        raise ValueError("no frames to save")
    return out


def _gif_palette(sample: "Image.Image") -> "Image.Image":
    """A 255-colour palette image: median cut for the large smooth areas (grass), plus octree
    colours so that rare ones (team colours in the score bar) survive. 255, not 256: Pillow needs
    a free index for the transparent "unchanged" pixels of delta frames."""
    from PIL import Image

    parts = [(160, Image.Quantize.MEDIANCUT), (95, Image.Quantize.FASTOCTREE)]
    colours = [np.asarray(sample.quantize(n, method=method).getpalette()[: 3 * n], dtype=np.uint8)
               for n, method in parts]
    palette = Image.new("P", (1, 1))
    palette.putpalette(np.concatenate(colours).tobytes())
    return palette


def _write_gif(frames: list[np.ndarray], path: Path, fps: float) -> None:
    """Write a looping GIF in which every frame uses one shared 255-colour palette.

    A GIF frame holds at most 256 colours. Letting the encoder pick a palette per frame makes the
    grass shimmer from frame to frame and is slow (one quantisation per frame); one palette taken
    from a sample of the frames is steady and fast. The frames go to Pillow already palettised, which is also what imageio's pillow plugin would
    call, minus its per-frame re-quantisation.
    """
    from PIL import Image

    sample_idx = np.linspace(0, len(frames) - 1, num=min(len(frames), 8)).round().astype(int)
    mosaic = np.concatenate([frames[i] for i in sample_idx], axis=0)
    palette = _gif_palette(Image.fromarray(mosaic))
    images = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    # duration is per frame in ms (GIF stores 1/100 s); loop=0 means forever. Pillow folds
    # identical consecutive frames into one longer frame, which keeps the timing.
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(10, round(1000.0 / fps)), loop=0)


def _check_path(path: str | os.PathLike) -> Path:
    """Fail fast on an unknown extension, or on .mp4 without imageio-ffmpeg."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in VIDEO_EXTENSIONS:
        raise ValueError(
            f"cannot write {path.name!r}: unknown video extension {ext!r}, expected one of {VIDEO_EXTENSIONS}"
        )
    if ext == ".mp4" and importlib.util.find_spec("imageio_ffmpeg") is None:
        raise ImportError(f"writing .mp4 needs the imageio-ffmpeg package: {FFMPEG_HINT}")
    return path


def save_video(frames: Iterable[np.ndarray], path: str | os.PathLike, fps: float = 20) -> Path:
    """Write `frames` (each uint8 [H, W, 3]) to `path` as ``.gif`` or ``.mp4``; returns the path.

    Raises ValueError for an unknown extension, no frames or malformed frames, and ImportError
    for ``.mp4`` without imageio-ffmpeg. Parent folders are created.
    """
    path = _check_path(path)
    if not fps > 0:
        raise ValueError(f"fps={fps!r} is invalid: expected a value > 0")
    frames = _as_frames(frames)
    path.parent.mkdir(parents=True, exist_ok=True)

    if path.suffix.lower() == ".gif":
        _write_gif(frames, path, fps)
        return path

    import imageio.v2 as imageio

    # H.264 in yuv420p (what browsers and players accept) needs even sizes: pad by one pixel.
    height, width = frames[0].shape[:2]
    pad = ((0, height % 2), (0, width % 2), (0, 0))
    writer = imageio.get_writer(path, format="FFMPEG", mode="I", fps=fps, codec="libx264",
                                pixelformat="yuv420p", quality=8, macro_block_size=1,
                                ffmpeg_log_level="error")
    try:
        for frame in frames:
            writer.append_data(np.pad(frame, pad, mode="edge") if any(p[1] for p in pad) else frame)
    finally:
        writer.close()
    return path


class VideoRecorder:
    """Collects frames and writes them with `save_video` on `close` (or leaving a ``with`` block).

        with VideoRecorder("videos/match.mp4", fps=20) as rec:
            for ...:
                rec.append(env.render())

    The extension (and, for .mp4, imageio-ffmpeg) is checked up front, so a bad path fails before
    a match is played rather than after.
    """

    def __init__(self, path: str | os.PathLike, fps: float = 20) -> None:
        self.path = _check_path(path)
        if not fps > 0:
            raise ValueError(f"fps={fps!r} is invalid: expected a value > 0")
        self.fps = fps
        self.frames: list[np.ndarray] = []
        self.closed = False

    def append(self, frame: np.ndarray) -> None:
        """Add one uint8 [H, W, 3] frame (a copy is kept)."""
        if self.closed:
            raise RuntimeError(f"VideoRecorder for {self.path} is closed")
        self.frames.append(_as_frames([frame])[0].copy())

    def __len__(self) -> int:
        return len(self.frames)

    def close(self) -> Path | None:
        """Write the video (if any frames were added) and return its path; idempotent."""
        if self.closed:
            return None
        self.closed = True
        if not self.frames:
            return None
        path = save_video(self.frames, self.path, fps=self.fps)
        self.frames = []
        return path

    def __enter__(self) -> "VideoRecorder":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        # Keep what was recorded even if the match loop crashed: it is often what you want to see.
        self.close()


__all__ = ["VIDEO_EXTENSIONS", "VideoRecorder", "save_video"]
