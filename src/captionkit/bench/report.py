"""What a benchmark run prints and writes: the machine, a table, JSON, and docs/benchmarks.md."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from captionkit.bench.cases import CaseResult

FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile")


def machine() -> dict[str, Any]:
    """CPU model, cores, threads, torch and transformers versions, and the CPU flags that decide fast paths."""
    from captionkit.models.hf import cpu_flags, cpu_has_fast_bf16

    info: dict[str, Any] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                            "python": platform.python_version()}
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    try:
        import torch
        import transformers

        info.update(torch=torch.__version__, transformers=transformers.__version__, threads=torch.get_num_threads(),
                    torch_cpu_capability=torch.backends.cpu.get_cpu_capability())
    except ImportError:
        pass
    info["flags"] = [f for f in FLAGS_OF_INTEREST if f in cpu_flags()]
    info["fast_bf16"] = cpu_has_fast_bf16()
    try:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return info


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table_rows(results: Sequence[CaseResult]) -> list[list[str]]:
    rows = []
    for r in results:
        same = "-" if r.identical is None else ("yes" if r.identical else f"no ({r.agreement:.0%} equal)")
        rows.append([r.name, str(r.items), _fmt(r.baseline_items_per_s), _fmt(r.ours_items_per_s),
                     _fmt(r.baseline_tokens_per_s, 1) if r.new_tokens else "-",
                     _fmt(r.ours_tokens_per_s, 1) if r.new_tokens else "-",
                     f"{r.ratio:.2f}x ({r.ratio_min:.2f}-{r.ratio_max:.2f})", same, _memory(r)])
    return rows


def _memory(r: CaseResult) -> str:
    """Peak resident MB: "plain / ours" where the baseline had a process of its own, else the one process's."""
    if r.baseline_peak_rss_mb is None:
        return _fmt(r.peak_rss_mb, 0)
    return f"{r.baseline_peak_rss_mb:.0f} / {_fmt(r.peak_rss_mb, 0)}"


HEADER = ["case", "items", "plain items/s", "ours items/s", "plain tok/s", "ours tok/s", "ratio (min-max)",
          "identical", "peak RSS MB (plain / ours)"]


def print_table(results: Sequence[CaseResult], console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*HEADER)
    for row in table_rows(results):
        table.add_row(*row)
    (console or Console()).print(table)


def to_json(results: Sequence[CaseResult]) -> str:
    return json.dumps([r.to_dict() for r in results], indent=2)


def markdown(results: Sequence[CaseResult], info: dict[str, Any], *, scale: str, command: str,
             date: dt.datetime | None = None) -> str:
    """One run's section: command, machine, date, table."""
    date = date or dt.datetime.now(dt.timezone.utc)
    lines = [
        f"### `{command}` ({scale} scale), {date:%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {info.get('cpu')}, {info.get('cores')} cores ({info.get('threads')} torch threads), "
        f"{info.get('memory_gib', '?')} GiB; torch {info.get('torch')}, transformers {info.get('transformers')}; "
        f"CPU flags: {', '.join(info.get('flags', [])) or 'none of interest'} "
        f"(fast bf16: {'yes' if info.get('fast_bf16') else 'no'}).",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in table_rows(results)]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str, marker: str) -> None:
    """Put ``section`` into ``path`` between ``<!-- bench:marker -->`` lines, replacing an earlier one."""
    begin, end = f"<!-- bench:{marker} -->", f"<!-- /bench:{marker} -->"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    block = f"{begin}\n{section}{end}\n"
    if begin in text and end in text:
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        text = head + block + tail.lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text, encoding="utf-8")
