"""One entry point from a media file to frames: sniff the content, then dispatch to the decoder."""

from __future__ import annotations

from pathlib import Path

from captionkit.media.image import image_frames, load_still
from captionkit.media.sniff import sniff
from captionkit.media.types import Frame, FramePolicy, ImageLimits, LoadedMedia
from captionkit.media.video import sample_video_frames


def load_media(
    path: str | Path, policy: FramePolicy | None = None, limits: ImageLimits | None = None
) -> LoadedMedia:
    """Decode ``path`` into a :class:`LoadedMedia`.

    A still image gives one frame at t=0; GIF / animated WebP / APNG give the frames ``policy``
    picks (see :func:`~captionkit.media.image.image_frames`); videos are sampled by seeking (see
    :func:`~captionkit.media.video.sample_video_frames`). Raises
    :class:`~captionkit.errors.MediaError` for anything unreadable or refused by ``limits``.
    """
    path = Path(path)
    kind, _fmt = sniff(path)
    if kind == "video":
        info, frames = sample_video_frames(path, policy, limits)
    elif kind == "gif":
        info, frames = image_frames(path, policy, limits)
    else:
        info, image = load_still(path, limits)
        frames = [Frame(image=image, time=0.0, index=0)]
    return LoadedMedia(path=path, info=info, frames=frames)
