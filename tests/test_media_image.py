"""Still and animated images: sniffing, decoding to RGB, frame sampling, and refusing bad input."""

from __future__ import annotations

import io
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from captionkit.errors import ConfigError, MediaError, MissingExtraError
from captionkit.media.generate import read_frame_index, write_animated_gif, write_image
from captionkit.media.image import image_frames, load_still, open_image
from captionkit.media.loader import load_media
from captionkit.media.sniff import sniff, sniff_bytes
from captionkit.media.types import FramePolicy, ImageLimits, MediaInfo


def solid(path: Path, colour, size=(40, 30), mode="RGB", **save) -> Path:
    Image.new(mode, size, colour).save(path, **save)
    return path


def close_to(pixel, expected, tol=6) -> bool:
    return all(abs(int(a) - int(b)) <= tol for a, b in zip(pixel, expected))


def assert_media_error(excinfo: pytest.ExceptionInfo, path: Path | str, *reasons: str) -> None:
    """The error is ours, names the file, and says why."""
    assert isinstance(excinfo.value, MediaError)
    message = str(excinfo.value)
    assert Path(path).name in message, message
    for reason in reasons:
        assert reason in message, message


# --------------------------------------------------------------------------------------------
# Sniffing


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.jpg", ("image", "JPEG")),
        ("a.png", ("image", "PNG")),
        ("a.webp", ("image", "WEBP")),
        ("a.bmp", ("image", "BMP")),
        ("a.tif", ("image", "TIFF")),
        ("a.gif", ("gif", "GIF")),
        ("a.ppm", ("image", "PPM")),
    ],
)
def test_sniff_still_formats_by_content(tmp_path, name, expected):
    path = write_image(tmp_path / name, size=(32, 24))
    renamed = path.rename(tmp_path / "no_suffix")  # the name must not matter
    assert sniff(renamed) == expected


def test_sniff_animations_are_kind_gif(tmp_path):
    assert sniff(write_animated_gif(tmp_path / "a.webp", n_frames=3)) == ("gif", "WEBP")
    assert sniff(write_animated_gif(tmp_path / "a.png", n_frames=3)) == ("gif", "PNG")  # APNG
    assert sniff(write_animated_gif(tmp_path / "one.gif", n_frames=1)) == ("gif", "GIF")


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", ("image", "HEIF")),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", ("image", "AVIF")),
        (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1avif", ("image", "AVIF")),
        (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41", ("video", "mp4")),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  ", ("video", "mov")),
        (b"\x00\x00\x00\x08wide\x00\x00\x10\x00mdat", ("video", "mov")),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", ("video", "webm")),
        (b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\x82\x88matroska", ("video", "matroska")),
        (b"RIFF\x00\x00\x00\x00AVI LIST", ("video", "avi")),
        (b"\x47" + bytes(187) + b"\x47" + bytes(187) + b"\x47" + bytes(187), ("video", "mpegts")),
    ],
)
def test_sniff_container_signatures(head, expected):
    assert sniff_bytes(head) == expected


def test_sniff_refuses_empty_unknown_and_text(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(MediaError) as excinfo:
        sniff(empty)
    assert_media_error(excinfo, empty, "empty file")

    noise = tmp_path / "noise.png"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 512, dtype=np.uint8).tobytes())
    with pytest.raises(MediaError) as excinfo:
        sniff(noise)
    assert_media_error(excinfo, noise, "unknown or unsupported format", "starts with")

    html = tmp_path / "page.jpg"
    html.write_text("<!DOCTYPE html><html><body>404 Not Found</body></html>")
    with pytest.raises(MediaError) as excinfo:
        sniff(html)
    assert_media_error(excinfo, html, "unknown or unsupported format", "HTML")


# --------------------------------------------------------------------------------------------
# Stills


def test_jpeg_rgb(tmp_path):
    path = solid(tmp_path / "red.jpg", (200, 30, 30), quality=95)
    image = open_image(path)
    assert image.mode == "RGB" and image.size == (40, 30)
    assert close_to(image.getpixel((20, 15)), (200, 30, 30))


def test_jpeg_cmyk_converts_to_rgb(tmp_path):
    path = solid(tmp_path / "cmyk.jpg", (0, 255, 255, 0), mode="CMYK", quality=95)  # pure red ink
    info, image = load_still(path)
    assert info.mode == "CMYK" and info.format == "JPEG"
    assert image.mode == "RGB"
    assert close_to(image.getpixel((20, 15)), (255, 0, 0), tol=10)


def test_jpeg_exif_orientation_6_is_rotated(tmp_path):
    # Stored 60x30 landscape with a red top-left corner; orientation 6 = rotate 90° clockwise to show.
    stored = Image.new("RGB", (60, 30), (30, 60, 200))
    stored.paste((220, 20, 20), (0, 0, 15, 15))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    stored.save(path, exif=exif, quality=95)

    info, image = load_still(path)
    assert image.size == (30, 60) and (info.width, info.height) == (30, 60)
    # After a clockwise quarter turn the stored top-left corner is at the top right.
    assert close_to(image.getpixel((30 - 5, 5)), (220, 20, 20), tol=20)
    assert close_to(image.getpixel((5, 5)), (30, 60, 200), tol=20)


def test_png_16bit_grey_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16).repeat(4, axis=0).repeat(4, axis=1)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")  # really 16-bit on disk

    info, image = load_still(path)
    assert info.mode.startswith("I")
    row = [image.getpixel((x, 0))[0] for x in (0, 4, 8, 12)]
    assert row == [0, 64, 128, 255]  # clipping would give [0, 255, 255, 255]


def test_png_palette_with_transparency_composites_on_white(tmp_path):
    palette_image = Image.new("P", (20, 10), 0)
    palette_image.putpalette([0, 0, 0, 220, 20, 20] + [0, 0, 0] * 254)
    palette_image.paste(1, (10, 0, 20, 10))
    path = tmp_path / "palette.png"
    palette_image.save(path, transparency=0)  # index 0 (black) is transparent

    image = open_image(path)
    assert image.getpixel((2, 5)) == (255, 255, 255)
    assert image.getpixel((15, 5)) == (220, 20, 20)


def test_rgba_png_alpha_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (30, 10), (0, 0, 0, 0))  # transparent black
    rgba.paste((255, 0, 0, 128), (10, 0, 20, 10))  # half-transparent red
    rgba.paste((0, 0, 255, 255), (20, 0, 30, 10))  # opaque blue
    path = tmp_path / "alpha.png"
    rgba.save(path)

    image = open_image(path)
    assert image.getpixel((5, 5)) == (255, 255, 255)
    assert close_to(image.getpixel((15, 5)), (255, 127, 127), tol=2)
    assert image.getpixel((25, 5)) == (0, 0, 255)


@pytest.mark.parametrize("mode", ["LA", "PA", "P", "L", "1", "I;16"])
def test_generated_modes_decode_to_rgb(tmp_path, mode):
    path = write_image(tmp_path / f"m_{mode.replace(';', '')}.png", size=(64, 48), mode=mode)
    _, image = load_still(path)
    assert image.mode == "RGB" and image.size == (64, 48)
    if mode in ("LA", "PA"):  # the transparent border becomes white
        assert image.getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("suffix", [".webp", ".bmp", ".tif", ".ppm"])
def test_lossless_formats_match_png(tmp_path, suffix):
    reference = open_image(write_image(tmp_path / "ref.png", size=(64, 48), seed=3))
    options = {"lossless": True} if suffix == ".webp" else {}
    path = tmp_path / f"same{suffix}"
    reference.save(path, **options)
    image = open_image(path)
    assert image.size == (64, 48)
    assert np.array_equal(np.asarray(image), np.asarray(reference))


def test_webp_lossy_still(tmp_path):
    path = solid(tmp_path / "blue.webp", (30, 70, 230), quality=90)
    info, image = load_still(path)
    assert (info.kind, info.format, info.animated) == ("image", "WEBP", False)
    assert close_to(image.getpixel((20, 15)), (30, 70, 230), tol=8)


def test_heic_decodes_when_pillow_heif_can_encode(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif", reason="pillow-heif not installed")
    if not pillow_heif.libheif_info().get("HEIF"):
        pytest.skip("this libheif build has no HEIF encoder")
    path = write_image(tmp_path / "x.heic", size=(64, 48), seed=2)
    info, image = load_still(path)
    assert (info.format, image.mode, image.size) == ("HEIF", "RGB", (64, 48))
    reference = open_image(write_image(tmp_path / "x.png", size=(64, 48), seed=2))
    diff = np.abs(np.asarray(image, dtype=int) - np.asarray(reference, dtype=int)).mean()
    assert diff < 12  # lossy, but the same picture


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow has no AVIF codec")
def test_avif_decodes(tmp_path):
    path = solid(tmp_path / "x.avif", (40, 160, 50), size=(64, 48), quality=90)
    info, image = load_still(path)
    assert info.format == "AVIF"
    assert close_to(image.getpixel((32, 24)), (40, 160, 50), tol=10)


def test_heic_without_pillow_heif_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "photo.heic"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # makes the import fail
    with pytest.raises(MissingExtraError, match=r"captionkit\[heif\]"):
        open_image(path)


def test_bytes_and_file_objects_are_accepted(tmp_path):
    path = write_image(tmp_path / "a.png", size=(32, 24))
    data = path.read_bytes()
    assert open_image(data).size == (32, 24)
    with path.open("rb") as fh:
        assert open_image(fh).size == (32, 24)
        assert not fh.closed  # the caller's file stays theirs
    assert open_image(io.BytesIO(data)).size == (32, 24)


def test_first_frame_of_gif_as_still(tmp_path):
    path = write_animated_gif(tmp_path / "a.gif", n_frames=4)
    info, image = load_still(path)
    assert (info.kind, info.animated) == ("gif", True)
    assert read_frame_index(image) == 0


# --------------------------------------------------------------------------------------------
# Animations


@pytest.fixture(scope="module", params=[".gif", ".webp", ".png"])
def animation(request, tmp_path_factory) -> Path:
    """12 frames of 100 ms in three scenes (frames 0-3, 4-7, 8-11)."""
    return write_animated_gif(tmp_path_factory.mktemp("anim") / f"anim{request.param}", n_frames=12, scenes=3)


def frame_ids(frames) -> list[tuple[int, int, float]]:
    return [(f.index, read_frame_index(f.image), round(f.time, 3)) for f in frames]


def test_animation_info(animation):
    info, _ = image_frames(animation)
    assert info.kind == "gif" and info.animated
    assert info.frame_count == 12
    assert info.duration == pytest.approx(1.2)
    assert info.fps == pytest.approx(10.0)
    assert (info.width, info.height) == (96, 72)


def test_animation_uniform(animation):
    _, frames = image_frames(animation, FramePolicy(mode="uniform", n=4))
    # centres of four slices of twelve frames; the drawn frame number matches the index and time
    assert frame_ids(frames) == [(1, 1, 0.1), (4, 4, 0.4), (7, 7, 0.7), (10, 10, 1.0)]
    assert all(f.image.mode == "RGB" for f in frames)


def test_animation_interval(animation):
    _, frames = image_frames(animation, FramePolicy(mode="interval", every=0.3))
    assert frame_ids(frames) == [(0, 0, 0.0), (3, 3, 0.3), (6, 6, 0.6), (9, 9, 0.9)]


def test_animation_scene(animation):
    _, frames = image_frames(animation, FramePolicy(mode="scene"))
    assert [f.index for f in frames] == [0, 4, 8]


def test_animation_max_frames_caps_every_mode(animation):
    for mode in ("uniform", "interval", "scene"):
        _, frames = image_frames(animation, FramePolicy(mode=mode, n=10, every=0.1, max_frames=2))
        assert len(frames) == 2


def test_gif_variable_durations_give_frame_times(tmp_path):
    # 0 ms shows for 100 ms in browsers, so the fourth frame starts at 0.45 s.
    path = write_animated_gif(tmp_path / "v.gif", n_frames=4, duration_ms=[100, 300, 50, 0])
    info, frames = image_frames(path, FramePolicy(mode="uniform", n=4))
    assert [round(f.time, 3) for f in frames] == [0.0, 0.1, 0.4, 0.45]
    assert info.duration == pytest.approx(0.55)


def test_gif_with_one_frame(tmp_path):
    path = write_animated_gif(tmp_path / "one.gif", n_frames=1)
    info, frames = image_frames(path, FramePolicy(mode="uniform", n=8))
    assert (info.frame_count, info.duration, info.fps, info.animated) == (1, None, None, False)
    assert len(frames) == 1 and frames[0].time == 0.0 and frames[0].index == 0
    loaded = load_media(path)
    assert loaded.info.kind == "gif" and len(loaded.frames) == 1


def test_load_media_dispatches_stills_and_animations(tmp_path):
    still = load_media(write_image(tmp_path / "a.jpg", size=(64, 48)))
    assert still.info.kind == "image" and len(still.frames) == 1 and still.frames[0].time == 0.0
    animated = load_media(write_animated_gif(tmp_path / "a.webp", n_frames=6), FramePolicy(n=3))
    assert animated.info.kind == "gif" and len(animated.frames) == 3


# --------------------------------------------------------------------------------------------
# Bad input


def test_truncated_jpeg(tmp_path):
    full = write_image(tmp_path / "full.jpg", size=(320, 240), seed=5)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(MediaError) as excinfo:
        open_image(cut)
    assert_media_error(excinfo, cut, "truncated or corrupt image")


def test_truncated_png(tmp_path):
    full = write_image(tmp_path / "full.png", size=(320, 240), seed=5)
    cut = tmp_path / "cut.png"
    cut.write_bytes(full.read_bytes()[:200])
    with pytest.raises(MediaError) as excinfo:
        load_media(cut)
    assert_media_error(excinfo, cut, "truncated or corrupt image")


def test_truncated_gif(tmp_path):
    full = write_animated_gif(tmp_path / "full.gif", n_frames=6)
    cut = tmp_path / "cut.gif"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(MediaError) as excinfo:
        image_frames(cut, FramePolicy(mode="scene"))
    assert_media_error(excinfo, cut, "truncated or corrupt image")


def test_zero_byte_file(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for call in (open_image, load_media):
        with pytest.raises(MediaError) as excinfo:
            call(empty)
        assert_media_error(excinfo, empty, "empty file")


def test_missing_file(tmp_path):
    with pytest.raises(MediaError) as excinfo:
        open_image(tmp_path / "nowhere.jpg")
    assert_media_error(excinfo, "nowhere.jpg", "file not found")


def test_unknown_formats(tmp_path):
    noise = tmp_path / "noise.jpg"
    noise.write_bytes(np.random.default_rng(1).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    text = tmp_path / "notes.png"
    text.write_text("these are not pixels\n" * 20)
    for path in (noise, text):
        with pytest.raises(MediaError) as excinfo:
            load_media(path)
        assert_media_error(excinfo, path, "unknown or unsupported format")


def png_with_declared_size(path: Path, width: int, height: int) -> Path:
    """A tiny valid PNG whose IHDR then claims ``width`` x ``height`` (CRC fixed up)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1), 0).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = bytearray(data[12:29])  # type + 13 bytes of data
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def test_decompression_bomb_refused_before_decoding(tmp_path):
    bomb = png_with_declared_size(tmp_path / "bomb.png", 50_000, 50_000)
    with pytest.raises(MediaError) as excinfo:
        open_image(bomb, ImageLimits(max_side=100_000))
    assert_media_error(excinfo, bomb, "50000x50000", "100,000,000")
    with pytest.raises(MediaError) as excinfo:
        load_media(bomb)  # default limits: the side limit trips first
    assert_media_error(excinfo, bomb, "50000x50000", "40000")


def test_size_limits_apply_after_header_for_any_format(tmp_path):
    path = write_image(tmp_path / "small.tif", size=(100, 100))
    with pytest.raises(MediaError) as excinfo:
        open_image(path, ImageLimits(max_pixels=5_000))
    assert_media_error(excinfo, path, "100x100", "5,000")
    with pytest.raises(MediaError) as excinfo:
        open_image(path, ImageLimits(max_bytes=1_000))
    assert_media_error(excinfo, path, "file too large", "1,000")


def test_pillow_hard_bomb_limit_is_reported_as_media_error(tmp_path):
    # Above 2 x Image.MAX_IMAGE_PIXELS Pillow refuses in Image.open; TIFF has no header pre-check here.
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="TIFF")
    data = buffer.getvalue()
    image = Image.open(io.BytesIO(data))
    assert image.size == (1, 1)
    path = tmp_path / "huge.tif"
    # ImageWidth/ImageLength tags are SHORT/LONG entries; rewrite their values to 30000 x 30000.
    tags = bytearray(data)
    offset = struct.unpack("<I", tags[4:8])[0]
    count = struct.unpack("<H", tags[offset : offset + 2])[0]
    for i in range(count):
        entry = offset + 2 + 12 * i
        tag, kind = struct.unpack("<HH", tags[entry : entry + 4])
        if tag in (256, 257):
            fmt = "<H" if kind == 3 else "<I"
            struct.pack_into(fmt, tags, entry + 8, 30_000)
    path.write_bytes(bytes(tags))
    with pytest.raises(MediaError) as excinfo:
        open_image(path, ImageLimits(max_pixels=10**10))
    assert_media_error(excinfo, path, "image too large")


def test_video_is_not_an_image(tmp_path):
    from captionkit.media.generate import write_video

    path = write_video(tmp_path / "clip.mp4", seconds=0.5, with_audio=False)
    with pytest.raises(MediaError) as excinfo:
        open_image(path)
    assert_media_error(excinfo, path, "not an image")


# --------------------------------------------------------------------------------------------
# Types


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n": 0}, "n must be >= 1"),
        ({"mode": "random"}, "mode must be"),
        ({"every": 0}, "every must be > 0"),
        ({"threshold": 1.5}, "threshold must be between 0 and 1"),
        ({"max_frames": 0}, "max_frames must be >= 1"),
        ({"n": True}, "n must be >= 1"),
    ],
)
def test_frame_policy_validation(kwargs, field):
    with pytest.raises(ConfigError, match="frame policy: " + field):
        FramePolicy(**kwargs)


def test_image_limits_validation():
    with pytest.raises(ConfigError, match="max_pixels"):
        ImageLimits(max_pixels=0)


def test_media_info_to_dict():
    info = MediaInfo(kind="image", format="PNG", width=3, height=2, mode="RGBA", bytes=10)
    assert info.to_dict() == {
        "kind": "image",
        "format": "PNG",
        "width": 3,
        "height": 2,
        "duration": None,
        "frame_count": None,
        "fps": None,
        "has_audio": False,
        "codec": None,
        "mode": "RGBA",
        "bytes": 10,
        "animated": False,
    }
