#!/usr/bin/env python3
"""Write the OpenAPI document of ``captionkit serve`` without starting a server or loading a model.

    python scripts/openapi.py                     # to stdout
    python scripts/openapi.py --out openapi.json  # to a file

Then fuzz a running server against it with schemathesis (bounded, against your own server only):

    captionkit serve --captioner basic --writer template --ocr none &
    st run openapi.json --url http://127.0.0.1:8000 --max-examples 20
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from captionkit.config import RunConfig
from captionkit.serve import ServeSettings, create_app


def openapi_document() -> dict:
    """The document as the server publishes it at /openapi.json (the routes do not depend on the models)."""
    with tempfile.TemporaryDirectory() as jobs:
        app = create_app(RunConfig(), ServeSettings(ui=False, jobs_dir=jobs), api_keys=())
        return app.openapi()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="File to write (default: stdout).")
    args = parser.parse_args(argv)
    text = json.dumps(openapi_document(), indent=2, sort_keys=False) + "\n"
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out} ({len(text)} bytes)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
