"""Videos: probing, seek-based sampling (uniform, interval, scene), fallbacks and bad files.

Every video is made here with :func:`write_video`; each frame carries its frame number in a strip
of black/white blocks, so the tests check that the frame returned for a time is the right one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from captionkit.errors import MediaError
from captionkit.media import video as video_module
from captionkit.media.generate import read_frame_index, write_video
from captionkit.media.loader import load_media
from captionkit.media.types import FramePolicy, ImageLimits
from captionkit.media.video import DecodeStats, probe_video, sample_video_frames

FPS = 12
SECONDS = 3.0
FRAMES = int(FPS * SECONDS)

# name -> (suffix, codec, expected format, expected codec name)
VARIANTS = {
    "mp4": (".mp4", "libx264", "mp4", "h264"),
    "mov": (".mov", "libx264", "mov", "h264"),
    "webm": (".webm", "libvpx-vp9", "webm", "vp9"),
    "mkv": (".mkv", "libx264", "matroska", "h264"),
    "mp4-mpeg4": (".mp4", "mpeg4", "mp4", "mpeg4"),
}


def assert_media_error(excinfo: pytest.ExceptionInfo, path: Path, *reasons: str) -> None:
    assert isinstance(excinfo.value, MediaError)
    message = str(excinfo.value)
    assert path.name in message, message
    assert "\n" not in message
    for reason in reasons:
        assert reason in message, message


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    """3 s, 12 fps, three 1 s scenes (cuts at 1 s and 2 s), with audio, in every container."""
    folder = tmp_path_factory.mktemp("videos")
    return {
        name: write_video(folder / f"{name}{suffix}", seconds=SECONDS, fps=FPS, codec=codec, scenes=3)
        for name, (suffix, codec, _, _) in VARIANTS.items()
    }


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    """60 s at 10 fps (600 frames), a keyframe every second, three 20 s scenes."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    return write_video(path, seconds=60, fps=10, size=(64, 48), gop=10, scenes=3, with_audio=False)


@pytest.fixture(params=list(VARIANTS))
def variant(request, videos) -> tuple[str, Path]:
    return request.param, videos[request.param]


def check_frames_match_times(frames, fps: float, duration: float) -> None:
    """Times increase, lie inside the video, and the picture is the frame shown at that time."""
    times = [f.time for f in frames]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert all(0.0 <= t <= duration for t in times)
    for frame in frames:
        assert frame.image.mode == "RGB"
        assert read_frame_index(frame.image) == round(frame.time * fps)


# --------------------------------------------------------------------------------------------
# Probing


def test_probe(variant):
    name, path = variant
    _, _, fmt, codec = VARIANTS[name]
    info = probe_video(path)
    assert (info.kind, info.format, info.codec) == ("video", fmt, codec)
    assert (info.width, info.height) == (160, 120)
    assert info.duration == pytest.approx(SECONDS, abs=0.1)
    assert info.fps == pytest.approx(FPS)
    assert info.frame_count == FRAMES
    assert info.has_audio is True
    assert info.bytes == path.stat().st_size
    assert info.mode == "yuv420p"


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_has_audio_false(tmp_path, suffix):
    path = write_video(tmp_path / f"silent{suffix}", seconds=1.0, with_audio=False)
    assert probe_video(path).has_audio is False


# --------------------------------------------------------------------------------------------
# Sampling


def test_uniform(variant):
    _, path = variant
    info, frames = sample_video_frames(path, FramePolicy(mode="uniform", n=6))
    assert len(frames) == 6
    check_frames_match_times(frames, FPS, info.duration)
    # centres of six 0.5 s slices: 0.25, 0.75, ... 2.75 s (the next frame at or after each)
    for k, frame in enumerate(frames):
        assert (k + 0.5) * 0.5 <= frame.time < (k + 0.5) * 0.5 + 1 / FPS


def test_interval(variant):
    _, path = variant
    info, frames = sample_video_frames(path, FramePolicy(mode="interval", every=0.5))
    assert [round(f.time * FPS) for f in frames] == [0, 6, 12, 18, 24, 30]
    check_frames_match_times(frames, FPS, info.duration)


def test_scene_detection_finds_the_cuts(variant):
    _, path = variant
    stats = DecodeStats()
    _, frames = sample_video_frames(path, FramePolicy(mode="scene"), stats=stats)
    assert [round(f.time * FPS) for f in frames] == [0, 12, 24]
    assert stats.decoded <= 6  # keyframes only (three here), not 36 frames


def test_max_frames_caps_uniform_and_interval(videos):
    _, frames = sample_video_frames(videos["mp4"], FramePolicy(mode="uniform", n=20, max_frames=5))
    assert len(frames) == 5
    _, frames = sample_video_frames(videos["mp4"], FramePolicy(mode="interval", every=0.1, max_frames=4))
    # frames every 1/12 s: the first at or after 0, .1, .2 and .3 s are frames 0, 2, 3 and 4
    assert [round(f.time * FPS) for f in frames] == [0, 2, 3, 4]


def test_more_frames_asked_than_the_video_has(tmp_path):
    path = write_video(tmp_path / "short.mp4", seconds=0.5, fps=8, with_audio=False)  # 4 frames
    info, frames = sample_video_frames(path, FramePolicy(n=10))
    assert 1 <= len(frames) <= 4
    check_frames_match_times(frames, 8, info.duration)


def test_uniform_seeks_instead_of_decoding_everything(long_video):
    stats = DecodeStats()
    info, frames = sample_video_frames(long_video, FramePolicy(mode="uniform", n=8), stats=stats)
    assert info.frame_count == 600
    assert len(frames) == 8
    check_frames_match_times(frames, 10, info.duration)
    assert stats.seeks >= 4
    # at most one GOP (10 frames) per target, far from the 600 a linear pass would decode
    assert stats.decoded <= 8 * 11 < info.frame_count / 4


def test_scene_on_a_long_video_decodes_keyframes_only(long_video):
    stats = DecodeStats()
    _, frames = sample_video_frames(long_video, FramePolicy(mode="scene"), stats=stats)
    assert [round(f.time) for f in frames] == [0, 20, 40]
    assert stats.decoded <= 61  # one keyframe a second


def test_linear_fallback_when_seeking_fails(videos, monkeypatch):
    def broken_seek(self, target):
        raise video_module._SeekFailed("test: no seeking")

    monkeypatch.setattr(video_module._Decoder, "seek", broken_seek)
    stats = DecodeStats()
    info, frames = sample_video_frames(videos["mkv"], FramePolicy(mode="uniform", n=6), stats=stats)
    assert stats.linear_fallback
    assert len(frames) == 6
    check_frames_match_times(frames, FPS, info.duration)


def test_decode_budget_stops_early(videos):
    stats = DecodeStats()
    _, frames = sample_video_frames(
        videos["mp4"], FramePolicy(mode="uniform", n=6), ImageLimits(max_frames_decoded=8), stats=stats
    )
    assert stats.decoded <= 8
    assert 1 <= len(frames) < 6


def test_display_rotation_is_applied(tmp_path):
    path = write_video(tmp_path / "portrait.mp4", seconds=0.5, rotation=90, with_audio=False)
    info, frames = sample_video_frames(path, FramePolicy(n=1))
    assert frames[0].image.size == (120, 160)
    assert (info.width, info.height) == (120, 160)
    # Rotated a quarter turn counter-clockwise: the frame-number strip (bottom, black for small
    # frame numbers) is now the right edge, the red scene colour the left edge.
    image = frames[0].image
    assert sum(image.getpixel((118, 80))) < 150
    red, green, blue = image.getpixel((2, 80))
    assert red > 150 and green < 80 and blue < 80


def test_load_media_samples_videos(videos):
    loaded = load_media(videos["webm"], FramePolicy(n=3))
    assert loaded.info.kind == "video" and loaded.info.format == "webm"
    assert len(loaded.frames) == 3
    assert loaded.path == videos["webm"]


# --------------------------------------------------------------------------------------------
# Limits and bad files


def test_absurd_size_refused(videos):
    path = videos["mp4"]
    with pytest.raises(MediaError) as excinfo:
        sample_video_frames(path, limits=ImageLimits(max_pixels=10_000))
    assert_media_error(excinfo, path, "video too large", "160x120", "10,000")


def test_too_long_refused(videos):
    path = videos["mkv"]
    with pytest.raises(MediaError) as excinfo:
        probe_video(path, ImageLimits(max_video_seconds=1))
    assert_media_error(excinfo, path, "video too long", "1 s")


def test_zero_byte_video(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    for call in (probe_video, sample_video_frames, load_media):
        with pytest.raises(MediaError) as excinfo:
            call(path)
        assert_media_error(excinfo, path, "empty file")


def test_mp4_with_cut_moov_atom(videos, tmp_path):
    data = videos["mp4"].read_bytes()
    moov = data.find(b"moov")
    assert moov > 0
    cut_inside = tmp_path / "cut_moov.mp4"
    cut_inside.write_bytes(data[: moov + 200])  # the moov box declares more than is there
    no_moov = tmp_path / "no_moov.mp4"
    no_moov.write_bytes(data[: moov - 4])  # moov (written last) is gone entirely
    for path in (cut_inside, no_moov):
        with pytest.raises(MediaError) as excinfo:
            sample_video_frames(path)
        assert_media_error(excinfo, path, "cannot read video", "moov")


def test_corrupt_moov_box(videos, tmp_path):
    data = bytearray(videos["mp4"].read_bytes())
    moov = data.find(b"moov")
    data[moov + 8 : moov + 400] = bytes(392)  # zero out the movie header and track boxes
    path = tmp_path / "zeroed_moov.mp4"
    path.write_bytes(bytes(data))
    with pytest.raises(MediaError) as excinfo:
        load_media(path)
    assert_media_error(excinfo, path, "video")


def test_damaged_packets_are_skipped_not_fatal(videos, tmp_path):
    data = bytearray(videos["mp4"].read_bytes())
    for i in range(2000, 20000, 7):  # garble a stretch of the media data
        data[i] ^= 0xFF
    path = tmp_path / "garbled.mp4"
    path.write_bytes(bytes(data))
    stats = DecodeStats()
    _, frames = sample_video_frames(path, FramePolicy(n=4), stats=stats)
    assert frames and stats.bad_packets > 0


def test_not_a_video(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("just some text, not a movie\n" * 10)
    with pytest.raises(MediaError) as excinfo:
        probe_video(text)
    assert_media_error(excinfo, text, "unknown or unsupported format")

    from captionkit.media.generate import write_image

    picture = write_image(tmp_path / "picture.png", size=(32, 24))
    with pytest.raises(MediaError) as excinfo:
        sample_video_frames(picture)
    assert_media_error(excinfo, picture, "not a video")


def test_audio_only_file_has_no_video_stream(tmp_path):
    import av
    import numpy as np

    path = tmp_path / "tone.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44_100)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 44_100), np.float32), format="flt", layout="mono")
        frame.sample_rate = 44_100
        frame.pts = 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(MediaError) as excinfo:
        probe_video(path)
    assert_media_error(excinfo, path, "no video stream")
