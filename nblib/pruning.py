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
import math
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import prune

from .models import MLPStack

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
    """Prune `model`, in place, with the given masks (e.g. a lottery ticket's): one mask of
    zeros and ones per prunable layer, of the layer's weight's shape."""
    layers = dict(prunable(model))
    if layer_masks.keys() != layers.keys():
        raise ValueError(f"need one mask per prunable layer ({', '.join(layers)}), got {', '.join(layer_masks)}")
    for name, m in layers.items():
        mask = layer_masks[name]
        if mask.shape != m.weight.shape:
            raise ValueError(f"the mask of {name!r} has shape {tuple(mask.shape)}, its weight {tuple(m.weight.shape)}")
        if not ((mask == 0) | (mask == 1)).all():
            raise ValueError(f"the mask of {name!r} holds values other than 0 and 1")
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


def latencies(models: Mapping[str, nn.Module], batch: torch.Tensor, min_run_time: float = 1.0,
              threads: int | None = None, rounds: int = 20) -> dict[str, Latency]:
    """Seconds per forward pass of `batch` through each of `models`, in eval and inference
    mode on the CPU, timed in alternation so that other work on the machine weighs on all
    of them alike.

    Each model gets `rounds` blocks of passes, about ``min_run_time / rounds`` seconds each
    (at least one pass), after a warm-up; round r starts at the r-th model, so none always
    runs first. Timed one after the other instead, a change in a neighbour's load between
    two models moves their ratio (`torch.utils.benchmark`, the tests' peer, times one
    statement at a time).

    Args: `models` name → network (each timed as a CPU copy, so the caller's stays where
    and as it is); `batch` the input (images timed in channels-last order); `threads` CPU
    threads (default torch's current setting); `rounds` ≥ 3.
    Returns: name → `Latency`, the median and interquartile range over its blocks."""
    if not models:
        raise ValueError("latencies needs at least one model to time")
    if rounds < 3:
        raise ValueError(f"rounds must be at least 3 for a median and a spread, got {rounds}")
    if min_run_time <= 0:
        raise ValueError(f"min_run_time must be positive seconds, got {min_run_time}")
    batch = batch.cpu()
    channels_last = batch.dim() == 4  # every variant in the fastest layout, as `nblib.predict` runs them
    if channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)
    copies = {}
    for name, model in models.items():
        copies[name] = copy.deepcopy(model).cpu().eval()
        if channels_last:
            copies[name].to(memory_format=torch.channels_last)

    def seconds_per_pass(model: nn.Module, passes: int) -> float:
        start = time.perf_counter()
        for _ in range(passes):
            model(batch)
        return (time.perf_counter() - start) / passes

    threads = threads or torch.get_num_threads()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    names = list(copies)
    seconds = {name: [] for name in names}
    try:
        with torch.inference_mode():
            passes = {}
            for name, model in copies.items():
                seconds_per_pass(model, 1)  # warm-up: first-call allocations and kernel selection
                passes[name] = max(1, round(min_run_time / rounds / seconds_per_pass(model, 3)))
            for r in range(rounds):
                for name in names[r % len(names):] + names[:r % len(names)]:
                    seconds[name].append(seconds_per_pass(copies[name], passes[name]))
    finally:
        torch.set_num_threads(previous_threads)
    quartiles = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)
    result = {}
    for name, times in seconds.items():
        q1, median, q3 = torch.tensor(times, dtype=torch.float64).quantile(quartiles).tolist()
        result[name] = Latency(median, q3 - q1, threads)
    return result


def _stack_losses(stack: MLPStack, data, batch_size: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    """Per copy: mean cross-entropy and accuracy on `data` (two tensors of length copies)."""
    device = stack.weights[0].device
    loss = correct = 0
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            x, y = data.x[i:i + batch_size].to(device), data.y[i:i + batch_size].to(device)
            logits = stack(x)
            loss = loss + nn.functional.cross_entropy(
                logits.transpose(1, 2), y.expand(len(logits), -1), reduction="none").sum(1)
            correct = correct + (logits.argmax(2) == y).sum(1)
    return loss / len(data), correct / len(data)


def _train_stack(stack: MLPStack, train, val, epochs: int, lr: float, batch_size: int, eval_every: int,
                 generator: torch.Generator, bar) -> tuple[torch.Tensor, MLPStack]:
    """Adam on every copy at once (each copy's gradient is that of its own mean loss; Adam
    is elementwise, so the copies train exactly as they would apart), the same batches
    for all. Every `eval_every` steps and at the end, each copy's validation loss is
    measured. Returns the step of each copy's lowest validation loss (Frankle & Carbin's
    early-stopping iteration) and a stack holding each copy's weights at that step."""
    device = stack.weights[0].device
    opt = torch.optim.Adam(stack.parameters(), lr=lr, fused=device.type in ("cpu", "cuda"))
    x, y = train.x.flatten(1).to(device), train.y.to(device)
    best_loss = torch.full((stack.copies,), float("inf"), device=device)
    best_step = torch.zeros(stack.copies, dtype=torch.long, device=device)
    early_stopped = copy.deepcopy(stack)
    step, last = 0, epochs * -(-len(y) // batch_size)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator).to(device)
        for i in range(0, len(y), batch_size):
            batch = order[i:i + batch_size]
            logits = stack(x[batch])
            loss = nn.functional.cross_entropy(
                logits.transpose(1, 2), y[batch].expand(len(logits), -1), reduction="sum") / len(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            stack.mask_gradients_()
            opt.step()
            step += 1
            bar.update()
            if step % eval_every == 0 or step == last:
                val_loss = _stack_losses(stack, val)[0]
                if not torch.isfinite(val_loss).all():
                    raise FloatingPointError(f"lottery-ticket training diverged by step {step} (validation loss "
                                             f"{val_loss.tolist()}): lower the learning rate (lr={lr})")
                better = val_loss < best_loss
                best_loss = torch.where(better, val_loss, best_loss)
                best_step[better] = step
                early_stopped.take_(stack, better)
    return best_step, early_stopped


def lottery_tickets(sizes: list[int], train, val, test, rounds: int, amount: float = 0.2, seeds=(0, 1, 2),
                    epochs: int = 5, lr: float = 1.2e-3, batch_size: int = 60, eval_every: int = 50,
                    device=None) -> list[dict]:
    """Iterative magnitude pruning with resetting (Frankle & Carbin 2019), for `nblib.mlp`
    networks of layer `sizes`, one independent run per seed, all trained at once.

    Round 0 trains each seed's network from its initial weights. Each later round prunes
    the `amount` fraction of each network's remaining weights (globally over its layers),
    resets the survivors to their initial values and retrains: the *reset ticket*. Beside
    each, a control with the same mask and fresh random initial weights trains the same
    way (Frankle & Carbin's random re-initialisation). Training is Adam (the paper: lr
    1.2e-3, batch 60), with the validation loss on `val` measured every `eval_every`
    steps; the same batch order for every network of a round. Returns one row per round,
    seed and arm: sparsity, final test accuracy, the early-stopping step (lowest
    validation loss) and the test accuracy there.
    """
    from .models import mlp
    from .train import pick_device, progress_bar

    _check_amount(amount)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise ValueError(f"rounds must be a whole number >= 0, got {rounds!r}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {seeds!r}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("eval_every", eval_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr}")
    device = torch.device(device) if device else pick_device()

    def initial(seed: int) -> nn.Sequential:
        with torch.random.fork_rng(devices=[]):  # the caller's random state is left alone
            torch.manual_seed(seed)
            return mlp(sizes)

    tickets = [initial(seed) for seed in seeds]
    ticket_masks = None  # round 0 is dense
    rows = []
    steps = epochs * -(-len(train) // batch_size)
    with progress_bar((rounds + 1) * steps, "lottery ticket rounds") as bar:
        for r in range(rounds + 1):
            arms = {"reset ticket": tickets}
            if r:  # the controls' fresh weights come from seeds no ticket uses
                arms["random re-initialisation"] = [initial(10_000 * r + seed) for seed in seeds]
            stack = MLPStack([net for nets in arms.values() for net in nets]).to(device)
            if ticket_masks is not None:
                stack.set_masks_([mask.repeat(1, len(arms), 1) for mask in ticket_masks])
            generator = torch.Generator().manual_seed(r)
            best_step, early_stopped = _train_stack(stack, train, val, epochs, lr, batch_size, eval_every,
                                                    generator, bar)
            final_acc, early_acc = _stack_losses(stack, test)[1], _stack_losses(early_stopped, test)[1]
            density = sum(mask.sum((0, 2)) for mask in stack.masks) / sum(mask[:, 0].numel() for mask in stack.masks)
            for m, (arm, seed) in enumerate((arm, seed) for arm in arms for seed in seeds):
                rows.append({"round": r, "seed": seed, "arm": arm, "sparsity": 1 - density[m].item(),
                             "test accuracy": final_acc[m].item(), "early-stop step": best_step[m].item(),
                             "test accuracy at early stop": early_acc[m].item()})
            ticket_masks = _prune_tickets(stack, len(seeds), amount)
    return rows


def _prune_tickets(stack: MLPStack, n: int, amount: float) -> list[torch.Tensor]:
    """The next round's masks for the first `n` copies (the tickets), ``in × n × out`` per
    layer: each copy pruned by `global_magnitude_` on its final trained weights, by an
    `amount` of what remains."""
    new = [[] for _ in stack.masks]
    for m, net in enumerate(stack.unstack()[:n]):
        apply_masks_(net, {name: mask[:, m].T for (name, _), mask in zip(prunable(net), stack.masks, strict=False)})
        global_magnitude_(net, amount)
        for layer, layer_mask in zip(new, masks(net).values(), strict=False):
            layer.append(layer_mask.T)
    return [torch.stack(layer, dim=1) for layer in new]
