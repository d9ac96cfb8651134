"""Training: the run's settings (:mod:`.config`), its folder and checkpoint format (:mod:`.run_folder`), RNG
state serialisation (:mod:`.rng_state`) and the loop (:mod:`.loop`)."""

from smoothbench.training.config import TrainConfig
from smoothbench.training.loop import TrainResult, run_training

__all__ = ["TrainConfig", "TrainResult", "run_training"]
