"""``python -m dmlbench …`` is the ``dmlbench`` command (sweeps start runs this way)."""

from dmlbench.cli import main

if __name__ == "__main__":
    main()
