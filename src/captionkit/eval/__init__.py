"""Evaluation: caption metrics equal to the COCO reference code, semantic similarity, post checks, reports."""
