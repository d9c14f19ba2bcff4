"""Live tensor bytes over a training step, by what they are, at their peak.

Written by hand (a ``TorchDispatchMode``) rather than with torch's
``MemTracker``: that one hooks a gradient onto every parameter of every module
it meets and fails on frozen parameters, which is every PEFT method.

Every storage an operator returns is counted once, from its creation until
Python frees it (a weakref finalizer), in the category it was born into:
activations (made in the forward pass, or the loss, and still alive: what
autograd saved), temporaries (made in the backward pass or the optimizer
step, gradients excepted). Storages that exist before tracking starts are
added by the caller (parameters, buffers, optimizer state, inputs), and a
gradient moves to "gradients" when autograd accumulates it into a
parameter. The peak is the largest total seen after any operator, with
the breakdown at that moment.

It runs the same on real tensors and on fake ones (``FakeTensorMode``, where
no memory is allocated), so an accelerator's step can be tracked on a CPU.
What it counts: tensors. Not counted: the CUDA context, the caching
allocator's rounding and fragmentation, cuBLAS/cuDNN workspaces.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

CATEGORIES = (
    "parameters",
    "buffers",
    "gradients",
    "optimizer state",
    "inputs",
    "activations",
    "temporaries",
)
HOST = "host"  # tensors a method keeps in host memory on an accelerator run: not in the peak


class TensorMemoryTracker(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self._live: dict[int, list] = {}  # id(storage) → [bytes, category]
        self.totals = dict.fromkeys((*CATEGORIES, HOST), 0)
        self.current = 0  # bytes on the accelerator: every category but HOST
        self._host_params: set[int] = set()
        self.peak = 0
        self.at_peak = dict(self.totals)
        self._backward_seen = False
        self._hooks: list = []

    # -- what exists before the step ---------------------------------------------
    def add(self, tensors: Iterable[torch.Tensor], category: str) -> None:
        for tensor in tensors:
            if isinstance(tensor, torch.Tensor):
                self._add(tensor, category)

    def watch_model(self, model: torch.nn.Module, host: Iterable[torch.Tensor] = ()) -> None:
        """Parameters and buffers (``host``: those kept in host memory, with their
        gradients and optimizer state); a parameter's gradient counts as one once
        accumulated; a forward of the model starts a new step's forward phase."""
        for tensor in host:
            self._host_params.add(id(tensor))
            self._add(tensor, HOST)
        self.add(model.parameters(), "parameters")
        self.add(model.buffers(), "buffers")
        for p in model.parameters():
            if p.requires_grad:
                category = HOST if id(p) in self._host_params else "gradients"
                hook = p.register_post_accumulate_grad_hook(
                    lambda p, category=category: self._move(p.grad, category)
                )
                self._hooks.append(hook)
        self._hooks.append(model.register_forward_pre_hook(self._new_step))

    def watch_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        for param, state in optimizer.state.items():
            category = HOST if id(param) in self._host_params else "optimizer state"
            self.add((v for v in state.values() if torch.is_tensor(v)), category)

    def remove_hooks(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

    # -- bookkeeping -------------------------------------------------------------
    def _new_step(self, *_args) -> None:
        self._backward_seen = False

    def _add(self, tensor: torch.Tensor, category: str) -> None:
        storage = tensor.untyped_storage()
        key = id(storage)
        if key in self._live:
            return
        size = storage.nbytes()
        self._live[key] = [size, category]
        self.totals[category] += size
        self.current += size if category != HOST else 0
        weakref.finalize(storage, self._free, key)
        if self.current > self.peak:
            self.peak = self.current
            self.at_peak = dict(self.totals)

    def _free(self, key: int) -> None:
        size, category = self._live.pop(key)
        self.totals[category] -= size
        self.current -= size if category != HOST else 0

    def _move(self, tensor: torch.Tensor | None, category: str) -> None:
        if tensor is None:
            return
        entry = self._live.get(id(tensor.untyped_storage()))
        if entry is None:
            self._add(tensor, category)
            return
        size, old = entry
        self.totals[old] -= size
        self.totals[category] += size
        self.current += (size if category != HOST else 0) - (size if old != HOST else 0)
        entry[1] = category

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        in_backward = torch._C._current_graph_task_id() != -1
        self._backward_seen |= in_backward
        category = "temporaries" if self._backward_seen else "activations"
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                self._add(tensor, category)
        return out
