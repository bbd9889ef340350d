"""Debian's Chromium driven by Playwright (never a downloaded browser), shared by the browser tests."""

from __future__ import annotations

import os

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def sync_playwright_or_skip():
    """Playwright's ``sync_playwright``, or a skip naming what is missing (Chromium or the package)."""
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"browser checks need Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser checks need the playwright Python package (pip install playwright)")
    return sync_playwright
