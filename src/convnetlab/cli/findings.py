"""``hydra.callbacks.finding``: turn a finished Findings multirun into its table, plot and JSON.

Every ``conf/experiment/findings/*.yaml`` sweeps with ``hydra.sweeper.params`` and registers this
callback, so ``convnetlab-train -m experiment=findings/<name>`` is the whole experiment: when the last
job ends, the sweep dir gets ``finding.md`` (claim, command, table, verdict), ``finding.json`` (every
number, per row and key, and the verdict with each check) and ``finding.png``. The verdict is computed
by the finding's rule (``finding.verdict``: checks comparing two rows on one column, see
:mod:`convnetlab.analysis.findings`); a rule naming a row the sweep will not run stops the sweep at its
start with one ``error:`` line. Nothing is typed by hand; the README quotes these files.
A diverged job (``on_divergence: record``) is a row with the step its loss went NaN, not a lost sweep.

Post steps run the project's own tools on each job's best checkpoint first and add their numbers to
the job's values (also written to its ``metrics.json``): ``sanity_check`` (``convnetlab-visualize``: the saliency sanity-check scores),
``probe`` (``convnetlab-probe`` over all jobs: mean accuracy per distortion) and ``filters`` (kernel
grids of the first and a late conv layer at initialisation and trained, and how much of their energy
sits at low spatial frequencies; see :mod:`convnetlab.analysis.filter_structure`).
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig, OmegaConf

from convnetlab.analysis import findings, verdicts
from convnetlab.analysis.findings import Job
from convnetlab.errors import InputError
from convnetlab.runs import update_metrics

FILES = {"md": "finding.md", "json": "finding.json", "png": "finding.png"}


def best_checkpoint(job: Job) -> str | None:
    return job.metrics.get("ckpt_best") or job.metrics.get("ckpt_last")


def run_tool(tool: str, *overrides: str) -> None:
    """One of the project's own commands, in a child process (so its Hydra run is its own)."""
    subprocess.run([sys.executable, "-m", f"convnetlab.cli.{tool}", *overrides], check=True)


def add_sanity_scores(jobs: list[Job], sweep_dir: Path, options: dict[str, Any]) -> list[str]:
    """``sanity/<method>``: mean Spearman similarity of trained vs randomised maps (convnetlab-visualize)."""
    for job in jobs:
        if best_checkpoint(job) is None:
            continue
        out = job.path / "visualize"
        run_tool("visualize", f"ckpt_path={best_checkpoint(job)}", f"hydra.run.dir={out}",
                 *(f"{k}={v}" for k, v in options.items()))
        summary = json.loads((out / "summary.json").read_text())["sanity_check"]
        job.metrics.update({f"sanity/{name}": result["spearman"] for name, result in summary.items()
                            if isinstance(result, dict)})
    return [str(job.path / "visualize" / "sanity_check.png") for job in jobs if best_checkpoint(job)]


def add_probe_scores(jobs: list[Job], sweep_dir: Path, options: dict[str, Any]) -> list[str]:
    """``probe/<transform>``: mean test top-1 over that distortion's magnitudes (convnetlab-probe)."""
    with_ckpt = [job for job in jobs if best_checkpoint(job)]
    if not with_ckpt:
        return []
    out = sweep_dir / "probe"
    labels = [" ".join(f"{k.split('.')[-1]}={v}" for k, v in job.overrides.items() if k != "experiment") or "run"
              for job in with_ckpt]
    run_tool("probe", f"ckpt_paths=[{','.join(best_checkpoint(j) for j in with_ckpt)}]",
             "labels=[" + ",".join(f"'{label}'" for label in labels) + "]", f"hydra.run.dir={out}",
             *(f"{k}={v}" for k, v in options.items()))
    with open(out / "invariance.csv") as handle:
        rows = list(csv.DictReader(handle))
    for job in with_ckpt:
        mine = [r for r in rows if r["ckpt"] == best_checkpoint(job)]
        for transform in dict.fromkeys(r["transform"] for r in mine):
            accs = [float(r["acc1"]) for r in mine if r["transform"] == transform and float(r["magnitude"]) != 0]
            job.metrics[f"probe/{transform}"] = sum(accs) / len(accs)
    return [str(out / "invariance.png")]


def add_filter_structure(jobs: list[Job], sweep_dir: Path, options: dict[str, Any]) -> list[str]:
    """``filters/<which>_<when>``: low-frequency energy share of the first / a late conv layer."""
    from convnetlab.analysis.filter_structure import filters_at_init_and_trained

    pictures = []
    for job in jobs:
        if best_checkpoint(job) is None:
            continue
        stats, png = filters_at_init_and_trained(best_checkpoint(job), job.path / "filters.png", **options)
        job.metrics.update(stats)
        pictures.append(str(png))
    return pictures


POST_STEPS = {"sanity_check": add_sanity_scores, "probe": add_probe_scores, "filters": add_filter_structure}


class FindingReport(Callback):
    """Hydra callback writing ``finding.{md,json,png}`` into the sweep dir when the multirun ends.

    Args:
        name, claim: the finding's title and the claim under test, copied into ``finding.md``.
        columns: metrics key -> [header, format], the table's columns in order.
        plot: ``y`` (a key of ``columns``), optional ``x`` (an override key: lines over it) and ``log_y``.
        post: name of a post step (``sanity_check`` | ``probe`` | ``filters``) -> its options.
        verdict: the finding's rule, a list of checks (format: :mod:`convnetlab.analysis.findings`,
            "verdicts"); the report computes confirmed / partly reproduced / not reproduced from the
            table's numbers. ``None``: the report states no verdict.
    """

    def __init__(self, name: str, claim: str, columns: dict, plot: dict, post: dict | None = None,
                 verdict: list | None = None) -> None:
        self.name, self.claim = name, claim
        self.columns = {k: tuple(v) for k, v in columns.items()}
        self.plot, self.post = dict(plot), dict(post or {})
        plain = OmegaConf.to_container(verdict) if isinstance(verdict, DictConfig | ListConfig) else verdict
        self.verdict = None if plain is None else [dict(c) if isinstance(c, dict) else c for c in plain]
        self._check()

    def _check(self) -> None:
        """Config mistakes surface when the sweep starts: Hydra would only warn after the last job."""
        bad = [k for k, v in self.columns.items() if len(v) != 2]
        if bad:
            raise InputError(f"finding.columns.{bad[0]}: give [header, format] (quote a header with commas), "
                             f"got {list(self.columns[bad[0]])}")
        if self.plot.get("y") not in self.columns:
            raise InputError(f"finding.plot.y={self.plot.get('y')!r} is not one of finding.columns: {', '.join(self.columns)}")
        unknown = [step for step in self.post if step not in POST_STEPS]
        if unknown:
            raise InputError(f"unknown finding.post step {unknown[0]!r}; valid: {', '.join(POST_STEPS)}")
        if self.verdict is not None:
            try:
                verdicts.check_rule_spec(self.verdict, self.columns)
            except ValueError as err:
                raise InputError(str(err)) from None

    def check_rows(self, sweep: dict[str, list[str]]) -> None:
        """Every row the verdict names is one of the sweep's (``sweep``: override key -> values); InputError."""
        if self.verdict is not None:
            try:
                verdicts.check_rule_rows(self.verdict, sweep)
            except ValueError as err:
                raise InputError(f"{err} (or finding.verdict=null)") from None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.command = "convnetlab-train " + " ".join(sys.argv[1:])  # before jobs rewrite sys.argv (DDP)
        try:  # Hydra turns a callback's exception into a warning: a rule naming a missing row exits here
            self.check_rows(sweep_values(config))
        except InputError as err:
            from convnetlab.cli.input_checks import fail

            fail(err)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self.write(Path(config.hydra.sweep.dir), getattr(self, "command", "convnetlab-train -m ..."))

    def write(self, sweep_dir: Path, command: str) -> dict[str, Path]:
        jobs = findings.load_jobs(sweep_dir)
        if not jobs:
            print(f"finding {self.name}: no job in {sweep_dir} wrote metrics.json; nothing to report", flush=True)
            return {}
        pictures = []
        for step, options in self.post.items():
            options = OmegaConf.to_container(options) if isinstance(options, DictConfig) else dict(options or {})
            try:
                pictures += POST_STEPS[step](jobs, sweep_dir, options)
            except (subprocess.CalledProcessError, OSError, KeyError, ValueError) as err:
                print(f"finding {self.name}: post step {step} failed ({err}); its columns stay empty", flush=True)
        if self.post:  # each job keeps the numbers its post steps measured
            for job in jobs:
                update_metrics(job.path, job.metrics)
        rows = findings.group_jobs(jobs)
        table = findings.to_markdown(rows, self.columns)
        verdict, verdict_md = self.judge(rows)
        header, _ = self.columns[self.plot["y"]]
        files = {key: sweep_dir / name for key, name in FILES.items()}
        findings.plot_rows(rows, files["png"], y=self.plot["y"], y_label=header, x=self.plot.get("x"),
                           log_y=self.plot.get("log_y", False), title=self.name)
        files["md"].write_text(f"# {self.name}\n\nClaim: {self.claim}\n\n```bash\n{command}\n```\n\n{table}\n"
                               + verdict_md + "".join(f"- {p}\n" for p in [str(files["png"]), *pictures]))
        files["json"].write_text(json.dumps({"name": self.name, "claim": self.claim, "command": command,
                                             "columns": {k: v[0] for k, v in self.columns.items()},
                                             "rows": findings.to_json(rows, self.columns), "verdict": verdict,
                                             "pictures": pictures}, indent=2) + "\n")
        print(f"\n{self.name}\n\n{table}\n{verdict_md}finding written to {files['md']}", flush=True)
        return files

    def judge(self, rows: list[findings.FindingRow]) -> tuple[dict | None, str]:
        """The verdict computed from the rows by the finding's rule: (its JSON, its markdown paragraph)."""
        if self.verdict is None:
            return None, "Verdict: no rule given (finding.verdict is null).\n\n"
        try:
            result, checks = verdicts.evaluate_verdict(rows, self.verdict, self.columns)
        except ValueError as err:  # a row the sweep did not produce (a crashed job group)
            return {"result": None, "error": str(err)}, f"Verdict: none ({err}).\n\n"
        held = sum(c.holds for c in checks)
        lines = "".join(f"- {'holds' if c.holds else 'fails'}: {c.text}\n" for c in checks)
        markdown = (f"**Verdict: {result}** ({held} of {len(checks)} checks hold; confirmed = all hold, "
                    f"partly reproduced = some, not reproduced = none)\n\n{lines}\n")
        return {"result": result, "checks": [{"rule": rule, "text": c.text, "holds": c.holds, "a": _plain(c.a),
                                              "b": _plain(c.b), "margin": _plain(c.margin)}
                                             for rule, c in zip(self.verdict, checks)]}, markdown


def _plain(value: float) -> float | None:
    return None if math.isnan(value) else value


def sweep_values(config: DictConfig) -> dict[str, list[str]]:
    """Override key -> the values the BasicSweeper will run: ``hydra.sweeper.params`` with the command
    line's overrides on top (as the sweeper combines them)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    values: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides([*params, *config.hydra.overrides.task]):
        key = override.key_or_group.lstrip("+~")
        values[key] = (list(override.sweep_string_iterator()) if override.is_sweep_override()
                       else [override.get_value_element_as_str()])
    return values
