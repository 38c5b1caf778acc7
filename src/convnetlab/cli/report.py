"""Short human-readable summaries printed at the end of a run."""

from __future__ import annotations

from pathlib import Path

ROWS = [
    ("model", "{}"), ("data", "{}"), ("params", "{:,}"), ("gflops", "{:.4f}"),
    ("val/acc1", "{:.2%}"), ("val/acc5", "{:.2%}"), ("test/acc1", "{:.2%}"), ("test/acc5", "{:.2%}"),
    ("train_images_per_s", "{:.0f}"), ("infer_images_per_s", "{:.0f}"), ("train_seconds", "{:.1f}"),
    ("peak_memory_mb", "{:.0f}"),
]


def print_result_table(metrics: dict, run_dir: Path) -> None:
    """Print the headline metrics and where the run lives."""
    width = max(len(key) for key, _ in ROWS)
    lines = [f"  {key:<{width}}  {fmt.format(metrics[key])}" for key, fmt in ROWS if metrics.get(key) is not None]
    print("\n".join(["", "result:", *lines, f"  {'run_dir':<{width}}  {run_dir}", ""]), flush=True)
