"""Everything a method or dataset plugin needs, from one module.

    from dmlbench.plugin import Method, MethodOptions, option, register_method

A plugin imports from here only; the modules behind these names may move
between releases, this list does not (names are added, not removed, without a
deprecation period). Test a method with :func:`dmlbench.testing.check_method`.
"""

from dmlbench.data.image_list import ImageRecord
from dmlbench.data.spec import DatasetSpec, Recipe, register_dataset, register_dataset_prefix
from dmlbench.data.transforms import TransformSpec
from dmlbench.method import (
    Choice,
    IntRange,
    LogUniform,
    Method,
    MethodOptions,
    PaperNumbers,
    TableRow,
    Uniform,
)
from dmlbench.nn.model import EmbeddingHead, EmbeddingModel, ModelSpec
from dmlbench.nn.peft_tuning import TARGET_HELP, TARGETS, block_regex
from dmlbench.options import option
from dmlbench.paths import cache_root
from dmlbench.peft_method import PeftMethod
from dmlbench.registry import register_method

__all__ = [
    # methods
    "Method",
    "MethodOptions",
    "option",
    "register_method",
    "EmbeddingModel",
    "EmbeddingHead",
    "ModelSpec",
    "TableRow",
    "PaperNumbers",
    # methods whose adapters peft adds (see methods/loha.py)
    "PeftMethod",
    "TARGETS",
    "TARGET_HELP",
    "block_regex",
    # tuning spaces (Method.search_space)
    "LogUniform",
    "Uniform",
    "IntRange",
    "Choice",
    # datasets
    "DatasetSpec",
    "Recipe",
    "ImageRecord",
    "TransformSpec",
    "register_dataset",
    "register_dataset_prefix",
    "cache_root",
]
