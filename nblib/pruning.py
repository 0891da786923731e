"""Pruning: magnitude masks (through `torch.nn.utils.prune`), real channel pruning, what
pruning buys in bytes and milliseconds, and lottery tickets.

Unstructured pruning (Han et al. 2015) zeroes individual weights: the network keeps its
shape, so dense kernels run no faster, but the weights compress. Structured pruning
(Li et al. 2017) removes whole filters and returns a physically smaller network. The
lottery-ticket procedure (Frankle & Carbin 2019) prunes iteratively and resets the
surviving weights to their initial values.
"""

from __future__ import annotations

import copy
import io
import logging
import zlib
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import prune

PRUNABLE = (nn.Conv2d, nn.Linear)


def prunable(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The (name, module) pairs whose weights pruning acts on: convolutions and linear layers."""
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, PRUNABLE)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Conv2d or Linear layer to prune")
    return layers


def _check_amount(amount: float) -> None:
    if not 0 <= amount < 1:
        raise ValueError(f"amount (the fraction of weights to remove) must be in [0, 1), got {amount}")


def global_magnitude_(model: nn.Module, amount: float) -> nn.Module:
    """Zero, in place, the `amount` fraction of smallest-magnitude weights across all layers
    at once (layers end up with different sparsities). Masks stack with earlier pruning."""
    _check_amount(amount)
    params = [(m, "weight") for _, m in prunable(model)]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
    return model


def layerwise_magnitude_(model: nn.Module, amount: float) -> nn.Module:
    """Zero, in place, the `amount` fraction of smallest-magnitude weights in every layer separately."""
    _check_amount(amount)
    for _, m in prunable(model):
        prune.l1_unstructured(m, "weight", amount=amount)
    return model


def sparsity(model: nn.Module) -> dict:
    """Fraction of zero weights: ``{"overall": f, "layers": {name: f}}`` over prunable weights."""
    layers, zeros, total = {}, 0, 0
    for name, m in prunable(model):
        w = m.weight
        layers[name] = (w == 0).float().mean().item()
        zeros += int((w == 0).sum())
        total += w.numel()
    return {"overall": zeros / total, "layers": layers}


def make_permanent_(model: nn.Module) -> nn.Module:
    """Fold the masks into the weights, in place, so `state_dict` holds plain (sparse-valued) tensors."""
    for _, m in prunable(model):
        if prune.is_pruned(m) and hasattr(m, "weight_mask"):
            prune.remove(m, "weight")
    return model


def masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The current masks (1 = kept), by layer name; all ones for an unpruned layer."""
    return {name: getattr(m, "weight_mask", torch.ones_like(m.weight)).detach().clone()
            for name, m in prunable(model)}


def apply_masks_(model: nn.Module, layer_masks: dict[str, torch.Tensor]) -> nn.Module:
    """Prune `model`, in place, with the given masks (e.g. a lottery ticket's)."""
    for name, m in prunable(model):
        prune.custom_from_mask(m, "weight", layer_masks[name].to(m.weight.device))
    return model


def prune_channels(model: nn.Sequential, amount: float) -> nn.Sequential:
    """Structured pruning of a `nblib.models.cnn`: drop the `amount` fraction of output
    channels with the smallest filter L1 norm in every conv layer, and shrink the batch
    norms, the next convolution and the classifier to match. Returns a new, physically
    smaller dense network, on the input's device and in its train/eval mode, with every
    layer's settings (stride, padding, dilation, batch-norm eps and momentum) kept; the
    input model is unchanged. Grouped convolutions are refused."""
    _check_amount(amount)
    if not isinstance(model, nn.Sequential) or not any(isinstance(m, nn.Conv2d) for m in model):
        raise ValueError("prune_channels needs an nn.Sequential CNN (nblib.models.cnn)")
    if any(isinstance(m, nn.Conv2d) and m.groups != 1 for m in model):
        raise ValueError("prune_channels cannot prune grouped or depthwise convolutions (groups != 1)")
    device = next(model.parameters()).device
    layers = list(copy.deepcopy(model).cpu())
    keep = None
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Conv2d):
            if keep is not None:
                layer = _slice_conv(layer, inputs=keep)
            norms = layer.weight.detach().abs().sum(dim=(1, 2, 3))
            channels = layer.out_channels
            n_keep = max(1, round(channels * (1 - amount)))
            keep = norms.argsort(descending=True)[:n_keep].sort().values
            layers[i] = _slice_conv(layer, outputs=keep)
        elif isinstance(layer, nn.BatchNorm2d):
            layers[i] = _slice_bn(layer, keep)
        elif isinstance(layer, nn.Linear) and keep is not None:
            layers[i] = _slice_linear_inputs(layer, keep, channels)
            keep = None
    return nn.Sequential(*layers).to(device).train(model.training)


def _slice_conv(conv: nn.Conv2d, inputs=None, outputs=None) -> nn.Conv2d:
    w = conv.weight.detach()
    w = w if inputs is None else w[:, inputs]
    w = w if outputs is None else w[outputs]
    new = nn.Conv2d(w.shape[1], w.shape[0], conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    bias=conv.bias is not None, padding_mode=conv.padding_mode)
    new.weight.data.copy_(w)
    if conv.bias is not None:
        new.bias.data.copy_(conv.bias.detach() if outputs is None else conv.bias.detach()[outputs])
    return new


def _slice_bn(bn: nn.BatchNorm2d, keep: torch.Tensor) -> nn.BatchNorm2d:
    new = nn.BatchNorm2d(len(keep), bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    if bn.affine:
        for name in ("weight", "bias"):
            getattr(new, name).data.copy_(getattr(bn, name).detach()[keep])
    if bn.track_running_stats:
        for name in ("running_mean", "running_var"):
            getattr(new, name).copy_(getattr(bn, name)[keep])
        new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new


def _slice_linear_inputs(linear: nn.Linear, keep: torch.Tensor, channels: int) -> nn.Linear:
    """The classifier after the last conv: its inputs are channel-major blocks of
    spatial positions (one position after global pooling, H·W after flattening)."""
    positions = linear.in_features // channels
    columns = (keep[:, None] * positions + torch.arange(positions)).flatten()
    new = nn.Linear(len(columns), linear.out_features, bias=linear.bias is not None)
    new.weight.data.copy_(linear.weight.detach()[:, columns])
    if linear.bias is not None:
        new.bias.data.copy_(linear.bias.detach())
    return new


def size_report(model: nn.Module) -> dict[str, int]:
    """Bytes of the weights: stored dense (float32), stored sparse (each prunable weight
    as its nonzero values plus a one-bit-per-weight mask; other tensors dense), and the
    dense file compressed with zlib (what zeros buy a generic compressor)."""
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("_mask")}
    pruned = {f"{name}.weight": m.weight.detach() for name, m in prunable(model)}
    dense = sparse = 0
    for key, tensor in state.items():
        key = key.replace("weight_orig", "weight")
        tensor = pruned.get(key, tensor)
        dense += tensor.numel() * tensor.element_size()
        if key in pruned:
            sparse += int((tensor != 0).sum()) * tensor.element_size() + (tensor.numel() + 7) // 8
        else:
            sparse += tensor.numel() * tensor.element_size()
    buffer = io.BytesIO()
    torch.save({k: pruned.get(k.replace("weight_orig", "weight"), v) for k, v in state.items()}, buffer)
    return {"dense_bytes": dense, "sparse_bytes": sparse, "zlib_bytes": len(zlib.compress(buffer.getvalue(), 9))}


@dataclass(frozen=True)
class Latency:
    """Seconds per forward pass: the median and the interquartile range over repeated
    blocks, with the number of CPU threads it ran on."""

    median: float
    iqr: float
    threads: int


def latency(model: nn.Module, batch: torch.Tensor, min_run_time: float = 1.0, threads: int | None = None) -> Latency:
    """Seconds per forward pass of `batch` in eval and inference mode on the CPU, measured
    with `torch.utils.benchmark` (warm-up, repeated blocks for at least `min_run_time`
    seconds, a fixed number of `threads`: default torch's current setting)."""
    cpp_log = logging.getLogger("torch.utils.cpp_extension")
    level, cpp_log.level = cpp_log.level, logging.ERROR  # its "No CUDA runtime" warning is about compiling
    try:
        from torch.utils import benchmark
    finally:
        cpp_log.setLevel(level)

    model = copy.deepcopy(model).cpu().eval()  # a CPU copy: the caller's model stays where it is
    threads = threads or torch.get_num_threads()
    timer = benchmark.Timer(stmt="model(batch)", globals={"model": model, "batch": batch.cpu()}, num_threads=threads)
    with torch.inference_mode():
        measured = timer.blocked_autorange(min_run_time=min_run_time)
    return Latency(measured.median, measured.iqr, threads)


def _reset_(model: nn.Module, initial: dict[str, torch.Tensor]) -> None:
    """Reset every weight to its initial value, in place, keeping the masks."""
    state = model.state_dict()
    for key in state:
        if not key.endswith("_mask"):
            state[key] = initial[key.replace("weight_orig", "weight")]
    model.load_state_dict(state)


def lottery_ticket(build, train, test, rounds: int, amount: float = 0.2, **fit_kwargs) -> list[dict]:
    """Iterative magnitude pruning with resetting (Frankle & Carbin 2019).

    Train ``build()``; then `rounds` times: prune the `amount` fraction of the remaining
    weights (globally), reset the survivors to their initial values, retrain. After each
    round, a control with the same mask and a fresh random initialisation is trained the
    same way. Returns one row per round: sparsity, the ticket's and the control's final
    test accuracy (the control is absent for the dense round 0).
    """
    from .train import fit, progress_bar

    _check_amount(amount)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise ValueError(f"rounds must be a whole number >= 0, got {rounds!r}")
    model = build()
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    rows = []
    with progress_bar(rounds + 1, "lottery ticket rounds") as bar:
        for r in range(rounds + 1):
            if r:
                global_magnitude_(model, amount)
                _reset_(model, initial)
            row = {"round": r, "sparsity": sparsity(model)["overall"],
                   "reset ticket": fit(model, train, test, progress=False, **fit_kwargs).test_acc[-1]}
            if r:
                control = apply_masks_(build(), masks(model))
                row["random re-initialisation"] = fit(control, train, test, progress=False, **fit_kwargs).test_acc[-1]
            rows.append(row)
            bar.update()
    return rows
