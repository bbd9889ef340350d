"""Training data and trainers for the models behind captionkit (captioner, VQA model, post writer)."""
