"""How far from orthogonal is the R that peft's OFT trains with, on the glyph benchmark?

    python benchmarks/oft_orthogonality.py                   # trains the zoo's OFT row (val)
    python benchmarks/oft_orthogonality.py --run RUN_DIR     # reads a finished run instead

peft computes each block of R from its skew-symmetric S by a truncated Neumann series,
R ≈ (I + S)(I − S)⁻¹ ≈ I + 2S + 2S² + … + S^(n−1) (``use_cayley_neumann``, on by
default, n = 5), not by the exact Cayley transform; R is then orthogonal only up to the
terms cut off, which grow with ‖S‖. The OFT paper's claim (angles between neurons
kept) holds only as far as R is orthogonal, so docs/fidelity.md gives the figure.

The run trains on the training classes and scores the validation classes (``--split
val``): nothing here reads the test split. Per adapted layer, from the run's last
checkpoint: ‖RᵀR − I‖₂ (largest over blocks, spectral norm: 0 for an orthogonal R),
‖R − R_cayley‖₂ against the exact transform of the same S, ‖S‖₂, and R's smallest and
largest singular values (1 and 1 for an orthogonal R). Printed as the smallest, the
median and the largest over layers, at initialisation (S = 0) and after training.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from dmlbench.state_file import load_state
from dmlbench.train.checkpoint import list_checkpoints

# The zoo's tuned OFT row (results/table1-glyphs-zoo/tuning.md): block 64 on qkv, lr 0.0047.
ZOO_ROW = ["--method", "oft", "--opt", "block_size=64", "--opt", "targets=qkv",
           "--lr", "0.0047", "--images-per-class", "1", "--epochs", "4"]  # fmt: skip


def skew(vec: torch.Tensor, block: int) -> torch.Tensor:
    """peft's storage of S: the strict upper triangle of each block, row by row."""
    rows, cols = torch.triu_indices(block, block, 1)
    s = torch.zeros(vec.shape[0], block, block, dtype=vec.dtype)
    s[:, rows, cols] = vec
    return s - s.transpose(-2, -1)


def neumann(s: torch.Tensor, terms: int = 5) -> torch.Tensor:
    """peft's series for the Cayley transform (oft/layer.py ``_cayley_batch``, terms > 2),
    written out so the measurement does not rest on a private method's signature:
    I + 2S + 2S² + … + 2S^(n−2) + S^(n−1)."""
    eye = torch.eye(s.shape[-1], dtype=s.dtype).expand_as(s)
    power = s @ s
    r = eye + 2 * s + 2 * power
    for _ in range(3, terms - 1):
        power = power @ s
        r = r + 2 * power
    return r + power @ s


def cayley(s: torch.Tensor) -> torch.Tensor:
    """The transform the series expands, (I + S)(I − S)⁻¹. (peft's exact branch,
    ``use_cayley_neumann=False``, solves for (I − S)(I + S)⁻¹: the same S gives the
    transposed, inverse rotation there, so a trained adapter must keep its flag.)"""
    eye = torch.eye(s.shape[-1], dtype=s.dtype).expand_as(s)
    return torch.linalg.solve(eye - s, eye + s, left=False)


def layer_errors(vec: torch.Tensor) -> dict[str, float]:
    count = vec.shape[1]
    block = int(round((1 + (1 + 8 * count) ** 0.5) / 2))  # count = b(b − 1)/2
    s = skew(vec.double(), block)
    r, exact = neumann(s), cayley(s)
    eye = torch.eye(block, dtype=s.dtype)
    spectral = lambda m: torch.linalg.matrix_norm(m, ord=2).max().item()  # noqa: E731
    singular = torch.linalg.svdvals(r)
    return {"orthogonality": spectral(r.transpose(-2, -1) @ r - eye),
            "vs_cayley": spectral(r - exact), "norm_s": spectral(s),
            "smallest_singular": singular.min().item(),
            "largest_singular": singular.max().item()}  # fmt: skip


def oft_vectors(run_dir: Path) -> dict[str, torch.Tensor]:
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise SystemExit(f"{run_dir}: no checkpoint; give a finished run of the oft method")
    model = load_state(checkpoints[-1])["trainer"]["model"]
    vectors = {k: v for k, v in model.items() if "oft_R" in k and k.endswith("weight")}
    if not vectors:
        raise SystemExit(f"{checkpoints[-1]}: no OFT parameters; is this an oft run?")
    return vectors


def summarise(name: str, rows: list[dict[str, float]]) -> str:
    parts = []
    for key, title in (("orthogonality", "‖RᵀR − I‖₂"), ("vs_cayley", "‖R − R_cayley‖₂"),
                       ("norm_s", "‖S‖₂"), ("smallest_singular", "smallest σ(R)"),
                       ("largest_singular", "largest σ(R)")):  # fmt: skip
        values = [r[key] for r in rows]
        parts.append(f"{title} min {min(values):.3g} median {statistics.median(values):.3g} "
                     f"max {max(values):.3g}")  # fmt: skip
    return f"{name} ({len(rows)} layers): " + "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="a finished oft run (else one is trained)")
    parser.add_argument("--keep", type=Path, help="train into this folder (else a temporary one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run
        if run_dir is None:
            output = args.keep or Path(tmp) / "runs"
            command = [sys.executable, "-m", "dmlbench", "run", *ZOO_ROW, "--split", "val",
                       "--output", str(output)]  # fmt: skip
            print("training:", " ".join(command[2:]), flush=True)
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            run_dir = max(output.iterdir(), key=lambda p: p.stat().st_mtime)
        trained = [layer_errors(v) for v in oft_vectors(run_dir).values()]
    print(summarise("at initialisation (S = 0)", [layer_errors(torch.zeros(1, 2016))]))
    print(summarise("after training", trained))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
