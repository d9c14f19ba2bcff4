"""A dmlbench method plugin: tune the backbone's CLS token (a one-token prompt)."""

from dataclasses import dataclass

from dmlbench.plugin import (
    Choice,
    LogUniform,
    Method,
    MethodOptions,
    TableRow,
    option,
    register_method,
)


@dataclass
class ClsTokenOptions(MethodOptions):
    head: bool = option(True, "train the embedding head too")


@register_method("cls-token")
class ClsToken(Method):
    description = "Tune the backbone's CLS token (a one-token prompt) and the proxies."
    Options = ClsTokenOptions
    # Rows for `dmlbench params --all`, `dmlbench memory --all` and bench_methods.
    table_rows = (TableRow("CLS token", {}), TableRow("CLS token, no head", {"head": False}))

    def attach(self, model):
        self.freeze(model)
        model.backbone.cls_token.requires_grad_(True)
        if self.options.head:
            self.unfreeze(model.head)
        model.proxies.requires_grad_(True)

    def tunable_formula(self, spec):
        head = spec.head_params if self.options.head else 0
        return spec.feature_dim + head + spec.proxy_params + self.bias_formula(spec)

    @classmethod
    def search_space(cls):  # what `dmlbench tune` searches, beside the defaults
        return {**super().search_space(), "lr": LogUniform(1e-4, 1e-1),
                "opt.head": Choice((True, False))}  # fmt: skip
