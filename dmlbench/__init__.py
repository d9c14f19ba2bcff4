"""dmlbench: benchmarking parameter-efficient fine-tuning of ViTs for deep metric learning."""

__version__ = "0.1.0"
