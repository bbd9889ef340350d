"""Cleaning checks and the perceptual hash."""

from __future__ import annotations

import random

import pytest
from PIL import Image, ImageFilter

from captionkit.clean import CleanOptions, available_checks, clean
from captionkit.errors import ConfigError
from captionkit.media.generate import write_image
from captionkit.media.hashing import NearDuplicateIndex, hamming, phash
from captionkit.records import Item, MediaRef


def item(i, path, ref="text"):
    return Item(id=str(i), media=[MediaRef(kind="image", url=str(path))], reference=ref)


def test_phash_equals_imagehash(tmp_path):
    imagehash = pytest.importorskip("imagehash")
    for seed in range(8):
        p = write_image(tmp_path / f"{seed}.png", size=(120 + seed * 7, 90), seed=seed)
        with Image.open(p) as im:
            assert phash(im) == int(str(imagehash.phash(im)), 16)


def test_near_duplicates_found_and_distinct_images_kept(tmp_path):
    a = write_image(tmp_path / "a.png", size=(160, 120), seed=3)
    with Image.open(a) as im:  # a resized, slightly blurred, re-encoded copy
        im.resize((140, 105)).filter(ImageFilter.GaussianBlur(0.8)).save(tmp_path / "a2.jpg", quality=70)
    b = write_image(tmp_path / "b.png", size=(160, 120), seed=11)
    kept, report = clean([item(1, a), item(2, tmp_path / "a2.jpg"), item(3, b)], checks=["near_duplicate"])
    assert [k.id for k in kept] == ["1", "3"]
    assert report.flagged[0]["id"] == "2" and "near duplicate of 1" in report.flagged[0]["reason"]


def test_too_small(tmp_path):
    small = write_image(tmp_path / "s.png", size=(40, 30))
    _, report = clean([item(1, small)], checks=["too_small"], options=CleanOptions(min_side=64))
    assert "40x30" in report.flagged[0]["reason"]


def test_index_matches_brute_force():
    rng = random.Random(0)
    hashes = [rng.getrandbits(64) for _ in range(300)]
    # near copies: flip a few bits
    hashes += [h ^ (1 << rng.randrange(64)) ^ (1 << rng.randrange(64)) for h in hashes[:50]]
    index = NearDuplicateIndex(threshold=6)
    for i, h in enumerate(hashes):
        brute = [hamming(h, o) for o in hashes[:i] if hamming(h, o) <= 6]
        hit = index.find(h)
        assert (hit is not None) == bool(brute)
        if hit:
            assert hit[1] == min(brute)
        index.add(h, str(i))


def test_unknown_check_is_named():
    with pytest.raises(ConfigError, match="ocr_text"):
        clean([], checks=["ocr_text"])
    assert {"no_media", "unreadable", "duplicate", "near_duplicate", "too_small", "no_reference"} <= set(available_checks())
