"""Content hashes for de-duplication: exact (sha256 of bytes) and perceptual (pHash, 64 bits).

``phash`` follows the classic DCT recipe (and equals ``imagehash.phash`` bit for bit, see the tests):
greyscale, 32x32 Lanczos, 2-D DCT-II, keep the 8x8 lowest frequencies, threshold at their median.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from itertools import pairwise
from pathlib import Path

import numpy as np
from PIL import Image


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=4)
def _dct_matrix(n: int) -> np.ndarray:
    # Unnormalised DCT-II as scipy.fftpack.dct computes it: X_k = 2 * sum x_n cos(pi k (2n+1) / 2N)
    k = np.arange(n)[:, None]
    m = np.arange(n)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * m + 1) / (2 * n))


def phash(image: Image.Image, hash_size: int = 8, highfreq_factor: int = 4) -> int:
    """64-bit perceptual hash of ``image`` as an int (bit i = coefficient i of the flattened 8x8 block)."""
    size = hash_size * highfreq_factor
    pixels = np.asarray(image.convert("L").resize((size, size), Image.Resampling.LANCZOS), dtype=np.float64)
    d = _dct_matrix(size)
    dct = d @ pixels @ d.T  # DCT along columns then rows
    low = dct[:hash_size, :hash_size]
    bits = (low > np.median(low)).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


class NearDuplicateIndex:
    """Finds an earlier hash within ``threshold`` bits, without comparing against every earlier hash.

    Pigeonhole: split the 64 bits into ``threshold + 1`` bands; two hashes at distance <= threshold agree
    exactly on at least one band, so only hashes sharing a band value are compared.
    """

    def __init__(self, threshold: int, bits: int = 64) -> None:
        self.threshold = threshold
        n = threshold + 1
        edges = [round(i * bits / n) for i in range(n + 1)]
        self.bands = list(pairwise(edges))
        self.tables: list[dict[int, list[tuple[int, str]]]] = [{} for _ in self.bands]

    def _keys(self, h: int) -> list[int]:
        return [(h >> lo) & ((1 << (hi - lo)) - 1) for lo, hi in self.bands]

    def find(self, h: int) -> tuple[str, int] | None:
        """(key, distance) of the closest earlier hash within the threshold, or None."""
        best: tuple[str, int] | None = None
        for table, key in zip(self.tables, self._keys(h)):
            for other, name in table.get(key, ()):
                d = hamming(h, other)
                if d <= self.threshold and (best is None or d < best[1]):
                    best = (name, d)
        return best

    def add(self, h: int, name: str) -> None:
        for table, key in zip(self.tables, self._keys(h)):
            table.setdefault(key, []).append((h, name))
