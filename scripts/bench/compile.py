"""torch.compile speed-up per family: training step time eager vs compiled (``module.compile=true``).

Run: python scripts/bench/compile.py [--reps 5] [--steps 10] [--json FILE]

For each model (the CPU-sized families of ``experiment=mini_ilsvrc``, channels-last as the default
``module.channels_last=true``): two copies with the same weights, one eager, one compiled in place with
``nn.Module.compile()`` (as ``ImageClassifier`` does). Compile time: the compiled copy's first two
training steps (forward and backward graphs are compiled in the first) minus two eager steps. Step
time: SGD steps (forward, cross-entropy, backward, update) on a fixed random batch after 3 warm-up
steps; each repetition times ``--steps`` steps of one copy, the copies alternating; median over
``--reps``. Speed-up = eager / compiled step time (> 1: compiled is faster). ``max |dlogits|`` is the
largest difference between the two copies' eval-mode logits on one batch before training.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from compute_efficiency import CASES as EFFICIENCY_CASES  # noqa: E402 (scripts/bench is on sys.path)
from convnetlab.models import build_model

# (label, build_model kwargs, input size, batch): the CPU-sized models of compute_efficiency.py (the
# mini_ilsvrc families and the default ResNet-18), without its full-width ResNets.
CASES = [case for case in EFFICIENCY_CASES if " w1" not in case[0]]


def steps(model, optimizer, images, labels, n: int) -> float:
    """Seconds for ``n`` training steps."""
    start = time.perf_counter()
    for _ in range(n):
        out = model(images)
        loss = F.cross_entropy(out[0] if isinstance(out, tuple) else out, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def measure(label: str, kwargs: dict, size: int, batch: int, reps: int, n: int) -> dict:
    torch.manual_seed(0)
    channels = kwargs.get("in_channels", 3)
    eager = build_model(num_classes=10, input_size=size, **kwargs).to(memory_format=torch.channels_last)
    compiled = copy.deepcopy(eager)
    compiled.compile()
    images = torch.randn(batch, channels, size, size).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch,))
    eager.eval(), compiled.eval()
    with torch.no_grad():
        diff = (eager(images) - compiled(images)).abs().max().item()  # also compiles the eval graph
    eager.train(), compiled.train()
    opt_e = torch.optim.SGD(eager.parameters(), lr=0.01, momentum=0.9)
    opt_c = torch.optim.SGD(compiled.parameters(), lr=0.01, momentum=0.9)
    compile_s = steps(compiled, opt_c, images, labels, 2) - steps(eager, opt_e, images, labels, 2)
    steps(eager, opt_e, images, labels, 3), steps(compiled, opt_c, images, labels, 3)
    times = {"eager": [], "compiled": []}
    for rep in range(reps):
        order = [("eager", eager, opt_e), ("compiled", compiled, opt_c)]
        for name, model, opt in order if rep % 2 == 0 else order[::-1]:
            times[name].append(steps(model, opt, images, labels, n) / n)
    eager_s, compiled_s = statistics.median(times["eager"]), statistics.median(times["compiled"])
    return {"model": label, "input": f"{size} px, {batch}", "eager_ms": 1e3 * eager_s, "compiled_ms": 1e3 * compiled_s,
            "speedup": eager_s / compiled_s,
            "speedup_range": [min(times["eager"]) / max(times["compiled"]), max(times["eager"]) / min(times["compiled"])],
            "compile_s": compile_s, "max_logit_diff": diff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.reps} x {args.steps} steps")
    rows = [measure(*case, args.reps, args.steps) for case in CASES]
    print("| model | input, batch | eager ms/step | compiled ms/step | speed-up (median) | range | compile s "
          "| max \\|dlogits\\| |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        lo, hi = r["speedup_range"]
        print(f"| {r['model']} | {r['input']} | {r['eager_ms']:.1f} | {r['compiled_ms']:.1f} | {r['speedup']:.2f}x "
              f"| {lo:.2f}-{hi:.2f} | {r['compile_s']:.1f} | {r['max_logit_diff']:.1e} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
