"""``convnetlab-compare runs=...``: aggregate finished runs into an ILSVRC-style table and charts."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from convnetlab.analysis.comparison import COLUMNS, Row, compare, to_markdown, write_csv
from convnetlab.analysis.comparison_plots import plot_error_vs_epoch, plot_error_vs_gflops
from convnetlab.analysis.generations import generations_table
from convnetlab.analysis.generations import to_markdown as generations_markdown
from convnetlab.analysis.generations import write_csv as write_generations_csv
from convnetlab.models.registry import published_errors
from convnetlab.cli.hydra_app import entry_point
from convnetlab.errors import InputError
from convnetlab.loggers import wandb_credentials_available


def published_beside(rows: list[Row]) -> dict[str, dict]:
    """torchvision's numbers for rows trained on ImageNet with the torchvision-exact network (width 1)."""
    refs = {}
    for row in rows:
        model = row.runs[0].config.get("model") or {}
        if row.data == "imagenet" and float(model.get("width", 1.0)) == 1.0:
            ref = published_errors(row.arch)
            if ref is not None:
                refs[row.label] = ref
    return refs


def log_to_wandb(rows: list[Row], files: dict[str, Path], output_dir: Path, project: str) -> None:
    """One W&B run (job_type=compare) holding the table and both figures."""
    if os.environ.get("WANDB_MODE") == "disabled":
        return
    import wandb

    mode = "online" if wandb_credentials_available() and os.environ.get("WANDB_MODE") != "offline" else "offline"
    run = wandb.init(project=project, job_type="compare", dir=str(output_dir), mode=mode,
                     config={"runs": [str(r.path) for row in rows for r in row.runs]})
    try:
        columns = ["model", "n_runs", *[c for c, _, _ in COLUMNS], *[f"{c}_std" for c, _, _ in COLUMNS]]
        data = [[row.label, row.n, *[row.mean[c] for c, _, _ in COLUMNS], *[row.std[c] for c, _, _ in COLUMNS]]
                for row in rows]
        run.log({"comparison/table": wandb.Table(columns=columns, data=data),
                 "comparison/error_vs_gflops": wandb.Image(str(files["png"])),
                 "comparison/error_vs_epoch": wandb.Image(str(files["epochs"]))})
    finally:
        wandb.finish()


def run_generations(archs: list[str], output_dir: Path) -> dict[str, Path]:
    """Parameter breakdown of torchvision-exact ImageNet networks (README Findings, parameter efficiency)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    rows = generations_table(archs)
    table = generations_markdown(rows)
    files = {"generations_csv": write_generations_csv(rows, output_dir / "generations.csv"),
             "generations_md": output_dir / "generations.md"}
    files["generations_md"].write_text(table)
    print("\n" + table + f"\nwritten to {output_dir}", flush=True)
    return files


def run_compare(cfg: DictConfig, output_dir: Path) -> dict[str, Path]:
    """The comparison of ``cfg.runs`` and/or the generations table of ``cfg.generations``, into ``output_dir``."""
    generations = cfg.get("generations")
    if isinstance(generations, str):  # generations=alexnet
        generations = [generations]
    if OmegaConf.is_missing(cfg, "runs") or cfg.runs is None:
        if not generations:
            raise InputError("give runs=DIR (finished runs or a multirun dir) or generations=[alexnet,googlenet,...]")
        return run_generations(list(generations), output_dir)
    files = run_generations(list(generations), output_dir) if generations else {}
    return files | compare_runs(cfg, output_dir)


def compare_runs(cfg: DictConfig, output_dir: Path) -> dict[str, Path]:
    paths = list(cfg.runs) if isinstance(cfg.runs, ListConfig | list) else [cfg.runs]
    rows, problems = compare(paths)
    if not rows:
        listed = "; ".join(f"{r.path}: {r.problem}" for r in problems)
        raise InputError(f"none of the {len(problems)} runs under runs= finished with test metrics ({listed}); "
                         "pass runs that completed training and testing.")
    output_dir.mkdir(parents=True, exist_ok=True)
    published = published_beside(rows)
    files = {
        "csv": write_csv(rows, output_dir / "comparison.csv", published),
        "md": output_dir / "comparison.md",
        "png": plot_error_vs_gflops(rows, output_dir / "comparison.png"),
        "epochs": plot_error_vs_epoch(rows, output_dir / "comparison_epochs.png"),
    }
    table = to_markdown(rows, problems, published)
    files["md"].write_text(table)
    if cfg.wandb.enabled:
        log_to_wandb(rows, files, output_dir, cfg.wandb.project)
    print("\n" + table)
    print(f"comparison written to {output_dir}", flush=True)
    return files


main = entry_point("compare", run_compare)


if __name__ == "__main__":
    main()
