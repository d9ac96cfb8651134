"""A restricted unpickler for the CIFAR python batches, which are untrusted input.

A pickle can call any importable function while it loads (``os.system`` included). The CIFAR files only
need plain containers (dict, list, bytes, int) plus numpy arrays, so every global lookup other than the
three that rebuild an ``ndarray`` is refused with :class:`~smoothbench.errors.UserError`.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import numpy as np

from smoothbench.errors import UserError

# numpy 1.x pickles name ``numpy.core.multiarray``, numpy 2.x ``numpy._core.multiarray``; both resolve to
# the installed numpy's own ``_reconstruct`` (taken from ndarray.__reduce__ to avoid private imports).
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` only resolves what numpy arrays need."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UserError(
                f"refusing to load {getattr(self, 'source', 'a pickle')}: it asks for {module}.{name}, which a "
                "CIFAR batch never needs (corrupt or malicious file); replace it with the official file"
            ) from None


def load_pickle(path: str | os.PathLike) -> Any:
    """Load a (Python 2 or 3) pickle file with :class:`RestrictedUnpickler`, strings kept as bytes."""
    with open(path, "rb") as handle:
        unpickler = RestrictedUnpickler(handle, encoding="bytes")
        unpickler.source = os.fspath(path)
        try:
            return unpickler.load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
            raise UserError(f"{path} is not a readable CIFAR pickle ({exc}); replace it with the official file") from None
