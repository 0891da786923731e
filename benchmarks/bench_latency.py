"""Chapter 10's speed-up under load: networks timed one after the other vs in alternation.

Chapter 10's dense CNN (16-32-64 channels) and its copies with 25, 50 and 75% of the
channels removed, plus a same-shape copy, on a batch of 256 Fashion-MNIST-sized images,
one thread, 0.15 s per network (the chapter's quick setting). Each repeat measures the
dense / half-channel ratio twice: with `torch.utils.benchmark`, one network after the
other (how the chapter measured before), and with `nblib.pruning.latencies`, in
alternation. Three conditions: nothing else running, a neighbour process that trains a
small CNN on the other core in bursts (0.05–0.5 s of work, 0–0.3 s of rest, like a chapter
that also loads data and draws figures), and one that trains without a pause.
Prints each ratio and writes results/bench_latency.json.

Target: the alternating ratios stay within a narrower range than the sequential ones under
load, and above chapter 10's bar (1.5×).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils import benchmark

from nblib import models, pruning

SETTINGS = dict(batch=256, seconds=0.15, repeats=8, threads=1)
NEIGHBOUR = """
import random, sys, time, torch
torch.set_num_threads(1)
net = torch.nn.Sequential(torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                          torch.nn.Linear(32 * 26 * 26, 10))
opt = torch.optim.SGD(net.parameters(), 0.01)
x, y = torch.rand(128, 1, 28, 28), torch.randint(0, 10, (128,))
rng, bursty = random.Random(0), sys.argv[1] == "bursty"
while True:
    busy = time.time() + (rng.uniform(0.05, 0.5) if bursty else 1.0)
    while time.time() < busy:
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    time.sleep(rng.uniform(0.0, 0.3) if bursty else 0.0)
"""


def sequential(variants: dict, batch: torch.Tensor) -> dict:
    """Each network's median seconds per pass, measured one after the other."""
    batch = batch.contiguous(memory_format=torch.channels_last)
    medians = {}
    for name, model in variants.items():
        model = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
        timer = benchmark.Timer("model(batch)", globals={"model": model, "batch": batch},
                                num_threads=SETTINGS["threads"])
        with torch.inference_mode():
            medians[name] = timer.blocked_autorange(min_run_time=SETTINGS["seconds"]).median
    return medians


def ratios(variants: dict, batch: torch.Tensor) -> dict:
    """Dense / half-channel ratios, `repeats` times by each method."""
    measured = {"one after the other": [], "in alternation": []}
    for _ in range(SETTINGS["repeats"]):
        one = sequential(variants, batch)
        measured["one after the other"].append(one["dense"] / one["half"])
        both = pruning.latencies(variants, batch, SETTINGS["seconds"], threads=SETTINGS["threads"])
        measured["in alternation"].append(both["dense"].median / both["half"].median)
    return measured


def main() -> None:
    torch.manual_seed(0)
    dense = models.cnn([16, 32, 64]).eval()
    variants = {"dense": dense, "same shape": copy.deepcopy(dense)}
    for fraction, name in ((0.25, "quarter"), (0.5, "half"), (0.75, "three quarters")):
        variants[name] = pruning.prune_channels(dense, fraction)
    batch = torch.rand(SETTINGS["batch"], 1, 28, 28)
    results = {}
    for condition in ("alone", "bursty", "steady"):
        neighbour = None
        if condition != "alone":
            neighbour = subprocess.Popen([sys.executable, "-c", NEIGHBOUR, condition])
            time.sleep(3)  # its imports done, its loop running
        try:
            results[condition] = ratios(variants, batch)
        finally:
            if neighbour:
                neighbour.kill()
                neighbour.wait()
        for method, values in results[condition].items():
            print(f"{condition:7} {method:20} min {min(values):.2f} max {max(values):.2f}  "
                  + " ".join(f"{v:.2f}" for v in values))
    out = Path(__file__).resolve().parents[1] / "results" / "bench_latency.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"settings": SETTINGS, "ratios": results}, indent=1))


if __name__ == "__main__":
    main()
