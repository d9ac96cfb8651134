"""Model surgery: spatial smoothing before every downsampling stage of any CNN, and MC dropout for any model.

**Where smoothing goes** (the paper's rule: a smoothing layer at the end of every stage, before the next
spatial downsampling; for ResNets after each of the four stages, the last one before global pooling).
:func:`plan_smoothing` runs one dry forward with hooks and records, in call order, the output resolution
of every module and the input/output resolution of every convolution. Walking the module tree from the
top, the children of a container are laid out in call order; a child whose children change resolution
among themselves (a VGG ``features`` Sequential, a DenseNet or MobileNet ``features``) is opened up and its
children take its place. The sequence is then cut into *segments* of one resolution; a segment that holds
a convolution working at that resolution (input and output the same size: a stage's body, not a stem's
strided convolution) gets a smoothing layer after its last module, where the next module lowers the
resolution or the feature maps end (global pooling, flatten); when that last module is the first part of
a small downsampling unit (a DenseNet transition, a ConvNeXt downsampling layer: an opened container of two
resolutions), the layer goes before the unit instead, at the end of the stage. A network with no such segment (no 4-D
feature maps, e.g. a vision transformer) is refused instead of guessed at.

Insertion uses forward hooks on the chosen modules, so the model's own modules, names and state-dict keys
do not change (weights load before and after alike) and :class:`Smoothing` layers, whose blur kernels are
non-persistent buffers, add no keys. The smoothing modules live in a ``ModuleDict`` of the wrapper that
owns the hooks, so they move with ``.to(device)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from smoothbench.errors import UserError, param
from smoothbench.models.layers import MCDropout, Smoothing

#: Dropout modules that ``mc_dropout="auto"`` turns into MC dropout (timm's DropPath is stochastic depth,
#: not dropout: left alone).
DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


@dataclass(frozen=True)
class Insertion:
    """One inserted layer: after (or, for ``"before"``, in front of) module ``module`` (a dotted name)."""

    module: str
    where: str  # "after" | "before"
    kind: str
    channels: int
    resolution: str

    def row(self) -> dict[str, object]:
        return {"module": self.module, "where": self.where, "inserted": self.kind, "channels": self.channels,
                "resolution": self.resolution}


@dataclass
class _Call:
    name: str
    module: nn.Module
    out_hw: tuple[int, int] | None
    out_channels: int
    in_hw: tuple[int, int] | None


def _trace(model: nn.Module, example: Tensor) -> list[_Call]:
    """Every module call of one forward of ``example``, in call order, with its input/output map sizes."""
    calls: list[_Call] = []
    hooks = []

    def shape_of(value) -> tuple[tuple[int, int] | None, int]:
        while isinstance(value, (tuple, list)) and value:
            value = value[0]
        if isinstance(value, Tensor) and value.dim() == 4:
            return (int(value.shape[-2]), int(value.shape[-1])), int(value.shape[1])
        return None, 0

    for name, module in model.named_modules():
        if not name:
            continue

        def record(mod, inputs, output, name=name):
            out_hw, channels = shape_of(output)
            in_hw, _ = shape_of(inputs)
            calls.append(_Call(name, mod, out_hw, channels, in_hw))

        hooks.append(module.register_forward_hook(record))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return calls


def _children_in_call_order(parent: str, calls: list[_Call], names: set[str]) -> list[str]:
    """The direct children of ``parent`` that ran, in the order of their first call."""
    prefix = f"{parent}." if parent else ""
    seen: dict[str, None] = {}
    for call in calls:
        if call.name.startswith(prefix):
            child = prefix + call.name[len(prefix):].split(".")[0]
            if child in names:
                seen.setdefault(child, None)
    return list(seen)


def _layout(parent: str, calls: list[_Call], last: dict[str, _Call], names: set[str],
            opened: dict[str, int]) -> list[str]:
    """The modules under ``parent`` in call order, opening up every child whose own children change
    resolution among themselves (``opened`` gets each such child and the number of resolutions it spans)."""
    laid = []
    for child in _children_in_call_order(parent, calls, names):
        grandchildren = _children_in_call_order(child, calls, names)
        sizes = {last[g].out_hw for g in grandchildren if g in last and last[g].out_hw is not None}
        if len(sizes) > 1:
            opened[child] = len(sizes)
            laid += _layout(child, calls, last, names, opened)
        else:
            laid.append(child)
    return laid


def _before_downsampler(order: list[str], i: int, opened: dict[str, int]) -> int:
    """Where a boundary found after ``order[i]`` goes: before the whole downsampling unit when ``order[i]``
    is inside one (an opened container of two resolutions whose change follows ``order[i]``, such as a
    DenseNet transition or a ConvNeXt downsampling layer), so smoothing ends a stage, not a unit's norm."""
    for unit, spans in opened.items():
        inside = order[i].startswith(unit + ".")
        if spans == 2 and inside and i + 1 < len(order) and order[i + 1].startswith(unit + "."):
            first = next(j for j, name in enumerate(order) if name.startswith(unit + "."))
            return first - 1 if first > 0 else i
    return i


def _works_at(module_name: str, hw: tuple[int, int], calls: list[_Call]) -> bool:
    """Whether a convolution inside (or at) ``module_name`` keeps the resolution ``hw`` (a stage's body)."""
    for call in calls:
        inside = call.name == module_name or call.name.startswith(module_name + ".")
        if inside and isinstance(call.module, nn.Conv2d) and call.in_hw == hw and call.out_hw == hw:
            return True
    return False


def plan_smoothing(model: nn.Module, example: Tensor) -> list[tuple[str, int, tuple[int, int]]]:
    """``(module name, channels, resolution)`` after which the paper's rule puts a smoothing layer."""
    calls = _trace(model, example)
    names = {name for name, _ in model.named_modules() if name}
    last = {call.name: call for call in calls}
    opened: dict[str, int] = {}
    order = _layout("", calls, last, names, opened)
    plan = []
    for i, name in enumerate(order):
        here = last[name]
        if here.out_hw is None:
            continue
        following = next((last[n].out_hw for n in order[i + 1:] if n in last), None)
        if following == here.out_hw:
            continue  # the segment goes on
        start = i
        while start > 0 and last[order[start - 1]].out_hw == here.out_hw:
            start -= 1
        if any(_works_at(n, here.out_hw, calls) for n in order[start:i + 1]):
            at = last[order[_before_downsampler(order, i, opened)]]
            if at.out_hw == here.out_hw:
                plan.append((at.name, at.out_channels, at.out_hw))
    if not plan:
        raise UserError("no stage of this model works on 4-D feature maps at one resolution (is it a CNN?); "
                        f"name the modules to smooth after with {param('placement')}")
    return plan


class _Hooked(nn.Module):
    """Applies ``layer`` to the output (``after``) or the input (``before``) of a module, through a hook."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def after(self, module, inputs, output):
        return self.layer(output)

    def before(self, module, inputs):
        return (self.layer(inputs[0]), *inputs[1:])


def _attach(model: nn.Module, holder: nn.ModuleDict, target: str, layer: nn.Module, where: str) -> None:
    """Register ``layer`` in ``holder`` and hook it after/before module ``target`` of ``model``."""
    modules = dict(model.named_modules())
    if target not in modules:
        raise UserError(f"the model has no module {target!r} (its modules: {', '.join(list(modules)[1:6])}, ...)")
    hooked = _Hooked(layer)
    holder[str(len(holder))] = hooked
    if where == "after":
        modules[target].register_forward_hook(hooked.after)
    else:
        modules[target].register_forward_pre_hook(hooked.before)


def smooth(model: nn.Module, holder: nn.ModuleDict, example: Tensor, *, smoothing: str = "tanh-blur",
           blur: str = "box2-pad1", tau: float = 10.0, placement: Sequence[str] = ("auto",)) -> list[Insertion]:
    """Insert spatial smoothing into ``model`` (hooks; the layers kept in ``holder``): at the paper's stage
    boundaries (``placement=("auto",)``, see the module docstring) or after the named modules. Returns where."""
    if list(placement) == ["auto"]:
        plan = plan_smoothing(model, example)
    else:
        calls = {call.name: call for call in _trace(model, example)}
        missing = [name for name in placement if name not in calls or calls[name].out_hw is None]
        if missing:
            raise UserError(f"{param('placement')}: {', '.join(missing)} gives no 4-D feature map in a forward "
                            "of this model; name modules whose output is a feature map")
        plan = [(name, calls[name].out_channels, calls[name].out_hw) for name in placement]
    done = []
    for name, channels, hw in plan:
        _attach(model, holder, name, Smoothing(smoothing, blur, tau), "after")
        done.append(Insertion(name, "after", f"{smoothing} ({blur})", channels, f"{hw[0]}x{hw[1]}"))
    return done


def replace_dropout(model: nn.Module) -> list[Insertion]:
    """Turn every dropout module of ``model`` into :class:`MCDropout` at its rate (``Dropout2d``/``3d``:
    channel-wise); returns where."""
    done = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, DROPOUT_TYPES):
                channelwise = isinstance(child, (nn.Dropout2d, nn.Dropout3d))
                setattr(module, child_name, MCDropout(child.p, channelwise=channelwise))
                full = f"{name}.{child_name}" if name else child_name
                done.append(Insertion(full, "replaced", f"MC dropout p={child.p:g}", 0, ""))
    return done


def _head(model: nn.Module, calls: list[_Call]) -> str:
    """The last ``nn.Linear`` (or 1x1 ``nn.Conv2d`` classifier) that runs: the classifier."""
    for call in reversed(calls):
        if isinstance(call.module, nn.Linear) or (isinstance(call.module, nn.Conv2d) and call.out_hw == (1, 1)):
            return call.name
    raise UserError("found no final Linear layer to put MC dropout in front of; name the modules instead "
                    f"with {param('mc_dropout_where')} blocks")


def insert_dropout(model: nn.Module, holder: nn.ModuleDict, example: Tensor, rate: float,
                   where: str) -> list[Insertion]:
    """Insert MC dropout at ``rate``: in front of the classifier (``head``), after every residual block
    (``blocks``: the children of the stage containers of :func:`plan_smoothing`), or both (``all``)."""
    calls = _trace(model, example)
    done = []
    if where in ("blocks", "all"):
        modules = dict(model.named_modules())
        blocks = []
        for stage, _, _ in plan_smoothing(model, example):
            children = list(modules[stage].named_children())
            if len(children) < 2 or not isinstance(modules[stage], nn.Sequential):
                continue
            blocks += [f"{stage}.{child}" for child, _ in children]
        if not blocks:
            raise UserError(f"found no stages of blocks for {param('mc_dropout_where')} blocks (a Sequential of "
                            "residual blocks per stage); use head")
        for block in blocks:
            _attach(model, holder, block, MCDropout(rate), "after")
            done.append(Insertion(block, "after", f"MC dropout p={rate:g}", 0, ""))
    if where in ("head", "all"):
        head = _head(model, calls)
        _attach(model, holder, head, MCDropout(rate), "before")
        done.append(Insertion(head, "before", f"MC dropout p={rate:g}", 0, ""))
    return done


def smooth_model(model: nn.Module, *, smoothing: str = "tanh-blur", blur: str = "box2-pad1", tau: float = 10.0,
                 placement: str | Sequence[str] = "auto", input_size: int = 224):
    """``smoothbench.smooth``: insert spatial smoothing into any CNN ``model`` in place; returns ``(model,
    table)`` with one row per inserted layer (module, where, inserted, channels, resolution).

    ``placement="auto"`` finds the stage boundaries from one dry forward at ``input_size`` (see the module
    docstring); a list of module names puts the layers after those. The layers are kept in
    ``model.smoothing_layers`` and act through forward hooks, so the model's state-dict keys do not change.
    """
    import pandas as pd

    if isinstance(model, nn.Sequential):
        raise UserError("wrap an nn.Sequential in a module of its own first: its children all run in order, so "
                        "smoothing layers cannot be kept inside it")
    holder = getattr(model, "smoothing_layers", None)
    if not isinstance(holder, nn.ModuleDict):
        holder = nn.ModuleDict()
        model.smoothing_layers = holder
    places = ("auto",) if placement == "auto" else tuple(placement)
    done = smooth(model, holder, torch.zeros(1, 3, input_size, input_size), smoothing=smoothing, blur=blur, tau=tau,
                  placement=places)
    return model, pd.DataFrame([d.row() for d in done])


def layer_table(model: nn.Module, input_size: int):
    """Where a model's smoothing and MC-dropout layers sit, one row each: the insertions of a model from
    elsewhere, or the built-in smoothing and MC-dropout modules of a smoothbench model (traced at
    ``input_size`` for their channels and resolution)."""
    import pandas as pd

    insertions = getattr(model, "insertions", None)
    if insertions is not None:
        return pd.DataFrame([i.row() for i in insertions])
    calls = {call.name: call for call in _trace(model, torch.zeros(1, 3, input_size, input_size))}
    rows = []
    for name, module in model.named_modules():
        if isinstance(module, (Smoothing, MCDropout)) and name in calls:
            call = calls[name]
            kind = (f"{module.kind} ({type(module.blur).__name__})" if isinstance(module, Smoothing)
                    else f"MC dropout p={module.p:g}")
            rows.append(Insertion(name, "built in", kind, call.out_channels,
                                  f"{call.in_hw[0]}x{call.in_hw[1]}" if call.in_hw else "").row())
    return pd.DataFrame(rows)
