"""Models from elsewhere: torchvision, timm and the user's own builders, inside smoothbench's ``Classifier``.

:func:`build` turns a :class:`~smoothbench.models.spec.ModelSpec` whose ``source`` is set into a
:class:`ForeignClassifier`: the user's network (``net``, random weights), an optional CIFAR stem, MC dropout
and spatial smoothing (:mod:`smoothbench.models.surgery`) and an optional class subset. Weights are loaded
afterwards (surgery adds no state-dict keys), so a run folder rebuilds exactly what was trained.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from smoothbench.errors import UserError, param
from smoothbench.models.base import Classifier
from smoothbench.models.layers import MCDropout
from smoothbench.models.spec import ModelSource, ModelSpec
from smoothbench.models.surgery import Insertion, insert_dropout, replace_dropout, smooth

#: What to install for timm models.
TIMM_EXTRA = "pip install 'smoothbench[timm]'"


class ForeignClassifier(Classifier):
    """A user's network (``net``) with smoothbench's switches: ``.spec``, ``.mc()``, keyed MC masks.

    Layers inserted by surgery live in ``inserted`` (they act through hooks on ``net``'s modules);
    ``insertions`` says where. The forward returns the network's logits (the first element of a tuple, e.g.
    Inception's auxiliary outputs left out), restricted to ``class_indices`` when the source names a subset.
    """

    def __init__(self, spec: ModelSpec, net: nn.Module) -> None:
        super().__init__(spec)
        self.net = net
        self.inserted = nn.ModuleDict()
        self.insertions: list[Insertion] = []
        indices = spec.source.class_indices if spec.source is not None else None
        self.register_buffer("class_index", None if indices is None else torch.tensor(indices), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.net(x)
        while isinstance(out, (tuple, list)):
            out = out[0]
        return out if self.class_index is None else out.index_select(1, self.class_index)


def _import_timm():
    try:
        import timm
    except ImportError:
        raise UserError(f"timm models need the timm package: {TIMM_EXTRA}") from None
    return timm


def _python_builder(name: str) -> Callable[..., nn.Module]:
    """``file.py:builder`` or ``package.module:builder`` → the function."""
    where, _, function = name.rpartition(":")
    if not where or not function.isidentifier():
        raise UserError(f"a builder is named FILE.py:FUNCTION or MODULE:FUNCTION, got {name!r}")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise UserError(f"no builder file {path}")
        spec = importlib.util.spec_from_file_location(f"smoothbench_user_{abs(hash(str(path.resolve())))}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as err:  # noqa: BLE001  (the user's file: any error is theirs to fix)
            raise UserError(f"importing {path} failed: {type(err).__name__}: {err}") from None
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as err:
            raise UserError(f"cannot import {where} ({err}); is it on PYTHONPATH?") from None
    builder = getattr(module, function, None)
    if not callable(builder):
        raise UserError(f"{where} has no function {function}")
    return builder


def build_network(source: ModelSource, *, hub_weights: str | None = None, pretrained: bool = False) -> nn.Module:
    """The bare network of ``source`` with its ``kwargs``: random weights, or torchvision's hub weights
    ``hub_weights`` (``DEFAULT`` or an enum name) / timm's ``pretrained`` ones (downloaded when asked)."""
    kwargs = dict(source.kwargs)
    try:
        if source.kind == "torchvision":
            import torchvision

            if source.name not in torchvision.models.list_models():
                raise UserError(f"torchvision has no model {source.name!r}; torchvision.models.list_models() "
                                "lists them")
            net = torchvision.models.get_model(source.name, weights=hub_weights, **kwargs)
        elif source.kind == "timm":
            timm = _import_timm()
            if not timm.is_model(source.name):
                raise UserError(f"timm has no model {source.name!r}; timm.list_models() lists them")
            net = timm.create_model(source.name, pretrained=pretrained, **kwargs)
        else:
            net = _python_builder(source.name)(**kwargs)
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001  (a builder's own failure, reported as the user's input)
        raise UserError(f"building {source.ref} with {kwargs or 'no arguments'} failed: {type(err).__name__}: "
                        f"{err}") from None
    if not isinstance(net, nn.Module):
        raise UserError(f"{source.ref} returned a {type(net).__name__}, not a torch.nn.Module")
    return net


def cifar_stem(net: nn.Module) -> None:
    """Replace an ImageNet stem (7x7/2 convolution + max-pool, as ``conv1``/``maxpool``) by the CIFAR stem: a
    3x3/1 convolution of the same channels and no max-pool, the usual adaptation to 32-px images."""
    conv, pool = getattr(net, "conv1", None), getattr(net, "maxpool", None)
    if not isinstance(conv, nn.Conv2d) or pool is None:
        raise UserError(f"{param('cifar_stem')} knows ResNet-style stems (conv1 + maxpool); this model has none")
    net.conv1 = nn.Conv2d(conv.in_channels, conv.out_channels, 3, stride=1, padding=1, bias=conv.bias is not None)
    net.maxpool = nn.Identity()


def _timm_head_dropout(net: nn.Module) -> float:
    """timm applies its ``drop_rate`` functionally (``F.dropout`` in ``forward_head``), not as a module: take
    it out and return the rate, so MC dropout can take its place in front of the classifier."""
    rate = float(getattr(net, "drop_rate", 0.0) or 0.0)
    if rate > 0 and hasattr(net, "forward_head"):
        net.drop_rate = 0.0
        return rate
    return 0.0


def build(spec: ModelSpec, *, net: nn.Module | None = None) -> ForeignClassifier:
    """The :class:`ForeignClassifier` of ``spec`` (its ``source`` set) around ``net`` (default: the source's
    network with random weights), stem replaced and surgery done, MC layers numbered."""
    source = spec.source
    net = build_network(source) if net is None else net
    if source.cifar_stem:
        cifar_stem(net)
    model = ForeignClassifier(spec, net)
    example = torch.zeros(1, 3, spec.image_size, spec.image_size)
    # MC dropout first: its block placement reads the feature maps as the network makes them, before
    # smoothing changes their size (box2-pad1 grows each map by one pixel)
    if source.mc_dropout == "auto":
        model.insertions += replace_dropout(net)
        rate = _timm_head_dropout(net)
        if rate:
            model.insertions += insert_dropout(net, model.inserted, example, rate, "head")
        if not any(isinstance(m, MCDropout) for m in model.modules()):
            raise UserError(f"{source.ref} has no dropout modules to sample; insert some with "
                            f"{param('mc_dropout', api='mc_dropout=RATE', cli='--mc-dropout RATE')}")
    elif source.mc_dropout is not None:
        model.insertions += insert_dropout(net, model.inserted, example, float(source.mc_dropout),
                                           source.mc_dropout_where)
    if source.smoothing != "none":
        model.insertions += smooth(net, model.inserted, example, smoothing=source.smoothing, blur=source.blur,
                                   tau=source.tau, placement=source.placement)
    for layer_id, module in enumerate(m for m in model.modules() if isinstance(m, MCDropout)):
        module.layer_id = layer_id
    return model


def dropout_rate(model: nn.Module) -> float:
    """The MC-dropout rate of a model (the first MC-dropout layer's; 0 without one)."""
    return next((m.p for m in model.modules() if isinstance(m, MCDropout)), 0.0)


def output_classes(model: nn.Module, image_size: int) -> int:
    """The number of logits of one dry forward at ``image_size``."""
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, image_size, image_size))
    model.train(was)
    if out.dim() != 2:
        raise UserError(f"the model returns a tensor of shape {tuple(out.shape)}, not logits [batch, classes]")
    return int(out.shape[1])


def check_mc_varies(model: Classifier, image_size: int) -> None:
    """Refuse an MC-dropout model whose outputs do not vary between samples (e.g. dropout applied
    functionally in ``forward``, out of MC dropout's reach): its "ensembles" would be one model repeated."""
    from smoothbench.models.layers import mc_row_keys

    x = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    model.eval()
    outs = []
    with torch.no_grad():
        for sample in (0, 1):
            keys = mc_row_keys(0, torch.arange(2), torch.full((2,), sample, dtype=torch.int64))
            with model.mc_sampling(keys):
                outs.append(model(x))
    if torch.equal(outs[0], outs[1]):
        raise UserError(f"{model.spec.arch}: MC-dropout samples give identical outputs (its dropout is not a "
                        "module MC dropout can switch on, or sits where it changes nothing); insert dropout with "
                        f"{param('mc_dropout', api='mc_dropout=RATE', cli='--mc-dropout RATE')}")


def strip_prefixes(state: dict[str, Any]) -> dict[str, Any]:
    """A state dict without the ``module.`` (DataParallel) and ``model.`` (Lightning-style) key prefixes."""
    for prefix in ("module.", "model."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_weights(net: nn.Module, path: str | Path) -> None:
    """Load a state-dict file (``weights_only``; a ``{"state_dict": ...}`` wrapper and common prefixes
    accepted) into ``net``, refusing files that do not fit it with one line."""
    from smoothbench.models.store import torch_load_safely

    payload = torch_load_safely(path, "weights file")
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        payload = payload["state_dict"]
    if not isinstance(payload, dict) or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise UserError(f"{path} is not a state dict (a mapping of names to tensors); save "
                        "model.state_dict() with torch.save")
    state = strip_prefixes(payload)
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as err:
        detail = next((line.strip() for line in str(err).splitlines() if "size mismatch" in line), str(err))
        raise UserError(f"{path} does not fit this model ({detail.rstrip('.')}); check the model's "
                        f"{param('model_kwargs')} (e.g. num_classes)") from None
    if missing or unexpected:
        raise UserError(f"{path} does not fit this model ({len(missing)} missing, {len(unexpected)} unexpected "
                        f"weights, e.g. {(missing or unexpected)[0]})")


def weights_sha256(model: nn.Module) -> str:
    """SHA-256 of a state dict: names, dtypes, shapes and bytes in key order (the ``checkpoint_sha256`` of
    models not read from a smoothbench model file)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}|".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def user_modules_loaded(name: str) -> bool:
    """Whether a builder module named ``name`` is already imported (so a changed file is not re-read)."""
    return name in sys.modules
