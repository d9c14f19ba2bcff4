"""The public DML benchmarks (CUB-200-2011, Cars196, SOP, In-Shop) from their original layouts."""

from dmlbench.data.public.base import PublicDataset, SplitCounts, read_lines

__all__ = ["PublicDataset", "SplitCounts", "read_lines"]
