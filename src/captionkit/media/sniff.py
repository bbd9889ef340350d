"""Tell what a media file is from its first bytes, never from its name.

:func:`sniff` returns ``(kind, format)``. The rule for ``kind`` is *how the file must be decoded*,
decided from magic bytes alone:

* ``"image"``: a still picture decoded once by Pillow (JPEG, PNG, still WebP, BMP, TIFF, HEIF,
  AVIF, PPM). Multi-page TIFFs are stills too: the first page is the picture.
* ``"gif"``: an *animation container* whose frames are walked by Pillow: every GIF (even a
  one-frame GIF), a WebP whose VP8X header sets the animation flag, and a PNG with an ``acTL``
  chunk (APNG). Whether it really moves is reported later as ``MediaInfo.animated``.
* ``"video"``: anything decoded by FFmpeg through PyAV (MP4, MOV, Matroska, WebM, AVI, MPEG-TS,
  MPEG-PS, FLV, Ogg, ASF/WMV).

``format`` is the Pillow format name for images (``"JPEG"``, ``"PNG"``, ``"GIF"``, ``"WEBP"``,
``"BMP"``, ``"TIFF"``, ``"HEIF"``, ``"AVIF"``, ``"PPM"``) and a short container name for videos
(``"mp4"``, ``"mov"``, ``"webm"``, ``"matroska"``, ``"avi"``, ``"mpegts"``, ``"mpeg"``, ``"flv"``,
``"ogg"``, ``"asf"``).
"""

from __future__ import annotations

import struct
from pathlib import Path

from captionkit.errors import MediaError

HEAD_BYTES = 4096  # enough for every signature below, including PNG chunks up to acTL and EBML DocType

# ISO-BMFF brands (ftyp) that mean a still image, not a movie.
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_GENERIC_IMAGE_BRANDS = frozenset({b"mif1", b"msf1", b"miaf"})
# Top-level QuickTime atoms that can open a file without an ftyp box (old .mov files).
_QT_ATOMS = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot", b"junk"})

_TS_PACKET = 188


def check_file(path: str | Path) -> int:
    """The size of ``path``, or a :class:`MediaError` saying why it cannot be a media file (missing, a
    folder, unreadable, empty)."""
    path = Path(path)
    name = str(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise MediaError(f"file not found: {name}") from None
    except OSError as exc:
        raise MediaError(f"cannot read {name}: {exc.strerror or exc}") from None
    if path.is_dir():
        raise MediaError(f"not a file: {name}")
    if size == 0:
        raise MediaError(f"empty file: {name}")
    return size


def sniff(path: str | Path) -> tuple[str, str]:
    """Return ``(kind, format)`` of the file at ``path`` from its magic bytes.

    Raises :class:`MediaError` for a missing or empty file and for unknown content.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(HEAD_BYTES)
    except FileNotFoundError:
        raise MediaError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise MediaError(f"not a file: {path}") from None
    except OSError as exc:
        raise MediaError(f"cannot read {path}: {exc.strerror or exc}") from None
    return sniff_bytes(head, name=str(path))


def sniff_bytes(head: bytes, name: str = "<bytes>") -> tuple[str, str]:
    """Like :func:`sniff` for the first bytes of a file (at least 64, ideally :data:`HEAD_BYTES`).

    ``name`` is only used in error messages.
    """
    if not head:
        raise MediaError(f"empty file: {name}")
    found = _match(head)
    if found is None:
        raise MediaError(f"unknown or unsupported format: {name} (starts with {_describe(head)})")
    return found


def _match(head: bytes) -> tuple[str, str] | None:
    """The first signature that matches, most specific checks first."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return ("gif", "PNG") if _png_is_animated(head) else ("image", "PNG")
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif", "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ("gif", "WEBP") if _webp_is_animated(head) else ("image", "WEBP")
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
        return "video", "avi"
    if head.startswith(b"BM") and len(head) >= 26 and _bmp_header_ok(head):
        return "image", "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "image", "TIFF"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        # The EBML header names its DocType near the start: "webm" or "matroska".
        return ("video", "webm") if b"webm" in head[:64] else ("video", "matroska")
    if head[4:8] == b"ftyp":
        return _match_ftyp(head)
    if head[4:8] in _QT_ATOMS:
        return "video", "mov"
    if _looks_like_ts(head):
        return "video", "mpegts"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "video", "mpeg"
    if head.startswith(b"FLV\x01"):
        return "video", "flv"
    if head.startswith(b"OggS"):
        return "video", "ogg"  # may hold audio only; the video decoder then says so
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "video", "asf"
    if head[:1] == b"P" and head[1:2] in (b"1", b"2", b"3", b"4", b"5", b"6") and head[2:3].isspace():
        return "image", "PPM"
    return None


def _match_ftyp(head: bytes) -> tuple[str, str]:
    """ISO-BMFF: the major brand and compatible brands tell HEIF/AVIF stills from movies."""
    size = struct.unpack(">I", head[:4])[0]
    major = head[8:12]
    compatible = {head[i : i + 4] for i in range(16, min(size, len(head)) - 3, 4)}
    brands = {major} | compatible
    if major in _AVIF_BRANDS or (major in _GENERIC_IMAGE_BRANDS and brands & _AVIF_BRANDS):
        return "image", "AVIF"
    if major in _HEIF_BRANDS or major in _GENERIC_IMAGE_BRANDS:
        return "image", "HEIF"
    if major == b"qt  ":
        return "video", "mov"
    # isom, iso2..6, mp41, mp42, avc1, M4V, 3gp*, dash, f4v...: FFmpeg's mov demuxer reads them all.
    return "video", "mp4"


def _png_is_animated(head: bytes) -> bool:
    """An APNG has an acTL chunk before the first IDAT."""
    pos = 8
    while pos + 8 <= len(head):
        length, ctype = struct.unpack(">I4s", head[pos : pos + 8])
        if ctype == b"acTL":
            return True
        if ctype == b"IDAT":
            return False
        pos += 12 + length
    return False


def _webp_is_animated(head: bytes) -> bool:
    """Extended WebP (VP8X chunk) carries an animation flag (bit 1 of the flags byte)."""
    return head[12:16] == b"VP8X" and len(head) > 20 and bool(head[20] & 0x02)


def _bmp_header_ok(head: bytes) -> bool:
    """'BM' is a short signature: also require a known DIB header size, so text starting "BM" fails."""
    dib_size = struct.unpack("<I", head[14:18])[0]
    return dib_size in (12, 40, 52, 56, 64, 108, 124)


def _looks_like_ts(head: bytes) -> bool:
    """MPEG-TS: a 0x47 sync byte every 188 bytes (M2TS/Blu-ray: every 192, after a 4-byte prefix)."""
    for start, step in ((0, _TS_PACKET), (4, _TS_PACKET + 4)):
        positions = range(start, len(head), step)
        if len(positions) >= 3 and all(head[p] == 0x47 for p in list(positions)[:8]):
            return True
    return False


def _describe(head: bytes) -> str:
    """A short, printable description of the first bytes, with a hint when it is really text."""
    first = head[:16]
    hexed = " ".join(f"{b:02x}" for b in first)
    text = head[:64].decode("utf-8", errors="replace").rstrip("\ufffd")  # a cut multi-byte char is fine
    if "\ufffd" in text or not all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return hexed
    snippet = " ".join(text.split())[:32]
    hint = "an HTML page" if snippet.lower().startswith(("<!doctype html", "<html")) else "text"
    return f"{hexed}; looks like {hint}: {snippet!r}"
