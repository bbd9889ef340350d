"""docs/proofs.md assembly: running one proof replaces its own section and keeps the others."""

from __future__ import annotations

from captionkit.training import proofs


def _result(trainer: str, cider: float) -> dict:
    scores = {"CIDEr": cider, "exact_match": 0.5, "example": {"prediction": "p", "reference": "r"}}
    result = {"trainer": trainer, "seconds": 60.0, "train_items": 9, "val_items": 1, "steps": 3,
              "settings": {"model": "m", "method": "full", "batch_size": 2}}
    for key, _ in proofs.COLUMNS[trainer]:
        result[key] = scores
    return result


def test_one_proof_replaces_only_its_section(tmp_path):
    docs = tmp_path / "proofs.md"
    docs.write_text(proofs._merge(docs, {
        "writer": proofs._section(_result("writer", 1.0), "cmd writer"),
        "captioner": proofs._section(_result("captioner", 2.0), "cmd captioner"),
    }))
    docs.write_text(proofs._merge(docs, {"writer": proofs._section(_result("writer", 7.0), "cmd writer")}))
    text = docs.read_text()
    assert text.startswith("# Learning proofs")
    assert text.count("## writer") == 1 and text.count("## captioner") == 1
    assert "| CIDEr | 7.000 | 7.000 |" in text and "| CIDEr | 2.000 | 2.000 | 2.000 |" in text
    assert text.index("## writer") < text.index("## captioner")  # the order of PROOFS
