"""Make the example media that examples/posts.csv points at (all generated here, so no licence questions).

    python examples/make_examples.py [--force]

Writes examples/media/: photos in several formats (one portrait JPEG stored sideways with an EXIF
rotation, an RGBA PNG, a WebP), an animated GIF, a 4-second mp4 with two scenes and an audio track,
thumbnails, and one deliberately truncated JPEG that the run must report, not crash on.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

from captionkit.media.generate import write_animated_gif, write_image, write_video

MEDIA = Path(__file__).resolve().parent / "media"


def make(force: bool = False) -> Path:
    if (MEDIA / ".complete").exists() and not force:
        print(f"example media already in {MEDIA} (use --force to remake)")
        return MEDIA
    MEDIA.mkdir(parents=True, exist_ok=True)
    write_image(MEDIA / "beach.jpg", size=(640, 400), seed=1, text="SUMMER LINE")
    _sideways_with_exif(write_image(MEDIA / "city_upright.png", size=(360, 540), seed=2), MEDIA / "city.jpg")
    write_image(MEDIA / "look_a.png", size=(320, 320), seed=3, mode="RGBA")
    write_image(MEDIA / "look_b.webp", size=(320, 400), seed=4, fmt="WEBP")
    write_animated_gif(MEDIA / "loop.gif", n_frames=8, size=(200, 200), duration_ms=120)
    write_video(MEDIA / "clip.mp4", seconds=4.0, fps=12, size=(320, 240), with_audio=True, scenes=2)
    write_image(MEDIA / "loop_thumb.jpg", size=(200, 200), seed=5)
    write_image(MEDIA / "clip_thumb.jpg", size=(320, 240), seed=6)
    good = (MEDIA / "beach.jpg").read_bytes()
    (MEDIA / "broken.jpg").write_bytes(good[: len(good) // 3])  # a cut-off download
    (MEDIA / "city_upright.png").unlink()
    (MEDIA / ".complete").touch()
    print(f"wrote example media to {MEDIA}")
    return MEDIA


def _sideways_with_exif(upright: Path, out: Path) -> None:
    """Store the picture rotated, with EXIF orientation 6 telling viewers to turn it back (as phones do)."""
    with Image.open(upright) as im:
        exif = Image.Exif()
        exif[0x0112] = 6  # Orientation: rotate 90 CW to display
        im.convert("RGB").transpose(Image.Transpose.ROTATE_90).save(out, "JPEG", quality=90, exif=exif.tobytes())


if __name__ == "__main__":
    make(force="--force" in sys.argv)
