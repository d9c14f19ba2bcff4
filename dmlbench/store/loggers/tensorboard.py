"""TensorBoard: event files in ``RUN_DIR/tensorboard`` (``tensorboard --logdir results/runs``
shows every run side by side)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from dmlbench.store.loggers.base import RunLogger, epoch_values, summary_values

FOLDER = "tensorboard"


class TensorBoardLogger(RunLogger):
    name = "tensorboard"

    def __init__(self, run_dir: Path, config, resumed_at_step: int | None):
        from torch.utils.tensorboard import SummaryWriter

        super().__init__(run_dir, config, resumed_at_step)
        # purge_step: after a resume, drop the steps the killed process logged past
        # its last checkpoint, so each step appears once.
        self.writer = SummaryWriter(str(run_dir / FOLDER), purge_step=resumed_at_step)
        self.epochs = config.epochs

    def start(self, config: dict, summary: dict) -> None:
        text = yaml.safe_dump(config, sort_keys=False)
        self.writer.add_text("config", "    " + text.replace("\n", "\n    "), 0)

    def step(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def epoch(self, record: dict) -> None:
        for tag, value in epoch_values(record).items():
            self.writer.add_scalar(f"epoch/{tag}", value, record["epoch"])
        self.writer.flush()

    def finish(self, summary: dict, files: list[Path]) -> None:
        for tag, value in summary_values(summary).items():
            self.writer.add_scalar(tag, value, self.epochs)
        text = json.dumps(summary, indent=2, default=str)
        self.writer.add_text("summary", "    " + text.replace("\n", "\n    "), self.epochs)
        for path in files:
            if path.suffix == ".png":
                with Image.open(path) as image:
                    pixels = np.asarray(image.convert("RGB"))
                self.writer.add_image(f"plots/{path.stem}", pixels, self.epochs,
                                      dataformats="HWC")  # fmt: skip

    def close(self, status: str) -> None:
        self.writer.close()
