"""Model families; importing this package registers every architecture (one module per family)."""

from smoothbench.models.families import alexnet, preact_resnet, resnet, vgg, wrn  # noqa: F401
