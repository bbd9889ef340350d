"""``captionkit bench``: our inference paths against the plain Hugging Face loop, on the same saved weights.

* ``configs``: the real architectures of the default models as config dicts, scaled down for ``--quick`` and
  the tests; random-weight models built from them (with a tokenizer of the right vocabulary size), saved once;
* ``cases``: one case per model and setting, alternating ours and the baseline after a warm-up; the frame
  sampling case; the end-to-end ``captionkit run`` case;
* ``report``: the table, the JSON and docs/benchmarks.md.
"""

from __future__ import annotations
