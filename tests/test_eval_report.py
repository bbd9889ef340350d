"""The evaluation report (HTML, Markdown, JSON) and the bootstrap statistics behind its intervals.

The HTML page is also opened in a real Chromium (Playwright, /usr/bin/chromium, no downloads): it must
load from file:// with no request leaving the file, show the tables, plots and thumbnails, sort on click,
and show injected markup as text without running it.
"""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from browser import CHROMIUM, CHROMIUM_ARGS, sync_playwright_or_skip
from captionkit.eval.report import write_report
from captionkit.eval.stats import bootstrap_ci, paired_bootstrap
from captionkit.eval.types import EvalResult, SystemScores
from captionkit.media.generate import write_image, write_video

SHOT = Path("/tmp/captionkit-report.png")

A, B = "base & line", 'new "model"'  # names that need escaping in text and attributes
PAYLOAD = "<script>window.__pwned = 1</script> & \"quoted\" 'single' <img src=x onerror=\"window.__pwned=2\">"
TITLE = "Eval <script>window.__pwned=3</script> & co"
URL_TEXT = "see https://example.com/a?b=1&c=2 for more"
N = 30
WIDEST, MOST_POSITIVE = "item-07", "item-13"  # largest |gap| (negative) and largest signed gap


# --------------------------------------------------------------------------------------------
# Stats


def test_bootstrap_ci_contains_mean_and_narrows():
    rng = np.random.default_rng(1)
    small = rng.normal(0.5, 0.2, 20)
    big = rng.normal(0.5, 0.2, 2000)
    lo_s, hi_s = bootstrap_ci(small)
    lo_b, hi_b = bootstrap_ci(big)
    assert lo_s <= small.mean() <= hi_s
    assert lo_b <= big.mean() <= hi_b
    assert (hi_b - lo_b) < (hi_s - lo_s) / 4  # ~sqrt(100) = 10x narrower in theory


def test_bootstrap_ci_deterministic_and_other_statistics():
    values = list(np.random.default_rng(2).uniform(0, 1, 50))
    assert bootstrap_ci(values, seed=7) == bootstrap_ci(values, seed=7)
    assert bootstrap_ci(values, seed=7) != bootstrap_ci(values, seed=8)
    lo, hi = bootstrap_ci(values, statistic=np.median)
    assert lo <= float(np.median(values)) <= hi
    lo2, hi2 = bootstrap_ci(values, statistic=lambda v: float(np.mean(v)))  # no axis argument: row by row
    assert (lo2, hi2) == pytest.approx(bootstrap_ci(values))
    lo90, hi90 = bootstrap_ci(values, alpha=0.10)
    assert lo <= hi and (hi90 - lo90) < (bootstrap_ci(values)[1] - bootstrap_ci(values)[0])


def test_bootstrap_ci_edge_cases():
    assert all(np.isnan(bootstrap_ci([])))
    assert bootstrap_ci([0.3]) == (0.3, 0.3)
    assert bootstrap_ci([2.0] * 10) == (2.0, 2.0)
    assert bootstrap_ci([1.0, float("nan"), 1.0]) == (1.0, 1.0)
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0], alpha=1.5)
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0], n_resamples=0)


def test_paired_bootstrap_sign_and_pairing():
    rng = np.random.default_rng(3)
    difficulty = rng.uniform(0, 1, 200)  # shared per-item difficulty: pairing removes it
    b = difficulty + rng.normal(0, 0.02, 200)
    a = b + 0.03
    better = paired_bootstrap(a, b)
    assert better.diff == pytest.approx(0.03)
    assert better.ci[0] > 0 and better.significant
    assert better.p_a_better > 0.99 and better.p_value < 0.01
    worse = paired_bootstrap(b, a)
    assert worse.ci[1] < 0 and worse.p_a_better < 0.01
    same = paired_bootstrap(b, b + rng.normal(0, 0.02, 200))
    assert same.ci[0] < 0 < same.ci[1] and not same.significant
    assert paired_bootstrap(a, b, seed=5) == paired_bootstrap(a, b, seed=5)
    # mappings are aligned on their common ids; NaN items are dropped
    m = paired_bootstrap({"x": 1.0, "y": 2.0, "z": float("nan"), "only-a": 9.0}, {"y": 1.0, "x": 0.0, "z": 1.0})
    assert m.n == 2 and m.diff == pytest.approx(1.0)
    with pytest.raises(ValueError):
        paired_bootstrap([1.0, 2.0], [1.0])
    assert paired_bootstrap([], []).n == 0


# --------------------------------------------------------------------------------------------
# Report fixtures


def _result(tmp_path: Path) -> EvalResult:
    media_dir = tmp_path / "media"
    media_dir.mkdir()
    media = {
        "item-00": str(write_image(media_dir / "photo.jpg", size=(320, 240), seed=1)),
        "item-01": str(write_image(media_dir / "tall.png", size=(90, 200), seed=2)),
        "item-02": str(write_video(media_dir / "clip.mp4", seconds=1.0, fps=8, size=(160, 96), with_audio=False)),
        "item-03": str(media_dir / "does-not-exist.jpg"),
    }
    broken = media_dir / "broken.jpg"
    broken.write_bytes(Path(media["item-00"]).read_bytes()[:200])
    media["item-04"] = str(broken)

    rng = np.random.default_rng(0)
    ids = [f"item-{k:02d}" for k in range(N)]
    cider_a = {i: float(rng.uniform(0.2, 1.2)) for i in ids}
    gaps = {i: float(rng.uniform(-0.3, 0.3)) for i in ids}
    gaps[WIDEST], gaps[MOST_POSITIVE] = -0.9, 0.7
    cider_b = {i: cider_a[i] - gaps[i] for i in ids}
    bleu_a = {i: float(rng.uniform(0, 0.6)) for i in ids}
    bleu_b = {i: float(rng.uniform(0, 0.5)) for i in ids}

    refs = {i: [f"a photo number {k} of a red house", f"house {k} under a sun & sky"] for k, i in enumerate(ids)}
    refs["item-05"] = ["<b>bold</b> reference & more", URL_TEXT]
    pred_a = {i: f"a house number {k} in the field" + " very" * (k % 7) for k, i in enumerate(ids)}
    pred_b = {i: f"house {k}" for k, i in enumerate(ids)}
    pred_a["item-03"] = PAYLOAD
    pred_b["item-05"] = "</td></tr></table><h1 id='broken'>x</h1>"
    sys_a = SystemScores(
        A,
        corpus={"BLEU-4": float(np.mean(list(bleu_a.values()))), "CIDEr": float(np.mean(list(cider_a.values()))),
                "violations": 3.0},
        per_item={"BLEU-4": bleu_a, "CIDEr": cider_a},
        ci={"CIDEr": (0.55, 0.80)},
        extras={"post_checks": {"too_long": 1}},
    )
    sys_b = SystemScores(
        B,
        corpus={"BLEU-4": float(np.mean(list(bleu_b.values()))), "CIDEr": float(np.mean(list(cider_b.values()))),
                "violations": 1.0},
        per_item={"BLEU-4": bleu_b, "CIDEr": cider_b},
    )
    return EvalResult(
        systems=[sys_a, sys_b],
        ids=ids,
        references=refs,
        predictions={A: pred_a, B: pred_b},
        missing={A: {"no_prediction": ["gone-1"], "no_reference": []},
                 B: {"no_prediction": ["gone-1", "gone-2"], "no_reference": ["extra-9"]}},
        unavailable={"SPICE": "needs Java 8 <not found> & no jar"},
        media=media,
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[EvalResult, dict[str, Path]]:
    tmp = tmp_path_factory.mktemp("report")
    result = _result(tmp)
    paths = write_report(result, tmp / "out", title=TITLE, primary_metric="BLEU-4")
    return result, paths


class _Audit(HTMLParser):
    """Collects attribute values, script/style bodies and text of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.attrs: list[tuple[str, str, str]] = []
        self.code: list[str] = []
        self.text: list[str] = []
        self.tags: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]
        if tag in ("script", "style"):
            self._in = tag

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        (self.code if self._in else self.text).append(data)


# --------------------------------------------------------------------------------------------
# Files


def test_report_files(report):
    result, paths = report
    assert set(paths) == {"html", "markdown", "metrics", "items"}
    for p in paths.values():
        assert p.is_file() and p.stat().st_size > 0
    assert json.loads(paths["metrics"].read_text()) == json.loads(json.dumps(result.to_dict()))
    items = [json.loads(line) for line in paths["items"].read_text().splitlines()]
    assert [r["id"] for r in items] == result.ids
    assert items[7]["gap"] == pytest.approx(result.systems[0].per_item["BLEU-4"]["item-07"]
                                            - result.systems[1].per_item["BLEU-4"]["item-07"])


def test_html_is_self_contained_and_escaped(report):
    _, paths = report
    page = paths["html"].read_text(encoding="utf-8")
    audit = _Audit()
    audit.feed(page)
    # nothing is loaded from anywhere: every src/href is a data: URI, scripts and styles name no URL
    for tag, name, value in audit.attrs:
        if name in ("src", "href", "srcset", "poster", "data", "action", "background"):
            assert value.startswith("data:"), (tag, name, value[:80])
        assert "http://" not in value and "https://" not in value, (tag, name, value[:80])
    assert not any("://" in c or "url(" in c or "@import" in c for c in audit.code)
    assert "link" not in audit.tags or all(v.startswith("data:") for t, n, v in audit.attrs if t == "link" and n == "href")
    assert audit.tags.count("script") == 1 and "iframe" not in audit.tags and "h1" in audit.tags
    assert audit.tags.count("h1") == 1  # the caption's </table><h1> stayed text
    # URLs occur only as escaped text
    text = "".join(audit.text)
    assert URL_TEXT in text and page.count("https://") == 1
    # injected markup is text
    assert PAYLOAD in text and TITLE in text
    assert "<script>window.__pwned" not in page and "onerror=\"window" not in page
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt; &amp; &quot;quoted&quot; &#x27;single&#x27;" in page
    assert "needs Java 8 &lt;not found&gt; &amp; no jar" in page
    assert "default-src 'none'" in page  # CSP: nothing but data: images and the hashed script


def test_markdown(report):
    result, paths = report
    md = paths["markdown"].read_text(encoding="utf-8")
    assert md.startswith("# Eval &lt;script&gt;")
    assert "| system | BLEU-4 | CIDEr | violations |" in md
    assert "[0.550, 0.800]" in md  # the CI given by the metric code
    assert "†" in md  # the ones the report bootstrapped
    assert "**SPICE**: needs Java 8 &lt;not found&gt; &amp; no jar" in md
    assert "| base &amp; line | 30 | 30 | 1 | 0 |" in md and "| 2 | 1 |" in md
    top = md.split("## Top 20 items by |gap|")[1]
    rows = [line for line in top.splitlines() if line.startswith("| item-")]
    a, b = (s.per_item["BLEU-4"] for s in result.systems)  # the report's primary metric
    widest = sorted(result.ids, key=lambda i: -abs(a[i] - b[i]))[:20]
    assert [r.split(" | ")[0][2:] for r in rows] == widest
    assert rows[0].startswith(f"| {widest[0]} | {a[widest[0]] - b[widest[0]]:+.3f} | {a[widest[0]]:.3f} |")
    assert "<script>" not in md and "</td>" not in md
    assert "**1.000**" in md  # violations: lower is better, so B's 1.0 is bold
    assert result.systems[0].name in md.replace("&amp;", "&")


def test_item_cap_and_single_system(tmp_path):
    result = _result(tmp_path)
    paths = write_report(result, tmp_path / "capped", max_items=10)
    page = paths["html"].read_text()
    assert page.count("<tr data-id=") == 10 and "Showing 10 of 30 items" in page
    assert len(paths["items"].read_text().splitlines()) == 30
    assert "<tr data-id='item-07'" in page  # largest |gap| on CIDEr kept

    one = EvalResult(systems=[result.systems[1]], ids=result.ids, references=result.references,
                     predictions={B: result.predictions[B]}, media={})
    paths = write_report(one, tmp_path / "one")
    page = paths["html"].read_text()
    assert "gap (" not in page and page.count("<tr data-id=") == 30 and "lowest CIDEr first" in page
    # an unknown primary metric falls back with a note
    paths = write_report(result, tmp_path / "fallback", primary_metric="SPICE")
    assert "Primary metric &#x27;SPICE&#x27; has no per-item scores (unavailable: needs Java" in paths["html"].read_text()
    # nothing at all still writes a report
    empty = EvalResult(systems=[], ids=[], references={}, predictions={})
    paths = write_report(empty, tmp_path / "empty")
    assert "No metric values." in paths["html"].read_text()


def test_report_without_matplotlib(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    paths = write_report(_result(tmp_path), tmp_path / "noplots")
    page = paths["html"].read_text()
    assert "Plots need matplotlib" in page and "data:image/png" not in page
    assert "data:image/jpeg" in page  # thumbnails still there


# --------------------------------------------------------------------------------------------
# In a real browser


def test_report_in_chromium(report, tmp_path):
    sync_playwright = sync_playwright_or_skip()
    result, paths = report
    url = paths["html"].resolve().as_uri()
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(url, wait_until="load")
            page.wait_for_function("Array.from(document.images).every(i => i.complete)")

            assert page.title() == TITLE
            # only the file itself and its data: URIs were requested
            assert all(u == url or u.startswith("data:") for u in requests), [u[:80] for u in requests]
            # the metrics table shows both systems, the best value highlighted
            systems = page.eval_on_selector_all("#metrics tbody th", "els => els.map(e => e.textContent)")
            assert systems == [A, B]
            assert page.locator("#metrics td.best").count() >= 3
            # plots: BLEU-4 and CIDEr distributions, lengths, gap
            widths = page.eval_on_selector_all("figure.plot img", "els => els.map(e => e.naturalWidth)")
            assert len(widths) == 4 and all(w > 0 for w in widths)
            # thumbnails: image, tall image and video frame render; missing and broken files show placeholders
            for item_id in ("item-00", "item-01", "item-02"):
                w = page.eval_on_selector(f"tr[data-id='{item_id}'] img.thumb", "e => e.naturalWidth")
                assert 0 < w <= 128
            assert page.locator("tr[data-id='item-02'] .badge").inner_text() == "video"
            assert page.locator("tr[data-id='item-03'] .thumb-missing").inner_text() == "missing"
            assert page.locator("tr[data-id='item-04'] .thumb-missing").inner_text() == "unreadable"
            assert page.locator("tr[data-id='item-06'] img.thumb").count() == 0
            # the injected markup is shown as text and did not run
            out_a = page.locator("tr[data-id='item-03'] td.out").first.inner_text()
            assert out_a == PAYLOAD
            assert page.evaluate("typeof window.__pwned") == "undefined"
            assert page.locator("h1").count() == 1 and page.locator("#broken").count() == 0
            assert page.locator("tr[data-id='item-05'] td.refs li").nth(1).inner_text() == URL_TEXT
            assert page.locator("#items a").count() == 0

            first = "document.querySelector('#items tbody tr').dataset.id"
            gap = {i: result.systems[0].per_item["BLEU-4"][i] - result.systems[1].per_item["BLEU-4"][i]
                   for i in result.ids}
            assert page.evaluate(first) == max(gap, key=lambda i: abs(gap[i]))  # initial: |gap| descending
            page.click("#items th[data-key='gap']")  # numbers: descending first
            assert page.evaluate(first) == max(gap, key=gap.get)
            assert page.get_attribute("#items th[data-key='gap']", "aria-sort") == "descending"
            page.click("#items th[data-key='gap']")
            assert page.evaluate(first) == min(gap, key=gap.get)
            page.click("#items th[data-key='id']")  # text: ascending first
            assert page.evaluate(first) == "item-00"
            page.click("#items th[data-key='id']")
            assert page.evaluate(first) == f"item-{N - 1:02d}"
            page.click("#items th[data-key='score1']")
            scores = page.eval_on_selector_all(
                "#items tbody td:nth-child(7)", "els => els.map(e => parseFloat(e.dataset.sort))")
            assert scores == sorted(scores, reverse=True) and len(scores) == N
            page.fill("#filter", "pwned")
            assert page.locator("#items tbody tr:not([hidden])").count() == 1
            page.fill("#filter", "")

            page.click("#items th[data-key='id']")  # screenshot with the thumbnails (items 0-4) on top
            assert page.evaluate(first) == "item-00"
            assert page.inner_text("#sort-note") == "id, ascending"
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            shutil.copyfile(shot, SHOT)
        finally:
            browser.close()
    assert errors == []
