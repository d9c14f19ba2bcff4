"""Running experiments: one run (``execute``), a grid of runs (``sweep``), on Slurm (``slurm``)."""
