"""Blur formulations: is there a faster way to compute the paper's ``box2-pad1`` smoothing, with the same numbers?

Issue 6: the paper's blur, ``AvgPool2d(2, stride=1, padding=1)`` (count_include_pad), grows every smoothed map
by one row and column (ResNet-18 on CIFAR: 33x33 after stage 1, 17x17 inside stage 2, ...). Two parts:

**(a) layer level.** The whole smoothing layer ``s(x) = blur(z)``, ``z = relu(τ·tanh(x/τ))`` (τ = 10), where
every formulation computes ``y[i, j] = (z[i-1, j-1] + z[i-1, j] + z[i, j-1] + z[i, j]) / 4`` with ``z = 0``
outside the map (output (H+1)x(W+1)); they differ only in float rounding order:

- ``avgpool`` (the reference): the paper code's ``nn.AvgPool2d(2, stride=1, padding=1)``;
- ``shift4``: zero-pad 1 on every side, sum of the 4 shifted (H+1)x(W+1) views, times 0.25;
- ``shift2x2``: the same sum done separably (neighbour pairs along W, then along H: 2 adds instead of 3);
- ``dwconv``: depthwise ``conv2d`` with a 2x2 kernel of 1/4 and padding 1 (``PaddedBox2.depthwise``), what
  smoothbench uses on the CPU (chosen from this benchmark's CPU figures; other devices keep ``avg_pool2d``);
- ``compile avgpool`` / ``compile dwconv``: ``torch.compile`` of the layer with either blur (inductor fuses
  tanh, relu and a pooling; a convolution stays a library call).

Each is timed forward (no grad) and forward+backward (``autograd.grad`` w.r.t. the input) on the ResNet-18
CIFAR stage shapes [B, w, 32, 32], [B, 2w, 16, 16], [B, 4w, 8, 8] (``--batch`` B, ``--width`` w), fp32
contiguous and, on CUDA, also fp32 and bf16 channels-last; the max |difference| to the avgpool output and input
gradient is printed; speed-ups are against ``avgpool``.

**(b) network level.** A ResNet-18 mcdo tanh-blur SGD training step (:func:`smoothbench.training.loop.train_step`,
``--net-batch`` random images, same weights in every variant) with

- ``avgpool (paper)``: ``box2-pad1`` with the paper code's ``AvgPool2d`` blur (smoothed maps 33, 18, 10, 6 on
  CIFAR), the reference of every ratio;
- ``dwconv blur``: every blur computed as the depthwise conv (smoothbench's choice on the CPU);
- ``pad-even``: the same model with every odd smoothed map but the last zero-padded by one row at the
  bottom and one column at the right (33 -> 34). Exact for the next stage, which starts with a 3x3
  stride-2 pad-1 conv (output row i reads input rows 2i-1..2i+1, i <= 16, so row 33 at most: a zero in
  both) and a 1x1 stride-2 shortcut (rows 0, 2, .., 32 in both); every later op sees the same 17x17 maps.
  Not done for the last slot, which feeds global average pooling (an extra zero row would change the
  mean). The 17x17 maps inside stage 2 cannot be made even exactly: an extra conv output row would enter
  BatchNorm's batch statistics. Checked numerically (:func:`check_exact`: eval logits; logits and every
  parameter gradient of one seeded train-mode step);
- ``box2-same``: the ``box2-same`` blur (replicate pad, maps 32/16/8/4): a different model, NOT equivalent,
  timed to show what the odd sizes cost at most;
- ``shift4`` / ``shift2x2``: the same with those layer-level formulations (exactly equal up to rounding
  order; checked like ``pad-even``).

Steps run in ``--modes`` (``fp32`` eager; ``bf16-cl`` autocast + channels-last; ``bf16-cl-compile`` the same
compiled); ``--repeats`` rounds alternate the variants and the best round of each counts (shared machines).
Ratios are speed-ups against the paper's formulation (> 1: faster).

Usage::

    PYTHONPATH=. python benchmarks/blur_formulations.py --device cpu --batch 16 --width 16 --net-batch 32 --net-width 16
    PYTHONPATH=. python benchmarks/blur_formulations.py --device cuda
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils import benchmark

from smoothbench.device import resolve_device, to_channels_last
from smoothbench.models.layers import PaddedBox2, Smoothing
from smoothbench.models.registry import create_model
from smoothbench.training.loop import train_step

TAU = 10.0
MODES = {  # name -> (precision, channels_last, compile)
    "fp32": ("fp32", False, False),
    "bf16-cl": ("bf16", True, False),
    "bf16-cl-compile": ("bf16", True, True),
}
NET_VARIANTS = ("pad-even", "box2-same", "dwconv", "shift4", "shift2x2")
REFERENCE = "avgpool (paper)"


# ------------------------------------------------------------------------------------------ (a) layer level
class Shift4Box2(nn.Module):
    """box2-pad1 as the sum of the four shifted views of the zero-padded map, times 1/4."""

    def forward(self, x: Tensor) -> Tensor:
        p = F.pad(x, (1, 1, 1, 1))
        return (p[..., :-1, :-1] + p[..., :-1, 1:] + p[..., 1:, :-1] + p[..., 1:, 1:]) * 0.25


class Shift2x2Box2(nn.Module):
    """box2-pad1 separably: neighbour pairs along W, then along H, of the zero-padded map, times 1/4."""

    def forward(self, x: Tensor) -> Tensor:
        p = F.pad(x, (1, 1, 1, 1))
        pairs = p[..., :, :-1] + p[..., :, 1:]
        return (pairs[..., :-1, :] + pairs[..., 1:, :]) * 0.25


def paper_blur() -> nn.Module:
    """The paper code's blur, the reference of every comparison."""
    return nn.AvgPool2d(2, stride=1, padding=1)


class DepthwiseBox2(PaddedBox2):
    """smoothbench's blur forced to its depthwise-convolution form on every device."""

    def forward(self, x: Tensor) -> Tensor:
        return self.depthwise(x)


def smoothing_with(blur: nn.Module | None) -> Smoothing:
    """smoothbench's tanh-blur layer, with its blur swapped for ``blur`` (same squash code)."""
    layer = Smoothing("tanh-blur", "box2-pad1", TAU)
    if blur is not None:
        layer.blur = blur
    return layer


def best_ms(fn: Callable[[], object], min_time: float) -> float:
    """Milliseconds per call of ``fn`` in its fastest timed block (torch.utils.benchmark; it syncs CUDA).

    The fastest block, not the median: on a shared machine it is the least disturbed one.
    """
    timer = benchmark.Timer("fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return min(timer.blocked_autorange(min_run_time=min_time).times) * 1e3


def layer_level(args, device: torch.device) -> None:
    """Print time and max |Δ| of every formulation, per stage shape and precision/format."""
    w = args.width
    shapes = [(args.batch, w, 32, 32), (args.batch, 2 * w, 16, 16), (args.batch, 4 * w, 8, 8)]
    configs = [(torch.float32, False)] + ([(torch.float32, True), (torch.bfloat16, True)] if device.type == "cuda" else [])
    for dtype, channels_last in configs:
        label = f"{str(dtype).split('.')[-1]}{' channels-last' if channels_last else ' contiguous'}"
        print(f"\n== (a) layer level, {label}: ms per call (fastest timed block), speed-up = avgpool / this; "
              f"outputs reach τ = {TAU:g}{' (bf16 spacing there: 0.0625)' if dtype == torch.bfloat16 else ''}")
        print(f"{'shape':18} {'formulation':16} {'fwd ms':>9} {'x ref':>6} {'fwd+bwd ms':>11} {'x ref':>6} "
              f"{'max|d| out':>11} {'max|d| grad':>11}  note")
        for shape in shapes:
            torch.manual_seed(0)
            x = to_channels_last((torch.randn(shape, device=device) * 4).to(dtype), channels_last)
            xg = x.detach().clone().requires_grad_(True)
            g = to_channels_last(torch.randn((shape[0], shape[1], shape[2] + 1, shape[3] + 1), device=device)
                                 .to(dtype), channels_last)
            layers = {"avgpool": smoothing_with(paper_blur()), "shift4": smoothing_with(Shift4Box2()),
                      "shift2x2": smoothing_with(Shift2x2Box2()), "dwconv": smoothing_with(DepthwiseBox2())}
            layers = {k: v.to(device) for k, v in layers.items()}
            if args.compile:
                torch._dynamo.reset()  # one fresh cache per shape: no recompilation limit, no dynamic shapes
                for blur in ("avgpool", "dwconv"):
                    plain = smoothing_with(paper_blur() if blur == "avgpool" else DepthwiseBox2()).to(device)
                    layers[f"compile {blur}"] = torch.compile(plain, dynamic=False)
            ref_out, ref_grad, base = None, None, None
            for name, layer in layers.items():
                def fwd(layer=layer) -> Tensor:
                    with torch.no_grad():
                        return layer(x)

                def fwd_bwd(layer=layer) -> Tensor:
                    return torch.autograd.grad(layer(xg), xg, g)[0]

                start = time.perf_counter()
                out, grad = fwd(), fwd_bwd()  # first calls: compilation for ``compile ...``
                first_s = time.perf_counter() - start
                if ref_out is None:
                    ref_out, ref_grad = out, grad
                d_out = (out.float() - ref_out.float()).abs().max().item()
                d_grad = (grad.float() - ref_grad.float()).abs().max().item()
                t_f, t_fb = best_ms(fwd, args.min_time), best_ms(fwd_bwd, args.min_time)
                base = base or (t_f, t_fb)
                note = f"first calls {first_s:.1f}s (compile)" if name.startswith("compile") else ""
                print(f"{str(list(shape)):18} {name:16} {t_f:9.3f} {base[0] / t_f:6.2f} {t_fb:11.3f} "
                      f"{base[1] / t_fb:6.2f} {d_out:11.2e} {d_grad:11.2e}  {note}")


# ---------------------------------------------------------------------------------------- (b) network level
class PadBottomRight(nn.Module):
    """Zero-pad one row at the bottom and one column at the right (an odd map becomes even)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x, (0, 1, 0, 1))


def resnet(width: int | None, blur: str) -> nn.Module:
    torch.manual_seed(0)
    return create_model("resnet18", method="mcdo", smoothing="tanh-blur", blur=blur, width=width, num_classes=10)


def smoothed_shapes(model: nn.Module) -> list[tuple[int, int]]:
    """(channels, side) of each smoothing slot's output for a 32x32 input (one eval-mode forward, on the CPU)."""
    shapes: list[tuple[int, int]] = []
    slots = [getattr(model, f"smooth{k}") for k in range(1, 5)]
    hooks = [slot.register_forward_hook(lambda module, inputs, out: shapes.append((out.shape[1], out.shape[-1])))
             for slot in slots]
    was_training = model.training
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, 32, 32))
    model.train(was_training)
    for hook in hooks:
        hook.remove()
    return shapes


def pad_even(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose odd smoothed maps (all slots but the last, see the module docstring) are padded."""
    padded = copy.deepcopy(model)
    for k, (_, side) in enumerate(smoothed_shapes(model)[:-1], start=1):
        if side % 2:
            getattr(padded, f"smooth{k}").append(PadBottomRight())
    return padded


def with_blur(model: nn.Module, formulation: str) -> nn.Module:
    """A copy of ``model`` with every smoothing layer's blur computed by the layer-level ``formulation``."""
    swapped = copy.deepcopy(model)
    blur = {"shift4": Shift4Box2, "shift2x2": Shift2x2Box2, "dwconv": DepthwiseBox2, "avgpool": paper_blur}[formulation]
    for k in range(1, len(smoothed_shapes(model)) + 1):
        getattr(swapped, f"smooth{k}")[0].blur = blur()
    return swapped


def _rel(a: Tensor, b: Tensor) -> float:
    """``max|a - b| / max|a|``: the largest difference relative to the reference's scale."""
    return ((a - b).abs().max() / a.abs().max().clamp_min(1e-30)).item()


def check_exact(reference: nn.Module, candidate: nn.Module, device: torch.device, batch: int) -> str:
    """Relative max |Δ| (:func:`_rel`) of eval logits (float32 and float64), and of logits and every parameter
    gradient of one seeded train-mode step in float64.

    Gradients are compared in float64 because a ReLU network's gradient is discontinuous at its kinks: a
    float32 rounding difference of 1e-7 can move a pre-activation that lands near 0 across the kink and
    change that element's gradient entirely, which says nothing about whether two formulations are equal.
    """
    torch.manual_seed(1)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    with torch.no_grad():
        d32 = _rel(copy.deepcopy(reference).to(device).eval()(x), copy.deepcopy(candidate).to(device).eval()(x))
    outs = []
    for model in (reference, candidate):
        model = copy.deepcopy(model).to(device, torch.float64)
        with torch.no_grad():
            eval_logits = model.eval()(x.double())
        model.train()
        torch.manual_seed(2)  # same dropout masks in both
        logits = model(x.double())
        F.cross_entropy(logits, y).backward()
        outs.append((eval_logits, logits.detach(), [p.grad for p in model.parameters()]))
    d64, d_train = _rel(outs[0][0], outs[1][0]), _rel(outs[0][1], outs[1][1])
    d_grad = max(_rel(ga, gb) for ga, gb in zip(outs[0][2], outs[1][2]))
    return (f"max|d|/max|ref|: eval logits {d32:.1e} (fp32); float64: eval logits {d64:.1e}, train-step logits "
            f"{d_train:.1e}, parameter gradients {d_grad:.1e} (worst tensor)")


def time_steps(models: dict[str, nn.Module], mode: str, args, device: torch.device) -> dict[str, float]:
    """Best images/s of each model over ``--repeats`` rounds of ``--steps`` train steps, variants alternating."""
    precision, channels_last, compiled = MODES[mode]
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    torch.manual_seed(3)
    x = to_channels_last(torch.randn(args.net_batch, 3, 32, 32, device=device), channels_last)
    y = torch.randint(0, 10, (args.net_batch,), device=device)
    steps = {}
    for name, model in models.items():
        model = to_channels_last(copy.deepcopy(model).to(device).train(), channels_last)
        net = torch.compile(model) if compiled else model
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)

        def step(net=net, optimizer=optimizer, scheduler=scheduler) -> None:
            train_step(net, optimizer, scheduler, x, y, precision=precision)

        start = time.perf_counter()
        for _ in range(args.warmup):
            step()
        sync()
        print(f"  {mode} {name}: {args.warmup} warm-up steps {time.perf_counter() - start:.1f}s"
              f"{' (includes compilation)' if compiled else ''}")
        steps[name] = step
    best = dict.fromkeys(models, 0.0)
    for _ in range(args.repeats):
        for name, step in steps.items():
            sync()
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            sync()
            best[name] = max(best[name], args.steps * args.net_batch / (time.perf_counter() - start))
    return best


def network_level(args, device: torch.device) -> None:
    ours = resnet(args.net_width, "box2-pad1")
    reference = with_blur(ours, "avgpool")
    models = {REFERENCE: reference}
    for variant in args.net_variants:
        if variant == "pad-even":
            models[variant] = pad_even(reference)
        elif variant == "box2-same":
            same = resnet(args.net_width, "box2-same")
            same.load_state_dict(ours.state_dict())  # blurs own no parameters: same weights, other maps
            models["box2-same (not equivalent)"] = same
        else:
            models[f"{variant} blur"] = with_blur(ours, variant)  # dwconv: smoothbench's CPU blur
    print(f"\n== (b) network level: resnet18 mcdo tanh-blur width {args.net_width or 64}, batch {args.net_batch}, "
          f"{args.steps} timed steps x best of {args.repeats} rounds after {args.warmup} warm-up steps")
    for name, model in models.items():
        print(f"  {name:28} smoothed map sides {[side for _, side in smoothed_shapes(model)]}")
    for name, model in models.items():
        if name not in (REFERENCE, "box2-same (not equivalent)"):
            print(f"  {name} vs {REFERENCE} on {device}: {check_exact(reference, model, device, args.net_batch)}")
    for mode in args.modes:
        torch._dynamo.reset()
        rates = time_steps(models, mode, args, device)
        for name, rate in rates.items():
            print(f"  {mode:16} {name:28} {rate:10.1f} images/s  x{rate / rates[REFERENCE]:.3f} vs {REFERENCE}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--part", choices=["layer", "net", "both"], default="both")
    parser.add_argument("--batch", type=int, default=128, help="(a) batch of the layer-level shapes")
    parser.add_argument("--width", type=int, default=64, help="(a) channels of the first stage (ResNet-18: 64)")
    parser.add_argument("--min-time", type=float, default=0.5, help="(a) seconds of timed blocks per measurement")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="(a) skip the torch.compile row")
    parser.add_argument("--net-batch", type=int, default=128, help="(b) training batch")
    parser.add_argument("--net-width", type=int, default=None, help="(b) ResNet-18 base width (default 64)")
    parser.add_argument("--modes", default=None, help="(b) comma-separated of " + ", ".join(MODES) +
                        " (default: fp32 on CPU; bf16-cl,bf16-cl-compile on CUDA)")
    parser.add_argument("--net-variants", default=",".join(NET_VARIANTS),
                        help="(b) comma-separated variants timed against the paper-blur model: " + ", ".join(NET_VARIANTS))
    parser.add_argument("--steps", type=int, default=20, help="(b) timed steps per round")
    parser.add_argument("--warmup", type=int, default=3, help="(b) untimed steps first (compilation)")
    parser.add_argument("--repeats", type=int, default=3, help="(b) rounds; the best of each variant counts")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    modes = args.modes or ("bf16-cl,bf16-cl-compile" if device.type == "cuda" else "fp32")
    args.modes = [m.strip() for m in modes.split(",")]
    unknown = [m for m in args.modes if m not in MODES]
    if unknown:
        parser.error(f"unknown --modes {unknown}; choose from {', '.join(MODES)}")
    args.net_variants = [v.strip() for v in args.net_variants.split(",") if v.strip()]
    unknown = [v for v in args.net_variants if v not in NET_VARIANTS]
    if unknown:
        parser.error(f"unknown --net-variants {unknown}; choose from {', '.join(NET_VARIANTS)}")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device {name}, torch {torch.__version__}")
    if args.part in ("layer", "both"):
        layer_level(args, device)
    if args.part in ("net", "both"):
        network_level(args, device)


if __name__ == "__main__":
    main()
