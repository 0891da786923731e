"""nblib.transfer.features vs the package's own EfficientNet.extract_features, at 224² and 112².

EfficientNet-Lite0 with its ImageNet weights, 128 real MNIST-M test images, batches of
64, eval and inference mode on both sides. The peer computes only the head's map
(``extract_features`` plus a spatial mean); nblib also keeps every stage's spatial mean,
so the ratio is the price of the extra taps. Prints images/s per side and size, the
time ratio, and the speed-up of 112² over 224² (chapter 05 uses 112² at quick); writes
results/bench_transfer.json.

Target: nblib within 5% of the peer (time ratio ≤ 1.05), the same head features.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

import nblib
from nblib import data, pretrained, transfer

SETTINGS = dict(images=128, batch_size=64, sizes=[224, 112], repeats=2)


def peer(classifier, images: torch.Tensor, size: int) -> torch.Tensor:
    """The head's spatial mean through the package's own feature path."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), SETTINGS["batch_size"]):
            x = transfer.network_input(images[i:i + SETTINGS["batch_size"]], size)
            out.append(classifier.net.extract_features((x * 255 - 127) / 128).mean((2, 3)))
    return torch.cat(out)


def main() -> None:
    nblib.setup("bench_transfer", "quick", 0, device="cpu")
    classifier = pretrained.efficientnet_lite0("cpu")
    images = data.load("mnist-m")[1].x[:SETTINGS["images"]]
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), **SETTINGS}
    for size in SETTINGS["sizes"]:
        runs = {"nblib": lambda s=size: transfer.features(classifier, images, s, progress=False)["head"],
                "peer": lambda s=size: peer(classifier, images, s)}
        peer(classifier, images[:SETTINGS["batch_size"]], size)  # warm-up, untimed
        times, heads = {"nblib": [], "peer": []}, {}
        for _ in range(SETTINGS["repeats"]):  # interleaved, so load drifts hit both
            for name, run in runs.items():
                start = time.perf_counter()
                heads[name] = run()
                times[name].append(time.perf_counter() - start)
        same = torch.allclose(heads["nblib"], heads["peer"], atol=1e-4)
        best = {name: min(t) for name, t in times.items()}
        result[f"{size}"] = {"nblib_images_per_s": round(len(images) / best["nblib"], 1),
                             "peer_images_per_s": round(len(images) / best["peer"], 1),
                             "time_ratio_nblib_over_peer": round(best["nblib"] / best["peer"], 3),
                             "same_head_features": same}
        print(f"{size}²: nblib {len(images) / best['nblib']:.0f} images/s, peer {len(images) / best['peer']:.0f} "
              f"images/s, time ratio {best['nblib'] / best['peer']:.2f}, same head features: {same}")
    result["speedup_112_over_224"] = round(result["112"]["nblib_images_per_s"] / result["224"]["nblib_images_per_s"], 2)
    out = Path(__file__).parent / "results" / "bench_transfer.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"112² is {result['speedup_112_over_224']}× as fast as 224² (written to {out})")


if __name__ == "__main__":
    main()
