"""smoothbench: accuracy, calibration and robustness of image classifiers, with spatial smoothing."""

__version__ = "0.1.0"

from smoothbench.models.registry import create_model, list_models  # noqa: E402
from smoothbench.models.store import load  # noqa: E402

__all__ = ["__version__", "create_model", "list_models", "load"]
