"""Bootstrap statistics over items: confidence intervals for one system, paired comparisons of two.

Both resample *items* with replacement (the percentile bootstrap), so they answer "how much would this
figure move with another sample of items like these". Everything is deterministic for a given ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Statistic = Callable[..., Any]

# Resampled index matrices are built in chunks of at most this many cells (8 bytes each): 2M ≈ 16 MB.
_CHUNK_CELLS = 2_000_000


def _as_array(values: Sequence[float] | np.ndarray, name: str = "values") -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (got shape {arr.shape})")
    return arr


def _check(n_resamples: int, alpha: float) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise ValueError(f"n_resamples must be an integer >= 1 (got {n_resamples!r})")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be between 0 and 1 (got {alpha!r})")


def _apply(statistic: Statistic, samples: np.ndarray) -> np.ndarray:
    """``statistic`` of each row of ``samples``: vectorised when it takes ``axis`` (numpy reductions),
    row by row otherwise."""
    try:
        out = np.asarray(statistic(samples, axis=1), dtype=float)
        if out.shape == (samples.shape[0],):
            return out
    except TypeError:
        pass
    return np.array([float(statistic(row)) for row in samples], dtype=float)


def _resampled(
    arrays: Sequence[np.ndarray], n_resamples: int, seed: int, statistic: Statistic
) -> list[np.ndarray]:
    """The statistic of each of ``n_resamples`` bootstrap samples, one array per input; all inputs are
    resampled with the *same* item indices (paired)."""
    n = arrays[0].shape[0]
    rng = np.random.default_rng(seed)
    rows_per_chunk = max(1, _CHUNK_CELLS // max(n, 1))
    out: list[list[np.ndarray]] = [[] for _ in arrays]
    done = 0
    while done < n_resamples:
        rows = min(rows_per_chunk, n_resamples - done)
        idx = rng.integers(0, n, size=(rows, n))
        for k, arr in enumerate(arrays):
            out[k].append(_apply(statistic, arr[idx]))
        done += rows
    return [np.concatenate(parts) for parts in out]


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    statistic: Statistic = np.mean,
) -> tuple[float, float]:
    """Percentile-bootstrap ``1 - alpha`` confidence interval of ``statistic`` over items.

    ``statistic`` is any function of a 1-D array; numpy reductions (``np.mean``, ``np.median``...) are
    applied to all resamples at once through their ``axis`` argument. NaN values are dropped first.
    No values give ``(nan, nan)``; one value (or all equal) gives a zero-width interval.
    """
    _check(n_resamples, alpha)
    arr = _as_array(values)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return (math.nan, math.nan)
    if arr.size == 1 or np.all(arr == arr[0]):
        v = float(statistic(arr))
        return (v, v)
    (stats,) = _resampled([arr], n_resamples, seed, statistic)
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return (float(low), float(high))


@dataclass(frozen=True)
class PairedComparison:
    """System A against system B on the same items (``diff`` = statistic(A) - statistic(B)).

    ``p_a_better`` is the share of bootstrap resamples in which A beats B (ties count half);
    ``p_value`` the two-sided bootstrap p-value of "no difference" (twice the smaller tail, at most 1).
    """

    diff: float
    ci: tuple[float, float]
    p_a_better: float
    p_value: float
    n: int
    n_resamples: int
    alpha: float

    @property
    def significant(self) -> bool:
        """The ``1 - alpha`` interval of the difference excludes 0."""
        return self.n > 0 and (self.ci[0] > 0 or self.ci[1] < 0)

    def to_dict(self) -> dict[str, Any]:
        return {"diff": self.diff, "ci": list(self.ci), "p_a_better": self.p_a_better, "p_value": self.p_value,
                "n": self.n, "n_resamples": self.n_resamples, "alpha": self.alpha}


def _paired_arrays(
    a: Sequence[float] | Mapping[str, float] | np.ndarray, b: Sequence[float] | Mapping[str, float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(a, Mapping) != isinstance(b, Mapping):
        raise TypeError("paired_bootstrap: pass two sequences or two id -> value mappings")
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        ids = [k for k in a if k in b]
        x, y = _as_array([a[k] for k in ids], "a"), _as_array([b[k] for k in ids], "b")
    else:
        x, y = _as_array(a, "a"), _as_array(b, "b")  # type: ignore[arg-type]
        if x.shape != y.shape:
            raise ValueError(f"paired_bootstrap: a and b must score the same items (lengths {x.size} and {y.size})")
    keep = ~(np.isnan(x) | np.isnan(y))
    return x[keep], y[keep]


def paired_bootstrap(
    a: Sequence[float] | Mapping[str, float] | np.ndarray,
    b: Sequence[float] | Mapping[str, float] | np.ndarray,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    statistic: Statistic = np.mean,
) -> PairedComparison:
    """Paired bootstrap of ``statistic(a) - statistic(b)`` for two systems scored on the same items.

    ``a`` and ``b`` are per-item scores in the same item order, or two ``id -> score`` mappings (aligned on
    the ids both have). Items where either score is NaN are dropped. Each resample draws one set of items
    and scores both systems on it, so item difficulty cancels out.
    """
    _check(n_resamples, alpha)
    x, y = _paired_arrays(a, b)
    n = int(x.size)
    if n == 0:
        return PairedComparison(math.nan, (math.nan, math.nan), math.nan, math.nan, 0, n_resamples, alpha)
    diff = float(statistic(x)) - float(statistic(y))
    if n == 1 or (np.all(x == x[0]) and np.all(y == y[0])):
        p = 1.0 if diff > 0 else 0.0 if diff < 0 else 0.5
        return PairedComparison(diff, (diff, diff), p, 1.0 if diff == 0 else 0.0, n, n_resamples, alpha)
    sa, sb = _resampled([x, y], n_resamples, seed, statistic)
    d = sa - sb
    low, high = np.quantile(d, [alpha / 2, 1 - alpha / 2])
    better = float(np.mean(d > 0) + 0.5 * np.mean(d == 0))
    p_value = float(min(1.0, 2 * min(np.mean(d <= 0), np.mean(d >= 0))))
    return PairedComparison(diff, (float(low), float(high)), better, p_value, n, n_resamples, alpha)
