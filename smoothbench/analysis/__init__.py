"""The paper's evidence for *why* smoothing helps, for any model ``eval`` accepts (README, "Analyses").

One module per analysis, each a pure computation (a model and fixed images in, DataFrames out):

* :mod:`~smoothbench.analysis.landscape`: the loss and every eval metric on a 2-D grid of weights
  ``θ + x·d₁ + y·d₂`` around the trained weights (two random, normalised directions);
* :mod:`~smoothbench.analysis.hessian`: the top Hessian eigenvalue(s) of the loss per mini-batch (power
  iteration on Hessian-vector products) and the Hessian trace (Hutchinson);
* :mod:`~smoothbench.analysis.features`: per block and smoothing layer, the feature-map variance over space,
  the variance across MC-dropout samples, and the relative log amplitude of the feature maps' Fourier transform.

:mod:`~smoothbench.analysis.images` fixes the images an analysis sees (augmented training images are drawn
once, so every grid point and batch is a deterministic function of the weights), :mod:`~smoothbench.analysis.objective`
holds the loss they share, and :mod:`~smoothbench.analysis.figures` their plots.
``smoothbench.pipelines.analyze`` loads models and data and writes the files.
"""
