"""TensorBoard event files of a net (--tensorboard True): the numbers of its metrics log as
scalars and its pictures of the epoch (ClustNet: the test set's confusion matrices) as
images, one step per epoch, under runs/<exp_id>/net<N>: `tensorboard --logdir runs`.

The event files are written by the writer's thread, after the epoch's CSV and PNG files;
TensorBoard's format is a log that grows, so unlike the other files they are not written
whole under a temporary name; each epoch is flushed to disk before its weights file is
written. A resumed net's new events replace those of the epochs it redoes (purge_step).
"""

import math

import numpy as np
from PIL import Image

from .errors import ClustNetError
from .layout import METRICS_END_TIME


def check_available():
    """Refuse --tensorboard True, before anything is written, when the package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as error:
        raise ClustNetError(f"--tensorboard True needs the tensorboard package ({error}): "
                            "pip install -r requirements.txt") from None


def tag(column):
    """A metrics log column as a TensorBoard tag, grouped by its first word: test_binary ->
    test/binary, lr_cn -> lr/cn."""
    return column.replace("_", "/", 1)


class TensorBoardLog:
    """One net's event files in `folder`, from epoch `first_epoch` on (see the module)."""

    def __init__(self, folder, first_epoch, last_epoch):
        self.folder, self.first_epoch, self.last_epoch = folder, first_epoch, last_epoch
        self._writer = None  # created by the first write, in the writer's thread

    def write(self, row, pictures):
        """Log the metrics log's `row` (numbers only, empty cells left out) and the PNG files
        `pictures` {tag: path} at step row["epoch"]; close the files after the last epoch."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter
            self._writer = SummaryWriter(str(self.folder), purge_step=self.first_epoch)
        epoch = int(row["epoch"])
        for column, value in row.items():
            if column not in ("epoch", METRICS_END_TIME) and not math.isnan(value):
                self._writer.add_scalar(tag(column), value, epoch)
        for name, path in pictures.items():
            with Image.open(path) as picture:
                self._writer.add_image(name, np.asarray(picture.convert("RGB")), epoch, dataformats="HWC")
        self._writer.flush()
        if epoch == self.last_epoch:
            self._writer.close()
