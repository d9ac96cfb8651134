"""Reproducing the paper's figures: the grid of runs and its scales (:mod:`~smoothbench.reproduce.grid`), the
paper's figure readings and the ours-vs-paper table (:mod:`~smoothbench.reproduce.compare`), the figure
(:mod:`~smoothbench.reproduce.draw`) and the time estimates of ``--plan`` (:mod:`~smoothbench.reproduce.plan`).
The pipeline that joins them is :func:`smoothbench.pipelines.reproduce.run_reproduce`."""
