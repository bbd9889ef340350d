"""Shared model plumbing: options, device/dtype choice, loading by hub id or path, the model catalogue."""
