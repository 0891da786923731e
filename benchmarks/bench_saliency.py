"""nblib.saliency vs captum: same model, batch and settings, side by side.

A small CNN trained briefly on Fashion-MNIST; 256 test images; the gradient (Saliency),
integrated gradients (64 trapezoid intervals; captum with 65 points, method
"riemann_trapezoid", internal batch 256) and Grad-CAM at the last ReLU (LayerGradCam).
Prints seconds per method for each library and the time ratios; writes
results/bench_saliency.json.

Target: nblib no slower than captum (time ratio ≤ 1.0) for each method.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from captum.attr import IntegratedGradients, LayerGradCam, Saliency

import nblib
from nblib import saliency

SETTINGS = dict(images=256, steps=64, repeats=3)


def main() -> None:
    nblib.setup("bench_saliency", "quick", 0, device="cpu")
    train, test = nblib.load("fashion-mnist")
    model = nblib.cnn([8, 16, 32], bn=False)
    nblib.fit(model, train.subset(10000), epochs=1, lr=0.05, progress=False)
    x, y = test.x[:SETTINGS["images"]], test.y[:SETTINGS["images"]]
    layer = model[-3]  # the last ReLU, before global pooling
    steps = SETTINGS["steps"]
    methods = {
        "gradient": (lambda: saliency.gradient(model, x, y),
                     lambda: Saliency(model).attribute(x.clone().requires_grad_(True), target=y)),
        "integrated gradients": (
            lambda: saliency.integrated_gradients(model, x, y, steps=steps),
            lambda: IntegratedGradients(model).attribute(x, target=y, n_steps=steps + 1,
                                                         method="riemann_trapezoid",
                                                         internal_batch_size=256)),
        "grad-cam": (lambda: saliency.grad_cam(model, x, y, layer, upsample=False),
                     lambda: LayerGradCam(model, layer).attribute(x, target=y, relu_attributions=True)),
    }
    best = {}
    for method, runs in methods.items():
        times = {"nblib": [], "captum": []}
        for _ in range(SETTINGS["repeats"]):  # interleaved, so load drifts hit both
            for name, run in zip(times, runs, strict=True):
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        best[method] = {name: min(t) for name, t in times.items()}
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), **SETTINGS,
              **{f"{m} {n} seconds": round(t[n], 4) for m, t in best.items() for n in t},
              **{f"{m} time ratio nblib over captum": round(t["nblib"] / t["captum"], 3) for m, t in best.items()}}
    out = Path(__file__).parent / "results" / "bench_saliency.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    for method, t in best.items():
        print(f"{method:22s} nblib {t['nblib']:.3f} s   captum {t['captum']:.3f} s   "
              f"ratio {t['nblib'] / t['captum']:.2f}")


if __name__ == "__main__":
    main()
