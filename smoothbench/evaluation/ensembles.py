"""Models → averaged predictive probabilities at several ensemble sizes, in one pass.

Definitions (the paper's, paper.md §2):

* The prediction of an ensemble is the mean of its members' **softmax probabilities**, never of logits:
  ``p̄(y|x) = (1/n) Σ_j softmax(f_j(x))``.
* One model with MC dropout: member ``j`` is the ``j``-th stochastic forward pass, and ensemble size ``k``
  always means the first ``k`` samples. We draw ``max(sizes)`` samples per batch, keep a running sum and
  snapshot it at every requested size, so ``--ensembles 1,5,50`` costs 50 passes, not 56.
* Several models (a deep ensemble): member ``j`` is the ``j``-th model in the order given, itself averaged over
  ``mc_samples`` MC-dropout passes when it is an MC-dropout model; size ``k`` means the first ``k`` models.
* Masks are reproducible and batch-invariant: the dropout mask of sample ``s`` for image ``i`` depends only on
  ``(seed, i, s, layer)`` (see :func:`smoothbench.models.layers.mc_row_keys`), so results do not depend on
  batch size, ``mc_chunk``, device or process count.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from smoothbench import distributed
from smoothbench.device import autocast
from smoothbench.errors import SettingsWarning, UserError, param
from smoothbench.metrics.diversity import DiversitySums
from smoothbench.models.layers import mc_row_keys
from smoothbench.timing import SectionTimer
from smoothbench.progress import Progress



@dataclass
class EnsemblePredictions:
    """Averaged probabilities per requested ensemble size, for every image of a source, and the running sums
    of ensemble diversity at each size: the members' entropies summed per image (``entropy_sums``) and their
    argmax votes per image and class (``votes``); a member is an MC sample, or a deep-ensemble model.

    Optional (see :func:`predict`): the members' mean logits per size (``mean_logits``), the temperature-scaled
    predictions per size (``calibrated``, with their ``temperatures``) and every pass's logits
    (``member_logits``, ``[passes, N, K]``)."""

    sizes: list[int]
    probs: dict[int, np.ndarray]
    labels: np.ndarray
    members: int
    mc_samples: int
    forwards: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    entropy_sums: dict[int, np.ndarray] = field(default_factory=dict)
    votes: dict[int, np.ndarray] = field(default_factory=dict)
    mean_logits: dict[int, np.ndarray] = field(default_factory=dict)
    calibrated: dict[int, np.ndarray] = field(default_factory=dict)
    temperatures: dict[int, float] = field(default_factory=dict)
    member_logits: np.ndarray | None = None

    def diversity(self, size: int) -> DiversitySums | None:
        """The :class:`~smoothbench.metrics.diversity.DiversitySums` of the first ``size`` members (``None``
        when these predictions carry no sums)."""
        if size not in self.entropy_sums:
            return None
        return DiversitySums(self.probs[size].astype(np.float64) * size, self.entropy_sums[size].astype(np.float64),
                             self.votes[size].astype(np.int64), size)

    @property
    def sample_forwards(self) -> int:
        """Image-forwards behind these probabilities: ``n_images × max(sizes)`` for one model's MC samples,
        ``n_images × max(sizes) × mc_samples`` for a deep ensemble, whose first ``max(sizes)`` members run
        (``forwards`` counts batch passes instead)."""
        per_image = max(self.sizes) * (1 if self.members == 1 else self.mc_samples)
        return len(self.labels) * per_image


#: A pass projected to take longer than this (seconds) is announced (:class:`LongRunWarning`).
LONG_RUN_SECONDS = 120.0


class LongRunWarning(SettingsWarning):
    """An evaluation will take long: the planned forwards and the time the first batches project."""


def duration(seconds: float) -> str:
    """``3 h 20 min``, ``12 min``, ``45 s``."""
    minutes = int(seconds // 60)
    if minutes >= 60:
        return f"{minutes // 60} h {minutes % 60} min"
    return f"{minutes} min" if minutes else f"{int(seconds)} s"


def announce_long_run(seconds: float, forwards: int, images: int) -> None:
    """Warn (:class:`LongRunWarning`) when ``seconds`` projected for ``forwards`` sample-forwards over ``images``
    images exceed :data:`LONG_RUN_SECONDS`."""
    if seconds > LONG_RUN_SECONDS:
        warnings.warn(LongRunWarning(
            f"a long run: {forwards:,} sample-forwards ({images:,} images x {forwards // max(images, 1):,} "
            f"each), about {duration(seconds)} at the pace of the first batches; fewer {param('ensembles')}, a "
            f"{param('subset')} or a GPU make it shorter"), stacklevel=3)


class _Pace:
    """Times the second batch of a pass (the first may compile or warm caches) and projects the whole pass."""

    def __init__(self, batches: int, forwards: int, images: int, device: torch.device) -> None:
        self.batches, self.forwards, self.images, self.device = batches, forwards, images, device
        self.seen, self.start = 0, 0.0

    def batch_started(self) -> None:
        self.seen += 1
        if self.seen in (2, 3) and self.batches > 2:
            if self.device.type == "cuda":  # once per pass: the queued kernels of the timed batch must finish
                torch.cuda.synchronize(self.device)
            now = time.perf_counter()
            if self.seen == 3:
                announce_long_run((now - self.start) * self.batches, self.forwards, self.images)
            self.start = now


def parse_sizes(text: str | Sequence[int]) -> list[int]:
    """``"1,5,50"`` → ``[1, 5, 50]`` (sorted, unique); anything else is a :class:`UserError`."""
    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    if not items or any(item == "" for item in items):
        raise UserError(f"{param('ensembles')} needs a comma-separated list of positive integers, e.g. 1,5,50")
    sizes = []
    for item in items:
        try:
            value = int(item)
        except (TypeError, ValueError):
            raise UserError(f"{param('ensembles')} needs positive integers, e.g. 1,5,50; {item!r} is not an integer") from None
        if value < 1:
            raise UserError(f"{param('ensembles')} sizes must be at least 1, got {value}")
        sizes.append(value)
    return sorted(set(sizes))


def check_plan(models: Sequence[torch.nn.Module], sizes: Sequence[int], mc_samples: int | None) -> tuple[int, int]:
    """Validate an ensemble request; returns ``(members, mc_samples_per_member)``."""
    mc_models = [m.spec.method == "mcdo" and m.spec.dropout_rate > 0 for m in models]
    largest = max(sizes)
    if len(models) == 1:
        if mc_samples is not None:
            raise UserError(f"{param('mc_samples')} is for deep ensembles; with one model the ensemble sizes are its MC samples")
        if largest > 1 and not mc_models[0]:
            raise UserError(
                f"{models[0].spec.name} is deterministic (no MC dropout): its samples are identical, so ensemble sizes "
                "above 1 mean nothing; ask for size 1 only, give several runs for a deep ensemble, or (a model from "
                f"elsewhere) sample its dropout with {param('mc_dropout')}"
            )
        return 1, largest
    samples = 1 if mc_samples is None else mc_samples
    if samples < 1:
        raise UserError(f"{param('mc_samples')} must be at least 1, got {samples}")
    if samples > 1 and not all(mc_models):
        raise UserError(f"{param('mc_samples')} > 1 needs MC-dropout members; a deterministic member gives identical samples")
    if largest > len(models):
        raise UserError(f"asked for an ensemble of {largest} but only {len(models)} models were given")
    classes = {m.spec.num_classes for m in models}
    if len(classes) > 1:
        raise UserError(f"the members predict different numbers of classes ({sorted(classes)}); they cannot be averaged")
    return len(models), samples


def default_mc_chunk(device: torch.device) -> int:
    """MC samples per forward when none is asked for: 1 on a CPU, 8 on a GPU.

    A GPU fills its kernels better with the batch repeated; CPU kernels gain nothing from a longer batch and lose
    cache locality, so several samples per forward are slower per sample there (``benchmarks/eval_throughput.py
    --mc-chunk``; the README's performance table has the figures).
    """
    return 1 if device.type == "cpu" else 8


def _sample_logits(
    model: torch.nn.Module,
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    idx: torch.Tensor,
    sample_ids: range,
    *,
    seed: int,
    precision: str,
    stochastic: bool,
    class_mask: torch.Tensor | None,
) -> torch.Tensor:
    """Float32 logits ``[len(sample_ids), B, K]`` of several MC samples in one forward (batch repeated), restricted
    to the ``class_mask`` columns when one is given.

    ``forward`` is ``model`` itself or its ``torch.compile`` wrapper; the MC keys are always set on ``model``.
    """
    n = len(sample_ids)
    batch = x.shape[0]
    xr = x.repeat(n, 1, 1, 1) if n > 1 else x
    if stochastic:
        samples = torch.arange(sample_ids.start, sample_ids.stop, device=x.device).repeat_interleave(batch)
        model.set_mc_keys(mc_row_keys(seed, idx.repeat(n), samples))
    with autocast(x.device, precision):
        logits = forward(xr)
    logits = logits.float().view(n, batch, -1)
    return logits if class_mask is None else logits.index_select(-1, class_mask)


class _Step:
    """One step of the running sums: the pass logits of one member, or of one MC sample (``[passes, B, K]``)."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits

    def probs(self, temperature: float = 1.0) -> torch.Tensor:
        """The member's probabilities: the mean over its passes of softmax(z / T), summed one pass at a time so
        the sums are the same for any ``mc_chunk``."""
        scaled = self.logits if temperature == 1.0 else self.logits / temperature
        passes = torch.softmax(scaled, dim=-1)
        if len(passes) == 1:
            return passes[0]
        total = torch.zeros_like(passes[0])
        for sample in passes:
            total += sample
        return total / len(passes)

    def mean_logits(self) -> torch.Tensor:
        """The member's logits averaged over its passes."""
        return self.logits[0] if len(self.logits) == 1 else self.logits.mean(0)


@torch.inference_mode()
def predict(
    models: Sequence[torch.nn.Module],
    source,
    sizes: Sequence[int],
    *,
    mc_samples: int | None = None,
    seed: int = 0,
    index_offset: int = 0,
    batch_size: int = 256,
    mc_chunk: int | None = None,
    device: torch.device,
    precision: str = "fp32",
    channels_last: bool = False,
    progress: Progress | None = None,
    profile: bool = False,
    compile: bool = False,
    announce: bool = True,
    diversity: bool = True,
    class_mask: Sequence[int] | None = None,
    logits: bool = False,
    temperatures: Mapping[int, float] | None = None,
    member_logits: bool = False,
) -> EnsemblePredictions:
    """Averaged probabilities of ``models`` on every image of ``source`` at each requested size.

    ``index_offset`` is added to the source's image positions to key the MC masks (for a source that is one
    chunk of a larger set). ``mc_chunk`` bounds memory: at most that many MC samples share one forward pass (batch repeated).
    ``None`` picks :func:`default_mc_chunk` for the device.
    The averaged probabilities stay on ``device`` until the end (no host sync per batch), so they need
    ``len(sizes) * len(source) * num_classes`` floats of device memory.
    ``progress`` is called with the number of images finished per batch. In a process group every process
    must call this (it is collective): each predicts its shard and all get every image's probabilities.
    ``compile`` runs every forward through ``torch.compile(model)`` (wrapped once per call; the first batch
    compiles, and a new input shape such as a smaller last batch or MC chunk compiles once more); results
    equal the eager ones up to float rounding. ``announce``: when the pace of the second batch projects more
    than :data:`LONG_RUN_SECONDS`, say the planned work with a :class:`LongRunWarning` (callers that run many
    such passes, like sweeps, announce once themselves). ``diversity``: keep the running entropy and vote sums
    of the members (:meth:`EnsemblePredictions.diversity`; off only to measure what they cost).

    Optional outputs of the same pass: ``class_mask`` restricts every forward's logits to these output
    columns before the softmax (ImageNet-A/R's 200 of 1000 classes); ``logits`` keeps the mean of the members'
    logits per size (``mean_logits``, for max-logit and energy scores); ``temperatures`` (size → T) keeps the
    temperature-scaled prediction per size, ``(1/k) Σ_j softmax(z_j / T_k)`` (``calibrated``); ``member_logits``
    keeps every pass's logits, ``[passes, N, K]`` in host memory (for fitting temperatures on a small
    calibration set: a deep ensemble's member ``j`` owns passes ``j·mc_samples`` to ``(j+1)·mc_samples − 1``).
    """
    sizes = parse_sizes(sizes)
    members, per_member = check_plan(models, sizes, mc_samples)
    if mc_chunk is None:
        mc_chunk = default_mc_chunk(device)
    if mc_chunk < 1:
        raise UserError(f"{param('mc_chunk')} must be at least 1, got {mc_chunk}")
    spec = models[0].spec
    mask = _class_mask(class_mask, spec.num_classes, device)
    classes = spec.num_classes if mask is None else len(mask)
    temperatures = _checked_temperatures(temperatures, sizes)
    models = list(models[: max(sizes)])  # a deep ensemble's members beyond the largest size are never used
    for model in models:
        model.to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        model.eval()
    stochastic = [m.spec.method == "mcdo" and m.spec.dropout_rate > 0 for m in models]
    runners = [torch.compile(m) if compile else m for m in models]  # MC state and keys stay on the plain module
    steps = max(sizes)  # the running sum advances once per step: an MC sample, or a member
    wanted = set(sizes)
    # Under torchrun each process predicts its contiguous shard (MC keys use positions in the whole
    # source) and the shards are gathered at the end, so every process returns all images.
    shard, first = distributed.shard_source(source)
    index_offset += first
    progress = distributed.scaled_progress(progress, len(shard), len(source))
    n = len(shard)
    passes_per_step = 1 if members == 1 else per_member
    out = {k: torch.empty((n, classes), dtype=torch.float32, device=device) for k in sizes}
    out_entropy = {k: torch.empty(n, dtype=torch.float32, device=device) for k in sizes}
    out_votes = {k: torch.empty((n, classes), dtype=torch.int32, device=device) for k in sizes}
    out_logits = {k: torch.empty((n, classes), dtype=torch.float32, device=device) for k in sizes} if logits else {}
    out_calibrated = {k: torch.empty((n, classes), dtype=torch.float32, device=device) for k in temperatures}
    all_logits = torch.empty((steps * passes_per_step, n, classes), dtype=torch.float32) if member_logits else None
    labels = torch.empty(n, dtype=torch.int64, device=device)
    timer = SectionTimer(("data", "forward"), device, sync=profile)
    forwards = 0
    try:
        for model, mc in zip(models, stochastic):
            model.mc(mc)
        batches = shard.eval_batches(batch_size, spec.preprocess, device=device, channels_last=channels_last)
        pace = _Pace(math.ceil(len(shard) / batch_size), len(source) * steps * (per_member if members > 1 else 1),
                     len(source), device) if announce else None
        ones = torch.ones(batch_size, 1, dtype=torch.int32, device=device)  # one vote per image, made once
        for x, y, idx in timer.iterate(batches, "data"):
            if pace is not None:
                pace.batch_started()
            forward_start = timer.now()
            rows = idx.to(device)
            idx = idx + index_offset
            labels[rows] = y.to(device)
            batch = x.shape[0]
            running = torch.zeros(batch, classes, device=device, dtype=torch.float32)
            entropy = torch.zeros(batch, device=device, dtype=torch.float32)
            votes = torch.zeros(batch, classes, device=device, dtype=torch.int32)
            logit_sum = torch.zeros_like(running) if logits else None
            calibrated = {k: torch.zeros_like(running) for k in temperatures}
            done = 0
            while done < steps:
                if members == 1:
                    chunk = min(mc_chunk, steps - done)
                    sample_logits = _sample_logits(models[0], runners[0], x, idx, range(done, done + chunk), seed=seed,
                                                   precision=precision, stochastic=stochastic[0], class_mask=mask)
                    chunk_steps = [_Step(sample_logits[s: s + 1]) for s in range(chunk)]
                    forwards += chunk
                else:
                    parts = []
                    for start in range(0, per_member, mc_chunk):
                        ids = range(done * per_member + start, done * per_member + min(start + mc_chunk, per_member))
                        parts.append(_sample_logits(models[done], runners[done], x, idx, ids, seed=seed,
                                                    precision=precision, stochastic=stochastic[done], class_mask=mask))
                        forwards += len(ids)
                    chunk_steps = [_Step(torch.cat(parts) if len(parts) > 1 else parts[0])]
                for offset, step in enumerate(chunk_steps):  # one step at a time: sums independent of the chunking
                    position = done + offset  # 0-based member index
                    probs = step.probs()
                    running = running + probs
                    if diversity:
                        entropy = entropy + torch.special.entr(probs).sum(-1)
                        votes.scatter_add_(1, probs.argmax(-1, keepdim=True), ones[:batch])
                    if logit_sum is not None:
                        logit_sum = logit_sum + step.mean_logits()
                    for k, temperature in temperatures.items():
                        if position < k:
                            calibrated[k] = calibrated[k] + step.probs(temperature)
                    if all_logits is not None:
                        first_pass = position * passes_per_step
                        all_logits[first_pass: first_pass + passes_per_step, rows.cpu()] = step.logits.cpu()
                    k = position + 1
                    if k in wanted:
                        out[k][rows], out_entropy[k][rows], out_votes[k][rows] = running / k, entropy, votes
                        if logit_sum is not None:
                            out_logits[k][rows] = logit_sum / k
                        if k in calibrated:
                            out_calibrated[k][rows] = calibrated[k] / k
                done += len(chunk_steps)
            timer.charge("forward", forward_start)
            if progress is not None:
                progress.advance(batch)
    finally:
        for model in models:
            model.mc(False)
            model.set_mc_keys(None)

    def gathered(arrays: dict[int, torch.Tensor]) -> dict[int, np.ndarray]:
        return {k: distributed.gather_rows(v.cpu().numpy()) for k, v in arrays.items()}

    kept_logits = None
    if all_logits is not None:  # gathered along the image axis
        kept_logits = distributed.gather_rows(all_logits.transpose(0, 1).numpy()).transpose(1, 0, 2)
    return EnsemblePredictions(
        sizes, gathered(out), distributed.gather_rows(labels.cpu().numpy()), members, per_member, forwards,
        dict(timer.seconds), gathered(out_entropy) if diversity else {}, gathered(out_votes) if diversity else {},
        mean_logits=gathered(out_logits), calibrated=gathered(out_calibrated), temperatures=dict(temperatures),
        member_logits=kept_logits)


def _class_mask(class_mask: Sequence[int] | None, num_classes: int, device: torch.device) -> torch.Tensor | None:
    """``class_mask`` as a device index tensor, checked against the model's ``num_classes`` outputs."""
    if class_mask is None:
        return None
    mask = np.asarray(class_mask)
    if mask.ndim != 1 or len(mask) < 2 or mask.dtype.kind not in "iu":
        raise UserError(f"a class mask must list at least two output indices, got {mask.shape} {mask.dtype}")
    if mask.min() < 0 or mask.max() >= num_classes or len(np.unique(mask)) != len(mask):
        raise UserError(f"the class mask needs distinct indices in 0..{num_classes - 1} (the model has {num_classes} "
                        f"outputs); it has {mask.min()}..{mask.max()} with {len(mask) - len(np.unique(mask))} repeats")
    return torch.as_tensor(mask, dtype=torch.int64, device=device)


def _checked_temperatures(temperatures: Mapping[int, float] | None, sizes: Sequence[int]) -> dict[int, float]:
    """``{size: T}`` for requested sizes only, every ``T`` a positive finite float."""
    if not temperatures:
        return {}
    unknown = sorted(set(temperatures) - set(sizes))
    if unknown:
        raise UserError(f"temperatures were given for sizes {unknown} that were not asked for ({list(sizes)})")
    checked = {int(k): float(t) for k, t in temperatures.items()}
    if not all(math.isfinite(t) and t > 0 for t in checked.values()):
        raise UserError(f"temperatures must be positive and finite, got {checked}")
    return checked
