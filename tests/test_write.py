"""Writing end to end: run = describe then write, `captionkit write` over described items, few-shot
examples, per-item failures (a writer URL that is down, a template with a missing field), and the API."""

from __future__ import annotations

import json

import pytest

import captionkit
from captionkit.config import RunConfig
from captionkit.pipeline.core import Pipeline
from conftest import run_cli, write_csv

pytest.importorskip("transformers")
from tiny_lm import build_tiny_lm

FAST_DESCRIBE = "media,facts,caption,ocr"


def lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return build_tiny_lm(tmp_path_factory.mktemp("lm") / "m", max_positions=1024)  # room for the x prompt


def test_run_describes_then_writes_with_a_local_model(posts_csv, tmp_path, tiny_lm):
    out = tmp_path / "out"
    res = run_cli("run", str(posts_csv), "--out", str(out), "--stages", FAST_DESCRIBE + ",write", "--no-progress",
                  "--ocr", "none", "--writer", str(tiny_lm), "--writer-max-new-tokens", "12", "-n", "2",
                  "--platform", "x")
    assert res.returncode == 0, res.stderr
    rows = {r["id"]: r for r in lines(out / "results.jsonl")}
    good = rows["a"]
    assert good["description"] and good["models"]["writer"] == str(tiny_lm)
    assert len(good["posts"]) == 2 and all(set(p) >= {"text", "chars"} for p in good["posts"])
    assert all(p["chars"] == len(p["text"]) <= 280 for p in good["posts"])
    assert "prompt" in good["outputs"]["write"] and good["outputs"]["write"]["prompt"]["user"]
    assert rows["d"]["error"]["stage"] == "media"  # the broken file still fails alone
    again = run_cli("run", str(posts_csv), "--out", str(out), "--stages", FAST_DESCRIBE + ",write", "--no-progress",
                    "--ocr", "none", "--writer", str(tiny_lm), "--writer-max-new-tokens", "12", "-n", "2",
                    "--platform", "x")
    assert "3 already finished" in again.stderr


def test_write_command_over_a_run_folder_a_describe_file_and_a_csv(posts_csv, tmp_path, media_dir):
    described = tmp_path / "described"
    assert captionkit.run(posts_csv, described, RunConfig(stages=FAST_DESCRIBE.split(","))).done == 3
    res = run_cli("write", str(described), "--out", str(tmp_path / "w1"), "--writer", "template",
                  "--platform", "instagram", "--no-progress")
    assert res.returncode == 0, res.stderr
    rows = lines(tmp_path / "w1" / "results.jsonl")
    assert [r["id"] for r in rows] == ["a", "b", "c"]  # the failed items of the run are not written
    assert all(r["posts"][0]["text"] for r in rows)

    desc = run_cli("describe", str(media_dir / "red.jpg"), "--stages", "media,facts,caption", "--format", "jsonl")
    (tmp_path / "d.jsonl").write_text(desc.stdout)
    res = run_cli("write", str(tmp_path / "d.jsonl"), "--out", str(tmp_path / "w2"), "--writer", "template",
                  "--platform", "alt-text", "--no-progress")
    assert res.returncode == 0, res.stderr
    [row] = lines(tmp_path / "w2" / "results.jsonl")
    post = row["posts"][0]["text"]
    assert len(post) <= 125 and "#" not in post

    data = write_csv(tmp_path / "c.csv", [{"id": "1", "caption": "A red bicycle against a yellow wall.",
                                           "company": "Velo", "likes": 30}])
    res = run_cli("write", str(data), "--out", str(tmp_path / "w3"), "--writer", "template",
                  "--map", "metadata.description=caption", "--map", "media=", "--no-progress")
    assert res.returncode == 0, res.stderr
    [row] = lines(tmp_path / "w3" / "results.jsonl")
    assert "bicycle" in row["posts"][0]["text"].lower()


def test_a_writer_url_that_is_down_fails_each_item_with_the_reason(tmp_path):
    data = write_csv(tmp_path / "c.csv", [{"id": str(i), "description": f"A photo number {i}."} for i in range(3)])
    cfg = RunConfig.from_dict({"stages": ["write"], "map": {"media": None},
                               "write": {"writer": "http://127.0.0.1:9/v1", "retries": 0, "timeout": 2}})
    summary = captionkit.api.write_dataset(data, tmp_path / "out", cfg)
    assert summary.failed == 3 and summary.done == 0
    [group] = summary.failures
    assert group["stage"] == "write" and "127.0.0.1:9" in group["reason"] and "unreachable" in group["reason"]


def test_a_template_with_a_missing_field_names_field_and_line(tmp_path):
    tpl = tmp_path / "mine.j2"
    tpl.write_text("{% block user %}Post about {{ description }}\nfor {{ metadata.campaign }}{% endblock %}")
    cfg = RunConfig.from_dict({"write": {"writer": "template", "template": str(tpl)}})
    [out] = captionkit.write({"id": "a", "description": "A cat."}, cfg)
    assert "campaign" in out["error"] and "line 2" in out["error"] and "mine.j2" in out["error"]
    [ok] = captionkit.write({"id": "b", "description": "A cat.", "metadata": {"campaign": "Spring"}}, cfg)
    assert ok["prompt"]["user"] == "Post about A cat.\nfor Spring"


def test_examples_are_retrieved_and_never_the_item_itself(tmp_path):
    history = tmp_path / "history.jsonl"
    history.write_text("\n".join(json.dumps(r) for r in [
        {"id": "a", "text": "Our espresso is pulled fresh every morning.", "description": "An espresso shot in a cup."},
        {"id": "h2", "text": "Latte art Friday is back!", "description": "A latte with a heart in the foam."},
        {"id": "h3", "text": "New trail shoes just dropped.", "description": "Running shoes on a rocky trail."},
    ]) + "\n")
    cfg = RunConfig.from_dict({"write": {"writer": "template", "examples": str(history), "k": 1, "embedder": "bm25"}})
    [out] = captionkit.write({"id": "a", "description": "An espresso shot in a cup on a counter."}, cfg)
    assert out["examples"] == ["h2"]  # the nearest other post; "a" is the item itself
    assert "Latte art Friday" in out["prompt"]["user"] or "Latte art Friday" in (out["prompt"]["system"] or "")


def test_pipeline_from_a_yaml_config_equals_the_flags(tmp_path):
    yml = tmp_path / "run.yaml"
    yml.write_text("stages: [write]\nwrite: {writer: template, platform: linkedin, num_candidates: 2}\n")
    pipeline = Pipeline.from_config(yml)
    [result] = pipeline.process([captionkit.Item(id="z", metadata={"description": "A team meeting in a bright office."})])
    assert result.ok and len(result.outputs["write"]["posts"]) == 2
    assert result.outputs["write"]["platform"] == "linkedin"
