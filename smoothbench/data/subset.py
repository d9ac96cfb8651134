"""Which images ``subset=N`` and a subset file keep.

- Evaluation (``--subset N`` of every command, any split): a class-balanced random sample of N images, kept
  in the original order, drawn from the fixed :data:`EVAL_SUBSET_SEED` (:func:`sample_indices`), so every
  command and every MC-dropout ``--seed`` evaluates the same N images.
- Training (``train --subset N``): the same kind of sample, drawn from the training seed
  (:func:`stratified_indices`).
- A subset file (``--subset-file``, :func:`read_subset_file`): a published list of images (positions or, for
  image folders, relative paths), in the file's order; ``--subset N`` then samples N of the listed images.
  The file's SHA-256 goes into the rows (``subset_sha256``).

:func:`subset_positions` applies both to a source, and is the one place the pipelines go through.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path, PurePosixPath

import numpy as np

from smoothbench.errors import UserError, param

#: Seed of every evaluation subset. Fixed, and not the MC-dropout ``--seed``: runs with different MC seeds,
#: and every command (eval, corrupt's clean set and cells, consistency, ood, shift, analyze, reproduce,
#: training's validation), then see the same N test images, so their numbers compare image for image.
EVAL_SUBSET_SEED = 0


def check_subset(n: int, total: int, what: str) -> None:
    """UserError unless ``1 <= n <= total``."""
    if n < 1 or n > total:
        raise UserError(f"{param('subset')} {n} is out of range: {what} has {total} images; use 1..{total}")


def first_indices(total: int, n: int, what: str) -> np.ndarray:
    """``[0, n)``: the first ``n`` images, in order (throughput benchmarks; evaluations use
    :func:`sample_indices`)."""
    check_subset(n, total, what)
    return np.arange(n, dtype=np.int64)


def stratified_indices(labels: np.ndarray, n: int, num_classes: int, seed: int, what: str) -> np.ndarray:
    """Sorted positions of a class-balanced random sample of ``n`` rows.

    Every class gets ``n // K`` rows; the remaining ``n mod K`` rows go one each to the first classes
    (by class index). Rows of a class are drawn without replacement by ``numpy.random.default_rng(seed)``;
    the result is sorted, so the original order is kept.
    """
    labels = np.asarray(labels)
    check_subset(n, len(labels), what)
    base, extra = divmod(n, num_classes)
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in range(num_classes):
        rows = np.flatnonzero(labels == cls)
        want = base + (1 if cls < extra else 0)
        if want > len(rows):
            raise UserError(
                f"{param('subset')} {n} needs {want} images of class {cls} but {what} has only {len(rows)}; use a smaller "
                f"{param('subset')}"
            )
        chosen.append(rng.choice(rows, size=want, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def sample_indices(labels: np.ndarray, n: int, num_classes: int, what: str,
                   seed: int = EVAL_SUBSET_SEED) -> np.ndarray:
    """Sorted positions of the evaluation subset of ``n`` of the rows labelled ``labels``: the class-balanced
    sample of :func:`stratified_indices` drawn from ``seed`` (default :data:`EVAL_SUBSET_SEED`); ``n`` equal
    to the number of rows keeps them all (whatever the class balance)."""
    labels = np.asarray(labels)
    check_subset(n, len(labels), what)
    if n == len(labels):
        return np.arange(n, dtype=np.int64)
    return stratified_indices(labels, n, num_classes, seed, what)


# ---------------------------------------------------------------------------------------------------------
# subset files

#: How a subset file is named in messages: ``subset_file`` in the Python API, ``--subset-file`` on the CLI.
SUBSET_FILE = param("subset_file")


def subset_file_bytes(path: str | os.PathLike, parameter: str = SUBSET_FILE) -> bytes:
    """The raw content of the subset file ``path`` (UserError, naming ``parameter``, if it cannot be read)."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{parameter} {path} not found; give the path of an image list (one position or file "
                        "name per line)") from None
    except IsADirectoryError:
        raise UserError(f"{parameter} {path} is a folder; give the image list file") from None


def subset_file_sha256(path: str | os.PathLike, parameter: str = SUBSET_FILE) -> str:
    """SHA-256 (hex) of the subset file ``path``: the ``subset_sha256`` column of the rows it selects."""
    return hashlib.sha256(subset_file_bytes(path, parameter)).hexdigest()


def _file_names(source) -> dict[str, int] | None:
    """Relative ``<class folder>/<file>`` path → position, for a source made of files; ``None`` otherwise."""
    samples, root = getattr(source, "samples", None), getattr(source, "root", None)
    if samples is None or root is None:
        return None
    return {Path(path).relative_to(root).as_posix(): i for i, (path, _) in enumerate(samples)}


def read_subset_file(path: str | os.PathLike, source, parameter: str = SUBSET_FILE) -> tuple[np.ndarray, str]:
    """The positions in ``source`` that the image list ``path`` names, in the file's order, and the file's
    SHA-256 (hex, for provenance).

    One entry per line: an integer position (``0`` .. ``len(source) - 1``) or, for an image-folder source, a
    file's path relative to the source's folder, ``<class folder>/<file>`` (the format of RobustBench's
    ImageNet-C list ``imagenet_test_image_ids.txt``, e.g. ``n01440764/ILSVRC2012_val_00000293.JPEG``).
    Blank lines and ``#`` comments (whole lines or line ends) are ignored. A missing file, a duplicate, an
    out-of-range position, an unknown name or an empty list is a UserError naming ``parameter`` (the flag on
    the command line), the file and the line.
    """
    path = Path(path)
    raw = subset_file_bytes(path, parameter)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{parameter} {path} is not UTF-8 text; give a list of one position or file name per "
                        "line") from None
    names: dict[str, int] | None = None
    seen: dict[int, int] = {}
    indices: list[int] = []
    total = len(source)
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        where = f"{parameter} {path}:{number}"
        if re.fullmatch(r"[+-]?[0-9]+", entry):
            position = int(entry)
            if not 0 <= position < total:
                raise UserError(f"{where}: position {position} is out of range: {source.name} has {total} images "
                                f"(0..{total - 1}); list positions in that range")
        else:
            if names is None:
                names = _file_names(source)
                if names is None:
                    raise UserError(f"{where}: {entry!r} is a file name, but {source.name} is an array set "
                                    "without file names; list integer positions instead")
            key = PurePosixPath(entry.replace("\\", "/")).as_posix()
            if key not in names:
                raise UserError(f"{where}: no image {entry!r} in {source.name} (names are paths relative to "
                                f"{getattr(source, 'root', 'its folder')}, like <class folder>/<file>)")
            position = names[key]
        if position in seen:
            raise UserError(f"{where}: {entry!r} repeats the image of line {seen[position]}; list each image once")
        seen[position] = number
        indices.append(position)
    if not indices:
        raise UserError(f"{parameter} {path} lists no images; give one position or file name per line")
    return np.asarray(indices, dtype=np.int64), hashlib.sha256(raw).hexdigest()


def subset_positions(source, subset: int | None = None, subset_file: str | os.PathLike | None = None, *,
                     seed: int = EVAL_SUBSET_SEED, at_most: bool = False,
                     parameter: str = SUBSET_FILE) -> tuple[np.ndarray | None, str]:
    """The positions in ``source`` that an evaluation keeps, and the subset file's SHA-256 (``""`` without one).

    ``subset_file`` keeps the images it lists, in its order (:func:`read_subset_file`); ``subset`` then keeps a
    class-balanced random sample of N of them (of all images without a file), in their order
    (:func:`sample_indices`, drawn from ``seed``, by default the fixed :data:`EVAL_SUBSET_SEED`). ``at_most``:
    a ``subset`` larger than the images there keeps them all (else it is a UserError). ``None`` positions:
    every image, in order (no subset asked for).
    """
    positions, digest = None, ""
    if subset_file is not None:
        positions, digest = read_subset_file(subset_file, source, parameter)
    if subset is not None:
        labels = source.labels
        labels = labels.cpu().numpy() if hasattr(labels, "cpu") else np.asarray(labels)
        pool = labels if positions is None else labels[positions]
        what = f"{source.name} {source.split}" if positions is None else f"the list {subset_file}"
        n = min(subset, len(pool)) if at_most else subset
        chosen = sample_indices(pool, n, source.num_classes, what, seed)
        positions = chosen if positions is None else positions[chosen]
    return positions, digest


def select_subset(source, subset: int | None = None, subset_file: str | os.PathLike | None = None, **options):
    """``source`` cut to :func:`subset_positions` (``source`` itself when nothing is asked for)."""
    positions, _ = subset_positions(source, subset, subset_file, **options)
    return source if positions is None else source.select(positions)
