"""`captionkit eval` end to end: input shapes, several systems, missing items reported, report written,
and the Python API the trainers use."""

from __future__ import annotations

import json

import pytest

import captionkit
from captionkit.config import RunConfig
from captionkit.errors import ConfigError, DatasetError
from captionkit.eval.data import load_predictions, load_references
from conftest import run_cli, write_csv

REFS = {
    "1": ["a red car parked on a street", "a red car on the road"],
    "2": ["a dog running on the beach", "a brown dog runs along the sand"],
    "3": ["two people riding bikes in a park"],
    "4": ["a plate of pasta with tomato sauce"],
}
GOOD = {"1": "a red car parked on the street", "2": "a dog running on a beach", "3": "two people ride bikes",
        "4": "pasta with tomato sauce on a plate", "5": "an item with no reference"}
BAD = {"1": "a blue house", "2": "a cat sleeping", "3": "a plate of food"}


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path):
    refs = jsonl(tmp_path / "refs.jsonl", [{"id": k, "references": v} for k, v in REFS.items()])
    good = jsonl(tmp_path / "good.jsonl", [{"id": k, "text": v} for k, v in GOOD.items()])
    bad = write_csv(tmp_path / "bad.csv", [{"id": k, "text": v} for k, v in BAD.items()])
    return refs, good, bad


def test_two_systems_table_json_and_report(files, tmp_path):
    refs, good, bad = files
    res = run_cli("eval", "--predictions", f"good={good}", "--predictions", f"bad={bad}", "--references", str(refs),
                  "--format", "json", "--out", str(tmp_path / "report"), "--bootstrap", "200")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["items"] == 3  # ids shared by the references and both systems
    for key in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"):
        assert out["systems"]["good"][key] > out["systems"]["bad"][key]
    assert out["missing"]["good"] == {"no_prediction": 0, "no_reference": 1}
    assert out["missing"]["bad"] == {"no_prediction": 1, "no_reference": 0}
    assert "1 referenced items have no prediction" in res.stderr and "1 predictions have no reference" in res.stderr
    assert (tmp_path / "report" / "report.html").exists() and (tmp_path / "report" / "report.md").exists()
    table = run_cli("eval", "-p", str(good), "-r", str(refs), "--bootstrap", "50")
    assert table.returncode == 0 and "CIDEr" in table.stdout and "good" in table.stdout


def test_one_reference_per_line_and_coco_json_agree(files, tmp_path):
    refs, good, _ = files
    per_line = jsonl(tmp_path / "lines.jsonl", [{"id": k, "text": r} for k, v in REFS.items() for r in v])
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps({"annotations": [{"image_id": k, "caption": r} for k, v in REFS.items() for r in v]}))
    assert load_references(per_line) == load_references(refs) == load_references(coco)
    preds = load_predictions(good)[0]
    a = captionkit.evaluate({"s": preds}, load_references(per_line), n_resamples=0).systems[0].corpus
    b = captionkit.evaluate({"s": preds}, load_references(coco), n_resamples=0).systems[0].corpus
    assert a == b


def test_run_output_as_predictions_and_references(posts_csv, tmp_path):
    out = tmp_path / "run"
    captionkit.run(posts_csv, out, RunConfig(stages=["media", "facts", "caption", "write"],
                                             write=captionkit.RunConfig().write.__class__(writer="template")))
    refs = load_references(out)  # the dataset's own post text, per item
    assert refs["a"] == ["hello"]
    for field in ("description", "posts"):
        preds, skipped = load_predictions(out, field)
        assert set(preds) == {"a", "b", "c"} and skipped == {"failed item": 2}
    res = run_cli("eval", "-p", str(out), "--field", "posts", "-r", str(out), "--metrics", "coco,sacrebleu,posts",
                  "--platform", "x", "--format", "json", "--bootstrap", "0")
    assert res.returncode == 0, res.stderr
    system = json.loads(res.stdout)["systems"]["run"]
    assert "chrF" in system and "post:over_limit" in system and system["post:over_limit"] == 0


def test_bad_inputs_are_named(tmp_path, files):
    refs, good, _ = files
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "1", "text": "ok"}\n{"id": 2, "text": \n')
    res = run_cli("eval", "-p", str(broken), "-r", str(refs))
    assert res.returncode == 2 and "line 2" in res.stderr and "broken.jsonl" in res.stderr
    wrong = write_csv(tmp_path / "w.csv", [{"key": "1", "caption": "x"}])
    res = run_cli("eval", "-p", str(wrong), "-r", str(refs))
    assert res.returncode == 2 and "`id` and `text`" in res.stderr and "caption" in res.stderr
    disjoint = jsonl(tmp_path / "d.jsonl", [{"id": "zz", "text": "x"}])
    with pytest.raises(DatasetError, match="ids match"):
        captionkit.evaluate({"d": load_predictions(disjoint)[0]}, load_references(refs))
    with pytest.raises(ConfigError, match="spice"):
        captionkit.evaluate({"g": load_predictions(good)[0]}, load_references(refs), metrics=["spice"])


def test_empty_predictions_are_counted_not_crashing(files):
    refs, _, _ = files
    result = captionkit.evaluate({"e": {"1": "", "2": "a dog", "3": "", "4": "pasta"}}, load_references(refs),
                                 n_resamples=0)
    system = result.systems[0]
    assert system.extras["empty_predictions"] == 2
    assert system.per_item["CIDEr"]["1"] == 0.0
