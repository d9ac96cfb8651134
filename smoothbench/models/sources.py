"""One place that turns a model argument into a model: a smoothbench run folder or model file,
``torchvision:NAME``, ``timm:NAME``, ``py:FILE.py:builder`` or ``package.module:builder``.

``MODEL@FILE`` gives that one model its own weights file (for deep ensembles of several weights).
:class:`ModelOptions` holds what the flags say: weights, builder arguments, MC dropout, smoothing, a CIFAR
stem, a class subset and the input recipe. Models from elsewhere come back as
:class:`~smoothbench.models.foreign.ForeignClassifier` with a :class:`~smoothbench.models.spec.ModelSpec`
whose ``source`` rebuilds them (see :func:`smoothbench.models.foreign.build`).

The input recipe belongs to the weights: torchvision's hub weights bring their transforms, timm's
pretrained weights their data config; weights from a file (or none) use the dataset's own recipe. The
``resize``/``crop``/``interpolation``/``mean``/``std`` options override either.
"""

from __future__ import annotations

import ast
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from smoothbench.data.info import DATASETS
from smoothbench.data.preprocess import Preprocess, dataset_preprocess
from smoothbench.errors import UserError, param
from smoothbench.models.spec import BLURS, MC_DROPOUT_PLACES, SMOOTHINGS, ModelSource, ModelSpec

PREFIXES = {"torchvision:": "torchvision", "timm:": "timm", "py:": "python"}


@dataclass(frozen=True)
class ModelOptions:
    """What the model flags say about models from elsewhere (smoothbench's own models ignore them).

    ``weights``: torchvision ``DEFAULT``, a weights enum name (e.g. ``IMAGENET1K_V1``) or a state-dict file;
    for timm and builders a state-dict file (``checkpoint`` is the same for timm, as timm names it).
    ``pretrained``: timm's hub weights. ``kwargs``: builder keyword arguments. ``mc_dropout``: ``"auto"`` or a
    rate inserted at ``mc_dropout_where`` (head, blocks, all). ``smoothing``/``blur``/``tau``/``placement``:
    spatial smoothing to insert. ``cifar_stem``: the ImageNet stem becomes a 3x3/1 conv without max-pool.
    ``class_indices``: output classes to keep. ``dataset``: what the model is for (its classes and recipe).
    ``resize``/``crop``/``interpolation``/``mean``/``std``: override the input recipe.
    """

    weights: str | None = None
    checkpoint: str | None = None
    pretrained: bool = False
    kwargs: tuple[tuple[str, Any], ...] = ()
    mc_dropout: str | None = None
    mc_dropout_where: str = "head"
    smoothing: str = "none"
    blur: str = "box2-pad1"
    tau: float = 10.0
    placement: tuple[str, ...] = ("auto",)
    cifar_stem: bool = False
    class_indices: tuple[int, ...] | None = None
    dataset: str | None = None
    resize: int | None = None
    crop: int | None = None
    interpolation: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.mc_dropout not in (None, "auto"):
            try:
                rate = float(self.mc_dropout)
            except ValueError:
                rate = -1.0
            if not 0.0 < rate < 1.0:
                raise UserError(f"{param('mc_dropout')} is auto or a rate in (0, 1), got {self.mc_dropout!r}")
        if self.mc_dropout_where not in MC_DROPOUT_PLACES:
            raise UserError(f"{param('mc_dropout_where')} must be one of {', '.join(MC_DROPOUT_PLACES)}, got "
                            f"{self.mc_dropout_where!r}")
        if self.smoothing not in SMOOTHINGS or self.blur not in BLURS:
            raise UserError(f"{param('smoothing')} must be one of {', '.join(SMOOTHINGS)} and {param('blur')} one "
                            f"of {', '.join(BLURS)}")
        if self.dataset is not None and self.dataset not in DATASETS:
            raise UserError(f"unknown {param('dataset')} {self.dataset!r}; choose one of {', '.join(DATASETS)}")

    @property
    def changes_models(self) -> bool:
        """Whether these options ask for surgery or weights (meaningful for models from elsewhere only)."""
        return bool(self.weights or self.checkpoint or self.pretrained or self.kwargs or self.mc_dropout
                    or self.smoothing != "none" or self.cifar_stem or self.class_indices is not None)


def for_dataset(options: ModelOptions, dataset: str | None) -> ModelOptions:
    """``options`` for models meant for ``dataset`` (unless they already name one)."""
    if options.dataset is not None or dataset is None:
        return options
    return replace(options, dataset=dataset)


def parse_kwargs(items: Sequence[str]) -> tuple[tuple[str, Any], ...]:
    """``["num_classes=10", "drop_rate=0.2", "name=x"]`` → pairs; values read as Python literals where they
    are one (numbers, True/False/None, quoted strings), else kept as text."""
    pairs = []
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise UserError(f"{param('model_kwargs')} takes key=value pairs, got {item!r}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        pairs.append((key.strip(), value))
    return tuple(pairs)


def read_class_indices(path: str | os.PathLike) -> tuple[int, ...]:
    """Class indices from a file: integers separated by commas, spaces or new lines (``#`` comments)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise UserError(f"cannot read the class indices file {path} ({err.strerror})") from None
    words = " ".join(line.split("#")[0] for line in text.splitlines()).replace(",", " ").split()
    try:
        indices = tuple(int(w) for w in words)
    except ValueError:
        raise UserError(f"{path} must hold integer class indices") from None
    if not indices or min(indices) < 0 or len(set(indices)) != len(indices):
        raise UserError(f"{path} must hold distinct non-negative class indices, got {len(indices)}")
    return indices


def split_ref(ref: str) -> tuple[str, str | None]:
    """``MODEL@FILE`` → ``(MODEL, FILE)`` when FILE exists; otherwise ``(ref, None)``."""
    head, sep, tail = str(ref).rpartition("@")
    if sep and head and Path(tail).is_file():
        return head, tail
    return str(ref), None


def source_of(ref: str) -> tuple[str, str] | None:
    """``(kind, name)`` of a model from elsewhere, or ``None`` for a smoothbench file or run folder."""
    if Path(ref).exists():
        return None
    for prefix, kind in PREFIXES.items():
        if ref.startswith(prefix):
            return kind, ref[len(prefix):]
    where, sep, function = ref.rpartition(":")
    if sep and function.isidentifier() and all(part.isidentifier() for part in where.split(".")):
        return "python", ref
    return None


def _hub_recipe(kind: str, net, hub_weights: str | None, name: str) -> Preprocess | None:
    """The recipe of hub weights: torchvision's transforms, timm's data config; ``None`` without them."""
    if kind == "torchvision" and hub_weights and not Path(hub_weights).is_file():
        import torchvision

        transforms = torchvision.models.get_model_weights(name)[hub_weights].transforms() \
            if hub_weights != "DEFAULT" else torchvision.models.get_model_weights(name).DEFAULT.transforms()
        return Preprocess(tuple(transforms.mean), tuple(transforms.std), resize=int(transforms.resize_size[0]),
                          crop=int(transforms.crop_size[0]), interpolation=transforms.interpolation.value)
    if kind == "timm" and hub_weights == "pretrained":
        import timm

        config = timm.data.resolve_data_config({}, model=net)
        crop = int(config["input_size"][-1])
        return Preprocess(tuple(config["mean"]), tuple(config["std"]),
                          resize=int(math.floor(crop / config.get("crop_pct", 1.0))), crop=crop,
                          interpolation=config.get("interpolation", "bilinear"))
    return None


def _check_torchvision_weights(name: str, weights: str) -> None:
    """``weights`` is ``DEFAULT`` or one of torchvision's weight names for model ``name``."""
    import torchvision

    try:
        known = [w.name for w in torchvision.models.get_model_weights(name)]
    except ValueError:
        known = []
    if weights != "DEFAULT" and weights not in known:
        raise UserError(f"{param('weights')} {weights} is neither a file nor torchvision weights of {name} "
                        f"(DEFAULT{', ' if known else ''}{', '.join(known)})")


def _recipe(options: ModelOptions, hub: Preprocess | None) -> Preprocess:
    """The weights' recipe (or the dataset's), with the options' overrides."""
    if hub is None:
        if options.dataset is None and (options.mean is None or options.std is None):
            raise UserError(f"give the {param('dataset')} this model is for (or its {param('mean')} and "
                            f"{param('std')}): its input recipe comes from there")
        dataset = options.dataset or "imagenet"
        hub = dataset_preprocess(dataset, image_size=DATASETS[dataset].image_size)
    overrides = {k: getattr(options, k) for k in ("resize", "crop", "interpolation", "mean", "std")
                 if getattr(options, k) is not None}
    return hub.with_(**overrides)


def foreign_model(kind: str, name: str, options: ModelOptions, weights: str | None = None):
    """Build a model from elsewhere as the options say, with its weights loaded and its spec set."""
    from smoothbench.models import foreign

    weights = weights or options.weights or options.checkpoint
    is_file = weights is not None and Path(weights).is_file()
    if weights is not None and not is_file and kind != "torchvision":
        raise UserError(f"no weights file {weights}")
    hub_weights = weights if kind == "torchvision" and not is_file else None
    if hub_weights is not None:
        _check_torchvision_weights(name, hub_weights)
    kwargs = options.kwargs
    source = ModelSource(kind, name, kwargs=kwargs, mc_dropout=options.mc_dropout,
                         mc_dropout_where=options.mc_dropout_where, smoothing=options.smoothing, blur=options.blur,
                         tau=float(options.tau), placement=tuple(options.placement), cifar_stem=options.cifar_stem,
                         class_indices=options.class_indices)
    # the network alone first: the hub weights' recipe gives the input size that surgery traces at
    net = foreign.build_network(source, hub_weights=hub_weights, pretrained=options.pretrained)
    recipe = _recipe(options, _hub_recipe(kind, net, "pretrained" if options.pretrained else hub_weights, name))
    spec = ModelSpec(arch=source.ref, method="dnn", smoothing=options.smoothing, blur=options.blur,
                     tau=float(options.tau), stem="cifar" if options.cifar_stem else "imagenet",
                     dataset=options.dataset, image_size=recipe.crop or 224,
                     mean=recipe.mean, std=recipe.std, resize=recipe.resize, interpolation=recipe.interpolation,
                     source=source)
    model = foreign.build(spec, net=net)
    if is_file:
        foreign.load_weights(model.net, weights)
    rate = foreign.dropout_rate(model)
    classes = foreign.output_classes(model, spec.image_size)
    model.spec = spec.with_(method="mcdo" if rate > 0 else "dnn", dropout_rate=rate, num_classes=classes)
    if rate > 0:
        foreign.check_mc_varies(model, spec.image_size)
    model.eval()
    model.mc(False)
    model.checkpoint_sha256 = foreign.weights_sha256(model)
    model.source_path = str(weights) if is_file else source.ref
    return model


def foreign_spec(ref: str, options: ModelOptions) -> ModelSpec:
    """The spec of a model from elsewhere to be trained (random weights; the training recipe fills in the
    dataset's classes and input recipe)."""
    found = source_of(ref)
    if found is None:
        raise UserError(f"{ref} is not a model from elsewhere (torchvision:NAME, timm:NAME, py:FILE.py:FUNCTION "
                        f"or MODULE:FUNCTION); smoothbench's own architectures are chosen with {param('arch')}")
    source = ModelSource(*found, kwargs=options.kwargs, mc_dropout=options.mc_dropout,
                         mc_dropout_where=options.mc_dropout_where, smoothing=options.smoothing, blur=options.blur,
                         tau=float(options.tau), placement=tuple(options.placement), cifar_stem=options.cifar_stem)
    return ModelSpec(arch=source.ref, method="mcdo" if options.mc_dropout else "dnn", smoothing=options.smoothing,
                     blur=options.blur, tau=float(options.tau), source=source)


def resolve_model(ref: str | os.PathLike, options: ModelOptions | None = None):
    """The model a command argument names, in eval mode with MC dropout off (see the module docstring)."""
    from smoothbench.models.store import load_model_file

    options = options or ModelOptions()
    text, own_weights = split_ref(os.fspath(ref))
    found = source_of(text)
    if found is None:
        if own_weights is not None:
            raise UserError(f"{text}: a smoothbench model file carries its own weights; MODEL@FILE is for "
                            "torchvision, timm and builder models")
        return load_model_file(text)[0]
    return foreign_model(*found, options, own_weights)


def plan_table(ref: str, options: ModelOptions, dataset: str | None = None):
    """Where smoothing and MC dropout sit in ``ref`` (see :func:`smoothbench.models.surgery.layer_table`): a
    model from elsewhere gets ``options``' surgery, with tanh-blur smoothing when they name none."""
    from smoothbench.models.surgery import layer_table

    text = split_ref(os.fspath(ref))[0]
    if source_of(text) is not None and options.smoothing == "none":
        options = replace(options, smoothing="tanh-blur")
    model = resolve_model(ref, for_dataset(options, dataset or ("imagenet" if source_of(text) else None)))
    return layer_table(model, model.spec.image_size)
