"""What a unit of each chapter's `full` work costs on this machine's CPU (issue #33).

`full` is sized for a GPU; on a 2-core CPU most chapters would take hours. Rather than
guess, this times one unit of each chapter's heaviest work at its `full` size — an epoch
of its main training on 60,000 images, a PGD-40 attack on 1,000 images, a GAN step, a
pass of EfficientNet-Lite0 at 224 px — and multiplies by how many units the chapter's
`full` settings ask for (read from the notebook's own settings cell, so the count follows
the notebook). Only the work named in each row is counted: a chapter's whole `full` run
costs more than its rows (a lower bound, not a forecast). Epochs are timed on a slice of
`SLICE` images after a warm-up call (which pays torch's one-off imports) and scaled to the
full set: a measured rate, an estimated epoch.

Writes benchmarks/results/full_cpu_cost.json and prints a table; `full-cpu.md` keeps a run.
Run it alone: it uses every core.
"""

from __future__ import annotations

import ast
import json
import time
from pathlib import Path

import nbformat
import numpy as np
import torch

import nblib
from nblib import attacks, dann, data, gan, models, pretrained, scratch

ROOT = Path(__file__).resolve().parents[1]
SLICE = 4000  # images per timed epoch slice
FULL_SET = 60000


def full_settings(chapter: str) -> dict:
    """The notebook's ``S["full"]``, read from its settings cell without running it."""
    notebook = nbformat.read(ROOT / "notebooks" / f"{chapter}.ipynb", as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code" and "S = {" in cell.source:
            tree = ast.parse(cell.source)
            for node in ast.walk(tree):
                if isinstance(node, ast.Dict) and any(
                        isinstance(k, ast.Constant) and k.value == "full" for k in node.keys):
                    full = node.values[[k.value for k in node.keys].index("full")]
                    return {kw.arg: ast.literal_eval(kw.value) for kw in full.keywords}
    raise LookupError(f"{chapter}: no settings cell with a 'full' profile")


def seconds(work, repeat: int = 1) -> float:
    """Wall-clock seconds of `work()`, after one untimed call (warm-up)."""
    work()
    start = time.perf_counter()
    for _ in range(repeat):
        work()
    return (time.perf_counter() - start) / repeat


def epoch_seconds(build, train: data.TensorSet, images: int = FULL_SET, **fit) -> float:
    """One epoch over `images` images: `fit` timed on a slice of `SLICE`, scaled."""
    part = train.subset(SLICE, 0)
    return seconds(lambda: nblib.fit(build(), part, epochs=1, progress=False, **fit)) * images / SLICE


def pgd_seconds(model, test: data.TensorSet, eps: float, steps: int, n: int = 1000) -> float:
    """PGD with `steps` steps on `n` test images (timed on 200)."""
    part = test.subset(200, 0)
    return seconds(lambda: attacks.pgd(model, part.x, part.y, eps, eps / 4, steps)) * n / 200


def measure() -> list[dict]:
    torch.manual_seed(0)
    mnist, mnist_test = data.load("mnist")
    fashion, fashion_test = data.load("fashion-mnist")
    rows = []

    def row(chapter, unit, unit_s, units, what):
        rows.append({"chapter": chapter, "unit": unit, "unit seconds": round(unit_s, 2), "units at full": units,
                     "counted seconds": round(unit_s * units), "counted": what})
        print(f"{chapter}  {unit}: {unit_s:.2f} s × {units:g} = {unit_s * units / 60:.0f} min", flush=True)

    s = full_settings("01_function_fitting")
    c1, c2 = s["cnn_channels"]
    epoch = epoch_seconds(lambda: models.cnn([c1, c2]), mnist, s["mnist_train"], lr=0.1, batch_size=32)
    row("01", f"CNN {c1}×{c2}, epoch of {s['mnist_train']:,} MNIST digits", epoch,
        2 * s["seeds"] * s["cnn_epochs"], "shallow and deep CNN × seeds × epochs (size sweep not counted)")

    s = full_settings("02_from_scratch")
    n_in = 28 * 28
    x = (fashion.x[:SLICE].reshape(SLICE, -1).numpy() - 0.5).astype(np.float32)
    y = fashion.y[:SLICE].numpy()
    net = scratch.two_layer_net(n_in, s["hidden"], 10)
    epoch = seconds(lambda: scratch.sgd(net, x, y, 1, lr=0.1, batch_size=200)) * s["train"] / SLICE
    row("02", f"numpy two-layer net ({s['hidden']} hidden), epoch of {s['train']:,}", epoch,
        s["seeds"] * s["epochs"] + 20 * s["seeds"] * s["ablation_epochs"] * s["ablation_train"] / s["train"],
        "main runs + 20 ablation values × seeds (equal-update runs not counted)")

    s = full_settings("03_optimisation")
    epoch = epoch_seconds(lambda: models.cnn([8, 16], bn=False, global_pool=False), mnist, s["train"],
                          lr=2e-3, optimizer="adam", batch_size=64, schedule="constant")
    row("03", f"small CNN (Adam, batch 64), epoch of {s['train']:,}", epoch, 6 * s["epochs"],
        "trajectory CNNs (3 seeds × 2) × epochs (batch-size, skips and curve runs not counted)")

    s = full_settings("04_generalisation")
    epoch = epoch_seconds(lambda: models.mlp([784, 512, 512, 10]), fashion, s["train"], lr=0.1, batch_size=64)
    row("04", f"MLP 784-512-512-10, epoch of {s['train']:,}", epoch, 16 * s["epochs"],
        "6 tuning runs + 7 more seeds' runs + 3 adversarial ones (at a clean epoch's cost) × epochs; "
        "memorisation and ResNets not counted")

    classifier = pretrained.efficientnet_lite0(device="cpu")
    s = full_settings("05_transfer")
    photos = torch.rand(16, 3, s["size"], s["size"])
    per_image = seconds(lambda: classifier(photos)) / len(photos)
    row("05", f"EfficientNet-Lite0 forward pass at {s['size']} px, per 1,000 images", per_image * 1000,
        3 * 10 * s["test_per_class"] / 1000, "features of the three domains' test images (training pools not counted)")

    s = full_settings("06_saliency")
    photo = torch.rand(1, 3, 224, 224, requires_grad=True)
    step = seconds(lambda: classifier(photo)[0, 0].backward())
    row("06", "EfficientNet-Lite0 input gradient at 224 px, one image at a time", step,
        s["photos"] * (s["sg_samples"] + s["ig_steps"] + sum(s["ig_check"])) + 8 * s["class_model_steps"],
        "photos × (SmoothGrad + IG samples) + 8 class models × steps (CNN maps not counted)")

    s = full_settings("07_adversarial")
    cnn = models.cnn([8, 16, 32])
    epoch = epoch_seconds(lambda: models.cnn([8, 16, 32]), fashion, s["train"], lr=0.05)
    adversarial = epoch_seconds(lambda: models.cnn([8, 16, 32]), fashion, s["train"], lr=0.05,
                                perturb=attacks.AdversarialBatches(eps=0.05, alpha=0.03, steps=3, p=0.5))
    attack = pgd_seconds(cnn.eval(), fashion_test, 0.1, s["steps"], s["attacked"])
    row("07", f"CNN 8-16-32 epoch of {s['train']:,}, standard", epoch, s["seeds"] * s["epochs"], "seeds × epochs")
    row("07", "the same, PGD-3 on half the batches", adversarial, 2 * s["seeds"] * s["epochs"],
        "FGSM-RS and PGD training × seeds × epochs (counted at PGD-3's cost)")
    row("07", f"PGD-{s['steps']} on {s['attacked']:,} test images, one ε", attack,
        len(s["eps"]) * 3 * s["seeds"], "ε values × three networks × seeds")

    s = full_settings("08_dann")
    mnistm, _ = data.load("mnist-m")
    mnist_rgb = mnist.rgb()
    epoch = epoch_seconds(lambda: dann.DANN(bn=True), mnist_rgb, s["labelled"],
                          objective=dann.DomainAdversarial(mnistm), lr=0.05, batch_size=64,
                          schedule=dann.lr_schedule)
    row("08", f"DANN epoch of {s['labelled']:,} digits (+ as many target images)", epoch,
        7 * s["epochs"] + 14 * s["sweep_epochs"] * s["sweep"] / s["labelled"],
        "7 main runs × epochs + 14 sweep runs × epochs (source-only counted at DANN's cost)")

    s = full_settings("09_gans")
    model = gan.GAN(100, s["width"], s["width"])
    digits = mnist.subset(s["batch_size"] * 20, 0)
    step = seconds(lambda: gan.train_gan(model, digits, epochs=1, batch_size=s["batch_size"], progress=False,
                                         snapshots=0)) / 20
    row("09", f"GAN step, width {s['width']}, batch {s['batch_size']}", step,
        3 * s["steps"] + s["steps"] + 2 * s["cond_steps"],
        "3 seeds × steps + 3 saturating-loss runs × a third of the steps + 2 conditional runs × steps")

    s = full_settings("10_pruning")
    epoch = epoch_seconds(lambda: models.cnn([16, 32, 64]), fashion, s["train"], lr=0.05)
    row("10", f"CNN 16-32-64 epoch of {s['train']:,}", epoch,
        s["epochs"] + (len(s["sparsities"]) + len(s["channels"]) + s["finetune_seeds"]) * s["finetune"]
        + s["rounds"] * s["ticket_epochs"] * s["ticket_train"] / s["train"],
        "dense + fine-tunes × epochs + lottery rounds (the lottery's LeNet counted at the CNN's cost)")

    s = full_settings("11_fast_adversarial")
    fgsm_epoch = epoch_seconds(models.strided_cnn, mnist, s["train"], lr=5e-3, batch_size=100, optimizer="adam",
                               perturb=attacks.AdversarialBatches(0.3, 0.375, p=1.0))
    row("11", f"Wong et al.'s CNN, FGSM-RS epoch of {s['train']:,}", fgsm_epoch, 3 * s["seeds"] * s["epochs"],
        "3 recipes × seeds × epochs")
    attack = pgd_seconds(models.strided_cnn().eval(), mnist_test, 0.3, 40, s["attacked"])
    row("11", f"PGD-40 on {s['attacked']:,} test images", attack, 3 * s["seeds"], "recipes × seeds")
    return rows


if __name__ == "__main__":
    torch.set_num_threads(torch.get_num_threads())
    results = measure()
    out = ROOT / "benchmarks" / "results" / "full_cpu_cost.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "rows": results},
                              indent=1) + "\n")
    print(f"written: {out.relative_to(ROOT)}")
