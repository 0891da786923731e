"""nblib.attacks.pgd vs torchattacks.PGD: same model, batch and settings, side by side.

A LeNet-sized CNN trained briefly on Fashion-MNIST; 1,000 test images; L∞ PGD with
eps 0.1, alpha 0.01, 40 steps, no random start (so both run the same iteration). Prints
seconds and success rate for each and the time ratio; writes results/bench_attacks.json.

Target: nblib no slower than torchattacks (time ratio ≤ 1.0) at the same success rate.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torchattacks

import nblib
from nblib import attacks

SETTINGS = dict(eps=0.1, alpha=0.01, steps=40, images=1000, repeats=3)


def main() -> None:
    nblib.setup("bench_attacks", "quick", 0, device="cpu")
    train, test = nblib.load("fashion-mnist")
    model = nblib.cnn([8, 16, 32])
    nblib.fit(model, train.subset(10000), epochs=1, lr=0.05, progress=False)
    x, y = test.x[:SETTINGS["images"]], test.y[:SETTINGS["images"]]
    kwargs = {k: SETTINGS[k] for k in ("eps", "alpha", "steps")}
    reference = torchattacks.PGD(model, **kwargs, random_start=False)
    times = {"nblib": [], "torchattacks": []}
    success = {}
    for _ in range(SETTINGS["repeats"]):  # interleaved, so load drifts hit both
        for name, run in [("nblib", lambda: attacks.pgd(model, x, y, **kwargs, random_start=False)),
                          ("torchattacks", lambda: reference(x, y))]:
            start = time.perf_counter()
            x_adv = run()
            times[name].append(time.perf_counter() - start)
            success[name] = attacks.attack_stats(model, x, x_adv, y)["success"]
    best = {name: min(t) for name, t in times.items()}
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), **SETTINGS,
              **{f"{n}_seconds": round(best[n], 3) for n in best}, **{f"{n}_success": success[n] for n in success},
              "time_ratio_nblib_over_torchattacks": round(best["nblib"] / best["torchattacks"], 3)}
    out = Path(__file__).parent / "results" / "bench_attacks.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"nblib PGD {best['nblib']:.2f} s (success {success['nblib']:.3f})   torchattacks PGD "
          f"{best['torchattacks']:.2f} s (success {success['torchattacks']:.3f})   time ratio "
          f"{best['nblib'] / best['torchattacks']:.2f} (best of {SETTINGS['repeats']}; written to {out})")


if __name__ == "__main__":
    main()
