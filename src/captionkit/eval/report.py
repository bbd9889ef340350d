"""The evaluation report: one self-contained HTML page, a Markdown summary and the metrics as JSON.

``report.html`` loads nothing from anywhere: CSS and JS are inline, plots (matplotlib, Agg) and media
thumbnails (Pillow) are base64 data URIs, and a Content-Security-Policy forbids any other source, so the
file opens offline and can be mailed. Every piece of text from the data (captions, references, ids,
system and metric names, the title) is HTML-escaped; the page's one script is allowed by its hash, so even
text that slipped through unescaped could not run.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
import re
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from captionkit.eval.stats import PairedComparison, bootstrap_ci, paired_bootstrap
from captionkit.eval.types import EvalResult

DEFAULT_MAX_ITEMS = 500  # rows in the HTML item table; items.jsonl has them all
THUMB_SIDE = 128  # longest side of a thumbnail, pixels
MD_TOP_ITEMS = 20
MAX_PAIRED_SYSTEMS = 6  # paired comparisons among the first N systems

# Metrics where a smaller value is better (the table highlights the minimum for these).
_LOWER_IS_BETTER = re.compile(
    r"(^|[^a-z])(wer|cer|ter|errors?|loss|perplexity|ppl|violations?|failures?)([^a-z]|$)", re.IGNORECASE
)


def _e(value: object) -> str:
    """HTML-escape any value for text and attribute positions (quotes included)."""
    return html.escape(str(value), quote=True)


def _num(v: float | None) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def _fmt(v: float | None, digits: int = 3) -> str:
    if v is None or not _num(v):
        return "—"
    return f"{v:.1f}" if abs(v) >= 100 else f"{v:.{digits}f}"


def _fmt_signed(v: float | None) -> str:
    return _fmt(v) if not _num(v) or v is None or v < 0 else "+" + _fmt(v)


def _sort_key(v: float | None) -> str:
    return f"{v:.10g}" if _num(v) else ""


# --------------------------------------------------------------------------------------------
# What goes in the report (computed once, rendered twice)


@dataclass
class _Item:
    id: str
    references: list[str]
    outputs: list[str | None]  # per system
    scores: list[float | None]  # per system, primary metric
    gap: float | None  # scores[0] - scores[1]
    media: str | None


@dataclass
class _Model:
    result: EvalResult
    title: str
    metrics: list[str]
    primary: str | None
    notes: list[str]
    cis: list[dict[str, tuple[float, float, bool]]]  # per system: metric -> (low, high, computed here)
    best: dict[str, set[int]]  # metric -> indices of the best systems
    lower_better: set[str]
    pairs: list[tuple[int, int, PairedComparison]]
    items: list[_Item]  # in the initial display order
    order_note: str
    generated: str
    thumbs: dict[str, tuple[str | None, str, str | None]] = field(default_factory=dict)
    plots: list[tuple[str, str, str]] = field(default_factory=list)  # (title, caption, data URI)
    plot_note: str | None = None


def _metric_names(result: EvalResult) -> list[str]:
    names: dict[str, None] = {}
    for s in result.systems:
        for m in s.corpus:
            names.setdefault(m)
    for s in result.systems:
        for m, values in s.per_item.items():
            if values:
                names.setdefault(m)
    return list(names)


def _pick_primary(result: EvalResult, metrics: list[str], requested: str | None) -> tuple[str | None, list[str]]:
    with_items = [m for m in metrics if any(s.per_item.get(m) for s in result.systems)]
    notes: list[str] = []
    if requested is not None:
        match = next((m for m in with_items if m == requested), None) or next(
            (m for m in with_items if m.lower() == requested.lower()), None
        )
        if match:
            return match, notes
        why = result.unavailable.get(requested)
        notes.append(
            f"Primary metric {requested!r} has no per-item scores"
            + (f" (unavailable: {why})" if why else "")
            + (f"; using {with_items[0]!r} instead." if with_items else ".")
        )
    if not with_items:
        return None, notes
    cider = next((m for m in with_items if m.lower().startswith("cider")), None)
    return cider or with_items[0], notes


def _confidence(
    result: EvalResult, metrics: list[str], n_resamples: int, seed: int
) -> list[dict[str, tuple[float, float, bool]]]:
    out: list[dict[str, tuple[float, float, bool]]] = []
    for s in result.systems:
        cis: dict[str, tuple[float, float, bool]] = {}
        for m in metrics:
            if m in s.ci:
                lo, hi = s.ci[m]
                cis[m] = (float(lo), float(hi), False)
            elif s.per_item.get(m):
                lo, hi = bootstrap_ci(list(s.per_item[m].values()), n_resamples=n_resamples, seed=seed)
                cis[m] = (lo, hi, True)
        out.append(cis)
    return out


def _value(result: EvalResult, index: int, metric: str) -> float | None:
    s = result.systems[index]
    if metric in s.corpus:
        return s.corpus[metric]
    values = [v for v in s.per_item.get(metric, {}).values() if _num(v)]
    return float(np.mean(values)) if values else None


def _best(result: EvalResult, metrics: list[str], lower_better: set[str]) -> dict[str, set[int]]:
    best: dict[str, set[int]] = {}
    if len(result.systems) < 2:
        return best
    for m in metrics:
        values: dict[int, float] = {}
        for i in range(len(result.systems)):
            v = _value(result, i, m)
            if v is not None and _num(v):
                values[i] = v
        if len(values) < 2:
            continue
        target = min(values.values()) if m in lower_better else max(values.values())
        best[m] = {i for i, v in values.items() if math.isclose(v, target, rel_tol=1e-12, abs_tol=1e-15)}
    return best


def _items(result: EvalResult, primary: str | None) -> tuple[list[_Item], str]:
    names = [s.name for s in result.systems]
    per = [s.per_item.get(primary, {}) if primary else {} for s in result.systems]
    items: list[_Item] = []
    for item_id in result.ids:
        scores = [float(p[item_id]) if _num(p.get(item_id)) else None for p in per]
        gap = None
        if len(scores) >= 2 and scores[0] is not None and scores[1] is not None:
            gap = scores[0] - scores[1]
        items.append(
            _Item(
                id=item_id,
                references=list(result.references.get(item_id, [])),
                outputs=[result.predictions.get(n, {}).get(item_id) for n in names],
                scores=scores,
                gap=gap,
                media=result.media.get(item_id),
            )
        )
    if len(names) >= 2 and primary and any(it.gap is not None for it in items):
        items.sort(key=lambda it: -abs(it.gap) if it.gap is not None else math.inf)
        return items, f"largest |gap| first ({names[0]} − {names[1]}, {primary})"
    if primary and names:
        items.sort(key=lambda it: it.scores[0] if it.scores[0] is not None else math.inf)
        return items, f"lowest {primary} first"
    return items, "in input order"


def _pairs(result: EvalResult, primary: str | None, n_resamples: int, seed: int) -> list[tuple[int, int, PairedComparison]]:
    if not primary:
        return []
    pairs = []
    k = min(len(result.systems), MAX_PAIRED_SYSTEMS)
    for i in range(k):
        for j in range(i + 1, k):
            a = result.systems[i].per_item.get(primary, {})
            b = result.systems[j].per_item.get(primary, {})
            ids = [x for x in result.ids if _num(a.get(x)) and _num(b.get(x))]
            if ids:
                cmp = paired_bootstrap([a[x] for x in ids], [b[x] for x in ids], n_resamples=n_resamples, seed=seed)
                pairs.append((i, j, cmp))
    return pairs


# --------------------------------------------------------------------------------------------
# Thumbnails


def _thumbnail(path: str) -> tuple[str | None, str, str | None]:
    """(data URI, why there is none, media kind) for one media file; never raises."""
    p = Path(path)
    if not p.is_file():
        return None, "missing", None
    try:
        from PIL import Image

        from captionkit.media.loader import load_media
        from captionkit.media.types import FramePolicy

        loaded = load_media(p, FramePolicy(mode="interval", every=1.0, max_frames=1))
        if not loaded.frames:
            return None, "unreadable: no frame decoded", loaded.info.kind
        image = loaded.frames[0].image.convert("RGB")
        image.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=75, optimize=True)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), "", loaded.info.kind
    except Exception as exc:  # a broken file must not break the report
        return None, f"unreadable: {type(exc).__name__}: {exc}"[:300], None


def _thumbnails(paths: Collection[str], workers: int = 4) -> dict[str, tuple[str | None, str, str | None]]:
    unique = sorted(set(paths))
    if not unique:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(unique)))) as pool:
        return dict(zip(unique, pool.map(_thumbnail, unique)))


# --------------------------------------------------------------------------------------------
# Plots (matplotlib's Agg canvas, no pyplot: no global state, safe in threads)

_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def _label(text: str, limit: int = 32) -> str:
    """Plain text for matplotlib: no mathtext (``$``), bounded length."""
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def _png(fig: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _distribution_plot(result: EvalResult, metric: str, seed: int) -> tuple[str, str, str] | None:
    from matplotlib.figure import Figure

    rows = []
    for i, s in enumerate(result.systems):
        scores = s.per_item.get(metric, {})
        values = np.array([scores[x] for x in result.ids if _num(scores.get(x))], dtype=float)
        if values.size:
            rows.append((i, s.name, values))
    if not rows:
        return None
    fig = Figure(figsize=(7.5, 1.2 + 0.55 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    positions = list(range(len(rows), 0, -1))  # first system on top
    data = [r[2] for r in rows]
    style = {"widths": 0.55, "showfliers": False, "patch_artist": True, "medianprops": {"color": "black"}}
    try:
        box = ax.boxplot(data, positions=positions, orientation="horizontal", **style)
    except TypeError:  # matplotlib < 3.10
        box = ax.boxplot(data, positions=positions, vert=False, **style)
    rng = np.random.default_rng(seed)
    for (i, _name, values), pos, patch in zip(rows, positions, box["boxes"]):
        colour = _COLOURS[i % len(_COLOURS)]
        patch.set_facecolor(colour + "40")
        patch.set_edgecolor(colour)
        jitter = rng.uniform(-0.18, 0.18, size=values.size)
        ax.scatter(values, pos + jitter, s=9, color=colour, alpha=0.55, linewidths=0, zorder=3)
        ax.scatter([values.mean()], [pos], marker="D", s=36, color="white", edgecolors="black", zorder=4)
    ax.set_yticks(positions, [_label(r[1]) for r in rows])
    ax.set_xlabel(_label(metric, 60) + " per item")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"{_label(metric, 60)}: per-item distribution", fontsize=11)
    caption = (f"Per-item {metric} for each system: box = quartiles, line = median, ◆ = mean, "
               f"dots = items ({len(result.ids)} items).")
    return f"{metric} per item", caption, _png(fig)


def _length_plot(result: EvalResult) -> tuple[str, str, str] | None:
    from matplotlib.figure import Figure

    series: list[tuple[str, np.ndarray, str, bool]] = []
    refs = [len(r.split()) for x in result.ids for r in result.references.get(x, [])]
    for i, s in enumerate(result.systems):
        texts = result.predictions.get(s.name, {})
        lengths = [len(texts[x].split()) for x in result.ids if isinstance(texts.get(x), str)]
        if lengths:
            series.append((s.name, np.array(lengths), _COLOURS[i % len(_COLOURS)], False))
    if not series:
        return None
    if refs:
        series.insert(0, ("references", np.array(refs), "#999999", True))
    top = int(max(v.max() for _, v, _, _ in series))
    step = max(1, math.ceil((top + 1) / 40))
    bins = np.arange(0, top + step + 1, step) - 0.5
    fig = Figure(figsize=(7.5, 3.2), layout="constrained")
    ax = fig.add_subplot()
    for name, values, colour, filled in series:
        label = f"{_label(name)} (mean {values.mean():.1f})"
        if filled:
            ax.hist(values, bins=bins, color=colour, alpha=0.35, label=label)
        else:
            ax.hist(values, bins=bins, histtype="step", linewidth=1.8, color=colour, label=label)
    ax.set_xlabel("words per text")
    ax.set_ylabel("texts")
    ax.legend(fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Output length", fontsize=11)
    return "Output length", "Words per output for each system; references in grey.", _png(fig)


def _gap_plot(result: EvalResult, items: Sequence[_Item], primary: str) -> tuple[str, str, str] | None:
    from matplotlib.figure import Figure

    gaps = np.array([it.gap for it in items if it.gap is not None], dtype=float)
    if gaps.size == 0:
        return None
    a, b = result.systems[0].name, result.systems[1].name
    fig = Figure(figsize=(7.5, 3.0), layout="constrained")
    ax = fig.add_subplot()
    ax.hist(gaps, bins=min(40, max(5, gaps.size // 3)), color="#6a51a3", alpha=0.75)
    ax.axvline(0, color="black", linewidth=1)
    ax.axvline(float(gaps.mean()), color="#d62728", linestyle="--", linewidth=1.2, label=f"mean {gaps.mean():+.3f}")
    ax.set_xlabel(f"{_label(primary, 40)}: {_label(a, 24)} − {_label(b, 24)}")
    ax.set_ylabel("items")
    ax.legend(fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Per-item gap", fontsize=11)
    better = int((gaps > 0).sum()), int((gaps < 0).sum()), int((gaps == 0).sum())
    caption = (f"Per-item {primary} of {a} minus {b}: {a} better on {better[0]} items, "
               f"{b} on {better[1]}, tied on {better[2]}.")
    return "Per-item gap", caption, _png(fig)


def _plots(model: _Model, seed: int) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        model.plot_note = "Plots need matplotlib: pip install 'captionkit[eval]'."
        return
    result = model.result
    metrics: list[str] = []
    if model.primary:
        metrics.append(model.primary)
    cider = next((m for m in model.metrics if m.lower().startswith("cider") and m != model.primary), None)
    if cider:
        metrics.append(cider)
    makers = [lambda m=m: _distribution_plot(result, m, seed) for m in metrics]
    makers.append(lambda: _length_plot(result))
    if model.primary and len(result.systems) >= 2:
        makers.append(lambda: _gap_plot(result, model.items, model.primary or ""))
    for make in makers:
        try:
            plot = make()
        except Exception as exc:  # a plot must not cost the whole report
            model.notes.append(f"A plot failed: {type(exc).__name__}: {exc}")
            continue
        if plot:
            model.plots.append(plot)


# --------------------------------------------------------------------------------------------
# HTML

_CSS = """
:root{--fg:#1d232b;--muted:#5f6b7a;--line:#dde3ea;--bg:#fff;--head:#f4f6f9;--best:#dff3e4;--accent:#2456a6}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);
background:var(--bg);margin:0;padding:24px 32px 48px;max-width:1600px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 10px;border-bottom:1px solid var(--line);padding-bottom:4px}
.meta{color:var(--muted);margin:0 0 12px}.note{color:var(--muted);font-size:13px}
.warn{background:#fff7e0;border:1px solid #f0d58a;padding:6px 10px;border-radius:4px;margin:8px 0}
table{border-collapse:collapse;margin:6px 0}th,td{border:1px solid var(--line);padding:5px 8px;vertical-align:top;text-align:left}
th{background:var(--head);font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.ci{display:block;color:var(--muted);font-size:11.5px}td.best{background:var(--best);font-weight:700}
td.best .ci{font-weight:400}.unavail li{margin:2px 0}code{background:var(--head);padding:0 3px;border-radius:3px}
.plots{display:flex;flex-wrap:wrap;gap:18px}figure.plot{margin:0;flex:0 1 620px;min-width:320px}
figure.plot img{max-width:100%;height:auto;border:1px solid var(--line)}figcaption{color:var(--muted);font-size:12.5px}
#items th[data-key]{cursor:pointer;user-select:none;position:sticky;top:0;z-index:1}
#items th[data-key]:hover{background:#e8edf4}#items th .arrow{color:var(--accent);margin-left:4px}
#items td.out,#items td.refs{max-width:340px;white-space:pre-wrap;overflow-wrap:anywhere}
#items ol{margin:0;padding-left:18px}#items td.id{white-space:nowrap;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px}
#items td.rowbest{font-weight:700}.thumb{display:block;max-width:128px;max-height:128px;border-radius:3px}
.media{position:relative;width:136px}.badge{position:absolute;left:6px;top:6px;background:#000a;color:#fff;font-size:10.5px;
padding:0 4px;border-radius:3px}
.thumb-missing{display:flex;align-items:center;justify-content:center;width:128px;height:72px;background:repeating-linear-gradient(
45deg,#f2f2f2,#f2f2f2 8px,#e6e6e6 8px,#e6e6e6 16px);color:#777;font-size:12px;border-radius:3px;text-align:center}
.no-media{color:#aaa}#filter{padding:5px 8px;width:320px;margin:4px 0 8px;border:1px solid var(--line);border-radius:4px}
details{margin:6px 0}summary{cursor:pointer;color:var(--accent)}pre{white-space:pre-wrap;font-size:12px}
"""

# One small script: sort the item table by any column (numbers as numbers, blanks last) and filter rows.
_JS = """
(function () {
  var table = document.getElementById('items');
  if (!table) return;
  var tbody = table.tBodies[0];
  var heads = table.tHead.rows[0].cells;
  var state = {col: -1, dir: 0};
  function key(row, col, numeric) {
    var cell = row.cells[col];
    var v = cell.getAttribute('data-sort');
    if (v === null) v = cell.textContent;
    if (numeric) return v === '' ? NaN : parseFloat(v);
    return v.toLowerCase();
  }
  function sortBy(col) {
    var th = heads[col];
    var numeric = th.getAttribute('data-type') === 'num';
    var dir = state.col === col ? -state.dir : (numeric ? -1 : 1);
    var rows = Array.prototype.slice.call(tbody.rows);
    rows.sort(function (r1, r2) {
      var a = key(r1, col, numeric), b = key(r2, col, numeric);
      if (numeric) {
        var na = isNaN(a), nb = isNaN(b);
        if (na !== nb) return na ? 1 : -1;
        if (!na && a !== b) return (a - b) * dir;
      } else {
        var c = a.localeCompare(b);
        if (c !== 0) return c * dir;
      }
      return Number(r1.getAttribute('data-index')) - Number(r2.getAttribute('data-index'));
    });
    var frag = document.createDocumentFragment();
    rows.forEach(function (r) { frag.appendChild(r); });
    tbody.appendChild(frag);
    state = {col: col, dir: dir};
    for (var i = 0; i < heads.length; i++) {
      var arrow = heads[i].querySelector('.arrow');
      var on = i === col;
      heads[i].setAttribute('aria-sort', on ? (dir > 0 ? 'ascending' : 'descending') : 'none');
      if (arrow) arrow.textContent = on ? (dir > 0 ? '\\u25B2' : '\\u25BC') : '';
    }
    var note = document.getElementById('sort-note');
    if (note) note.textContent = th.getAttribute('data-label') + (dir > 0 ? ', ascending' : ', descending');
  }
  Array.prototype.forEach.call(heads, function (th, col) {
    if (!th.hasAttribute('data-key')) return;
    th.addEventListener('click', function () { sortBy(col); });
    th.addEventListener('keydown', function (ev) {
      if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); sortBy(col); }
    });
  });
  var filter = document.getElementById('filter');
  var count = document.getElementById('filter-count');
  if (filter) filter.addEventListener('input', function () {
    var q = filter.value.toLowerCase(), shown = 0;
    Array.prototype.forEach.call(tbody.rows, function (r) {
      var hit = !q || r.textContent.toLowerCase().indexOf(q) !== -1;
      r.hidden = !hit;
      if (hit) shown++;
    });
    if (count) count.textContent = q ? shown + ' rows match' : '';
  });
})();
"""


def _csp(script: str) -> str:
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    return (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; "
            "base-uri 'none'; form-action 'none'")


def _html_counts(model: _Model) -> str:
    r = model.result
    rows = []
    for s in r.systems:
        miss = r.missing.get(s.name, {})
        given = len(r.predictions.get(s.name, {}))
        scored = sum(1 for x in r.ids if x in r.predictions.get(s.name, {}))
        no_pred, no_ref = len(miss.get("no_prediction", [])), len(miss.get("no_reference", []))
        rows.append(
            f"<tr><td>{_e(s.name)}</td><td class='num'>{given}</td><td class='num'>{scored}</td>"
            f"<td class='num'>{no_pred}</td><td class='num'>{no_ref}</td></tr>"
        )
    extra = [(name, m) for name, m in r.missing.items() if name not in {s.name for s in r.systems}]
    for name, m in extra:
        rows.append(f"<tr><td>{_e(name)}</td><td class='num'>—</td><td class='num'>—</td>"
                    f"<td class='num'>{len(m.get('no_prediction', []))}</td>"
                    f"<td class='num'>{len(m.get('no_reference', []))}</td></tr>")
    table = ("<table class='counts'><thead><tr><th>system</th><th class='num'>predictions</th>"
             "<th class='num'>scored</th><th class='num'>missing prediction</th>"
             "<th class='num'>prediction without reference</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    details = []
    for name, m in r.missing.items():
        for kind, ids in m.items():
            if ids:
                shown = ", ".join(_e(x) for x in ids[:200]) + (f" … (+{len(ids) - 200})" if len(ids) > 200 else "")
                details.append(f"<details><summary>{_e(name)}: {_e(kind.replace('_', ' '))} ({len(ids)})</summary>"
                               f"<p class='note'>{shown}</p></details>")
    return table + "".join(details)


def _html_unavailable(model: _Model) -> str:
    un = model.result.unavailable
    if not un:
        return "<p class='note'>Every requested metric was computed.</p>"
    lis = "".join(f"<li><b>{_e(m)}</b>: {_e(why)}</li>" for m, why in un.items())
    return f"<ul class='unavail'>{lis}</ul>"


def _html_metrics(model: _Model) -> str:
    r = model.result
    if not r.systems or not model.metrics:
        return "<p class='note'>No metric values.</p>"
    head = "".join(
        f"<th class='num' title='{'lower' if m in model.lower_better else 'higher'} is better'>{_e(m)}"
        f"{' ↓' if m in model.lower_better else ''}</th>"
        for m in model.metrics
    )
    body = []
    for i, s in enumerate(r.systems):
        cells = []
        for m in model.metrics:
            v = _value(r, i, m)
            ci = model.cis[i].get(m)
            ci_txt = ""
            if ci and _num(ci[0]) and _num(ci[1]):
                ci_txt = f"<span class='ci'>[{_fmt(ci[0])}, {_fmt(ci[1])}]{'†' if ci[2] else ''}</span>"
            cls = "num best" if i in model.best.get(m, set()) else "num"
            cells.append(f"<td class='{cls}' data-metric='{_e(m)}'>{_fmt(v)}{ci_txt}</td>")
        body.append(f"<tr data-system='{_e(s.name)}'><th>{_e(s.name)}</th>{''.join(cells)}</tr>")
    any_here = any(ci[2] for cis in model.cis for ci in cis.values())
    notes = ["Value with its 95 % percentile-bootstrap confidence interval over items; the best system per "
             "column is highlighted (↓: lower is better)."]
    if any_here:
        notes.append("† interval computed by the report from the per-item values (bootstrap of the per-item mean).")
    return (f"<table id='metrics'><thead><tr><th>system</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            + "".join(f"<p class='note'>{_e(n)}</p>" for n in notes))


def _html_pairs(model: _Model) -> str:
    if not model.pairs:
        return ""
    r = model.result
    rows = []
    for i, j, c in model.pairs:
        verdict = ("significant" if c.significant else "not significant")
        rows.append(
            f"<tr><td>{_e(r.systems[i].name)}</td><td>{_e(r.systems[j].name)}</td><td class='num'>{c.n}</td>"
            f"<td class='num'>{_fmt_signed(c.diff)}</td><td class='num'>[{_fmt(c.ci[0])}, {_fmt(c.ci[1])}]</td>"
            f"<td class='num'>{c.p_a_better:.3f}</td><td class='num'>{c.p_value:.3f}</td><td>{verdict}</td></tr>"
        )
    return (f"<h2>Paired comparison ({_e(model.primary)})</h2>"
            "<table id='pairs'><thead><tr><th>A</th><th>B</th><th class='num'>items</th><th class='num'>mean A − B</th>"
            "<th class='num'>95 % CI</th><th class='num'>P(A better)</th><th class='num'>p</th><th>at 5 %</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table><p class='note'>Paired bootstrap over the items both systems "
            "scored: each resample draws one set of items and scores both systems on it.</p>")


def _html_plots(model: _Model) -> str:
    if model.plot_note:
        return f"<p class='warn'>{_e(model.plot_note)}</p>"
    if not model.plots:
        return "<p class='note'>Nothing to plot.</p>"
    figs = "".join(
        f"<figure class='plot'><img src='{uri}' alt='{_e(title)}'><figcaption>{_e(caption)}</figcaption></figure>"
        for title, caption, uri in model.plots
    )
    return f"<div class='plots'>{figs}</div>"


def _media_cell(model: _Model, item: _Item) -> str:
    if not item.media:
        return "<td class='media' data-sort=''><span class='no-media'>—</span></td>"
    uri, why, kind = model.thumbs.get(item.media, (None, "not rendered", None))
    if uri:
        badge = f"<span class='badge'>{_e(kind)}</span>" if kind in ("video", "gif") else ""
        return (f"<td class='media' data-sort='{_e(kind or 'image')}'>{badge}<img class='thumb' src='{uri}' "
                f"alt='{_e(item.id)}' title='{_e(item.media)}'></td>")
    label = "missing" if why == "missing" else "unreadable"
    return (f"<td class='media' data-sort='~{label}'><span class='thumb-missing' title='{_e(item.media)}: {_e(why)}'>"
            f"{label}</span></td>")


def _html_items(model: _Model, max_items: int) -> str:
    r = model.result
    names = [s.name for s in r.systems]
    primary = model.primary
    has_gap = len(names) >= 2 and primary is not None
    heads = [("id", "id", "text", ""), ("media", "media", "text", ""), ("refs", "references", "text", "")]
    for k, n in enumerate(names):
        heads.append((f"out{k}", n, "text", ""))
        if primary:
            heads.append((f"score{k}", f"{n} {primary}", "num", "num"))
    if has_gap:
        heads.append(("gap", f"gap ({names[0]} − {names[1]})", "num", "num"))
    th = "".join(
        f"<th data-key='{key}' data-type='{typ}' data-label='{_e(label)}' class='{cls}' tabindex='0' "
        f"aria-sort='none' title='click to sort'>{_e(label)}<span class='arrow'></span></th>"
        for key, label, typ, cls in heads
    )
    shown = model.items[:max_items]
    max_gap = max((abs(it.gap) for it in shown if it.gap is not None), default=0.0) or 1.0
    rows = []
    for index, it in enumerate(shown):
        cells = [f"<td class='id'>{_e(it.id)}</td>", _media_cell(model, it)]
        refs = "".join(f"<li>{_e(ref)}</li>" for ref in it.references)
        cells.append(f"<td class='refs' data-sort='{_e(it.references[0] if it.references else '')}'>"
                     f"{f'<ol>{refs}</ol>' if refs else '—'}</td>")
        top = max((v for v in it.scores if v is not None), default=None)
        for k in range(len(names)):
            out = it.outputs[k]
            cells.append(f"<td class='out'>{_e(out) if out is not None else '—'}</td>")
            if primary:
                v = it.scores[k]
                best = len(names) > 1 and v is not None and top is not None and v == top
                cells.append(f"<td class='num{' rowbest' if best else ''}' data-sort='{_sort_key(v)}'>{_fmt(v)}</td>")
        if has_gap:
            style = ""
            if it.gap is not None and it.gap != 0:
                alpha = 0.08 + 0.42 * min(1.0, abs(it.gap) / max_gap)
                rgb = "46,160,67" if it.gap > 0 else "218,54,51"
                style = f" style='background:rgba({rgb},{alpha:.2f})'"
            cells.append(f"<td class='num gap'{style} data-sort='{_sort_key(it.gap)}'>{_fmt_signed(it.gap)}</td>")
        rows.append(f"<tr data-id='{_e(it.id)}' data-index='{index}'>{''.join(cells)}</tr>")
    cap = ""
    if len(model.items) > max_items:
        cap = (f"<p class='warn' id='cap-note'>Showing {max_items} of {len(model.items)} items ({_e(model.order_note)}); "
               "every item is in items.jsonl next to this file.</p>")
    return (
        f"{cap}<p class='note'>Click a column header to sort (again to reverse). Order: "
        f"<span id='sort-note'>{_e(model.order_note)}</span>."
        + (f" Per-item scores are {_e(primary)}." if primary else "")
        + "</p><input id='filter' type='search' placeholder='filter rows…' aria-label='filter rows'> "
        "<span id='filter-count' class='note'></span>"
        f"<table id='items'><thead><tr>{th}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _html_extras(model: _Model) -> str:
    extras = [(s.name, s.extras) for s in model.result.systems if s.extras]
    if not extras:
        return ""
    blocks = "".join(
        f"<details><summary>{_e(name)}</summary><pre>{_e(json.dumps(_jsonable(x), indent=2, ensure_ascii=False))}</pre></details>"
        for name, x in extras
    )
    return f"<h2>Extras</h2>{blocks}"


def _render_html(model: _Model, max_items: int) -> str:
    from captionkit import __version__

    r = model.result
    script = _JS
    summary = (f"{len(r.ids)} items scored · {len(r.systems)} system{'s' if len(r.systems) != 1 else ''} · "
               f"{len(r.references)} items with references · primary metric: {model.primary or '—'} · "
               f"generated {model.generated} by captionkit {__version__}")
    notes = "".join(f"<p class='warn'>{_e(n)}</p>" for n in model.notes)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{_csp(script)}\">"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        "<link rel='icon' href='data:,'>"
        f"<title>{_e(model.title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(model.title)}</h1><p class='meta'>{_e(summary)}</p>{notes}</header>"
        f"<h2>Items</h2>{_html_counts(model)}"
        f"<h2>Unavailable metrics</h2>{_html_unavailable(model)}"
        f"<h2>Metrics</h2>{_html_metrics(model)}"
        f"{_html_pairs(model)}"
        f"<h2>Plots</h2>{_html_plots(model)}"
        f"<h2>Per item</h2>{_html_items(model, max_items)}"
        f"{_html_extras(model)}"
        f"<script>{script}</script></body></html>\n"
    )


# --------------------------------------------------------------------------------------------
# Markdown


def _md(text: object, limit: int | None = None) -> str:
    """One table cell: no line breaks or pipes, HTML inert, no links."""
    s = " ".join(str(text).split())
    if limit and len(s) > limit:
        s = s[: limit - 1] + "…"
    s = html.escape(s, quote=False)
    for ch in ("\\", "`", "[", "]", "|"):
        s = s.replace(ch, "\\" + ch)
    return s


def _render_md(model: _Model) -> str:
    r = model.result
    names = [s.name for s in r.systems]
    out = [f"# {_md(model.title)}", ""]
    out.append(f"{len(r.ids)} items scored, {len(names)} systems, primary metric: "
               f"{_md(model.primary) if model.primary else '—'}. Generated {model.generated}.")
    out += [""] + [f"> {_md(n)}" for n in model.notes] + ([""] if model.notes else [])
    out += ["## Items", "", "| system | predictions | scored | missing prediction | prediction without reference |",
            "|---|---:|---:|---:|---:|"]
    for s in r.systems:
        miss = r.missing.get(s.name, {})
        preds = r.predictions.get(s.name, {})
        out.append(f"| {_md(s.name)} | {len(preds)} | {sum(1 for x in r.ids if x in preds)} | "
                   f"{len(miss.get('no_prediction', []))} | {len(miss.get('no_reference', []))} |")
    out += ["", "## Unavailable metrics", ""]
    out += [f"- **{_md(m)}**: {_md(why)}" for m, why in r.unavailable.items()] or ["None: every requested metric was computed."]
    out += ["", "## Metrics (95 % bootstrap CI)", ""]
    if names and model.metrics:
        out.append("| system | " + " | ".join(_md(m) for m in model.metrics) + " |")
        out.append("|---|" + "---:|" * len(model.metrics))
        for i, s in enumerate(r.systems):
            cells = []
            for m in model.metrics:
                v = _fmt(_value(r, i, m))
                if i in model.best.get(m, set()):
                    v = f"**{v}**"
                ci = model.cis[i].get(m)
                if ci and _num(ci[0]) and _num(ci[1]):
                    v += f" [{_fmt(ci[0])}, {_fmt(ci[1])}]{'†' if ci[2] else ''}"
                cells.append(v)
            out.append(f"| {_md(s.name)} | " + " | ".join(cells) + " |")
        out += ["", "Best per column in bold. † interval computed from per-item values."]
    else:
        out.append("No metric values.")
    if model.pairs:
        out += ["", f"## Paired comparison ({_md(model.primary)})", "",
                "| A | B | items | mean A − B | 95 % CI | P(A better) | p |", "|---|---|---:|---:|---:|---:|---:|"]
        for i, j, c in model.pairs:
            out.append(f"| {_md(names[i])} | {_md(names[j])} | {c.n} | {_fmt_signed(c.diff)} | "
                       f"[{_fmt(c.ci[0])}, {_fmt(c.ci[1])}] | {c.p_a_better:.3f} | {c.p_value:.3f} |")
    gap_items = [it for it in model.items if it.gap is not None]
    if len(names) >= 2 and gap_items:
        top = sorted(gap_items, key=lambda it: -abs(it.gap or 0.0))[:MD_TOP_ITEMS]
        a, b = _md(names[0], 40), _md(names[1], 40)
        out += ["", f"## Top {len(top)} items by |gap| ({a} − {b}, {_md(model.primary)})", "",
                f"| id | gap | {a} | {b} | {a} output | {b} output | first reference |",
                "|---|---:|---:|---:|---|---|---|"]
        for it in top:
            out.append(
                f"| {_md(it.id)} | {_fmt_signed(it.gap)} | {_fmt(it.scores[0])} | {_fmt(it.scores[1])} | "
                f"{_md(it.outputs[0] or '—', 200)} | {_md(it.outputs[1] or '—', 200)} | "
                f"{_md(it.references[0] if it.references else '—', 200)} |"
            )
    out += ["", "Full report with plots and every item: report.html; per-item scores: items.jsonl.", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# JSON


def _jsonable(x: Any) -> Any:
    """Plain JSON: NaN and infinities become null, tuples lists, unknown objects strings."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, (np.floating, np.integer)):
        return _jsonable(x.item())
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set)):
        return [_jsonable(v) for v in x]
    if x is None or isinstance(x, (str, int, bool)):
        return x
    return str(x)


def _items_jsonl(result: EvalResult, items: list[_Item]) -> str:
    gaps = {it.id: it.gap for it in items}
    lines = []
    for item_id in result.ids:
        row = {
            "id": item_id,
            "references": result.references.get(item_id, []),
            "predictions": {s.name: result.predictions.get(s.name, {}).get(item_id) for s in result.systems},
            "scores": {s.name: {m: v[item_id] for m, v in s.per_item.items() if item_id in v} for s in result.systems},
            "gap": gaps.get(item_id),
            "media": result.media.get(item_id),
        }
        lines.append(json.dumps(_jsonable(row), ensure_ascii=False))
    return "\n".join(lines) + ("\n" if lines else "")


# --------------------------------------------------------------------------------------------
# Entry point


def write_report(
    result: EvalResult,
    out_dir: str | Path,
    *,
    title: str = "captionkit evaluation",
    primary_metric: str | None = None,
    max_items: int = DEFAULT_MAX_ITEMS,
    lower_is_better: Collection[str] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Path]:
    """Write ``report.html``, ``report.md``, ``metrics.json`` and ``items.jsonl`` into ``out_dir``.

    ``primary_metric`` drives the per-item scores, the gap column (first system minus second), the
    paired comparison and the first distribution plot; by default CIDEr when it has per-item values,
    else the first metric that does. ``max_items`` caps the rows of the HTML item table (largest
    |gap| first); ``items.jsonl`` has every item. ``lower_is_better`` names metrics where the minimum
    is best (by default names like WER, error, loss, perplexity, violations). Confidence intervals
    come from ``SystemScores.ci``; metrics without one get a bootstrap of their per-item values
    (``n_resamples``, ``seed``). Returns ``{"html", "markdown", "metrics", "items"}`` paths.
    """
    if max_items < 0:
        raise ValueError(f"max_items must be >= 0 (got {max_items})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = _metric_names(result)
    primary, notes = _pick_primary(result, metrics, primary_metric)
    lower = {m for m in metrics if _LOWER_IS_BETTER.search(m)} if lower_is_better is None else set(lower_is_better)
    items, order_note = _items(result, primary)
    model = _Model(
        result=result,
        title=title,
        metrics=metrics,
        primary=primary,
        notes=notes,
        cis=_confidence(result, metrics, n_resamples, seed),
        best=_best(result, metrics, lower),
        lower_better=lower,
        pairs=_pairs(result, primary, n_resamples, seed),
        items=items,
        order_note=order_note,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )
    model.thumbs = _thumbnails([it.media for it in items[:max_items] if it.media])
    _plots(model, seed)

    paths = {
        "html": out / "report.html",
        "markdown": out / "report.md",
        "metrics": out / "metrics.json",
        "items": out / "items.jsonl",
    }
    paths["html"].write_text(_render_html(model, max_items), encoding="utf-8")
    paths["markdown"].write_text(_render_md(model), encoding="utf-8")
    paths["metrics"].write_text(
        json.dumps(_jsonable(result.to_dict()), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    paths["items"].write_text(_items_jsonl(result, items), encoding="utf-8")
    return paths
