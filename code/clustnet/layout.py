"""The on-disk experiment layout: every file name and the CSV schema, defined once.

`trainVal.py` writes through this module and `processResults.py` reads through it.
Every file is written under a temporary name and renamed, so it is complete or absent.
"""

import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import ClustNetError

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def output_root():
    """Where nets/, results/, vis/ and data/ live: $CLUSTNET_ROOT, else the project root."""
    return Path(os.environ.get("CLUSTNET_ROOT", PROJECT_ROOT))

CLUSTNET = "clustDetectNet"  # the mixture of experts
DETECTNET = "detectNet"  # one expert with the encoder (--pretrain True)
CAE = "cae"  # the convolutional autoencoder (--pretrain_cae True)
KINDS = (CLUSTNET, DETECTNET, CAE)

SCORE_COLUMNS = ["origTarg", "targ", "pred_0", "pred_1"]


# The metrics log (Experiment.metrics_path), one row per epoch (epoch 0: the initial net,
# no training). Columns, in this order: "epoch"; "lr_<optimiser>" for each optimiser
# ("lr_cn", "lr_main" for ClustNet); "loss_binary" and "loss_<term>" for each gate term in use
# (means over the epoch's training steps); then for each split of METRICS_SPLITS that the run
# has, "<split>_loss" and "<split>_<accuracy>" for each of METRICS_ACCURACIES (fractions in
# [0, 1]); then METRICS_TIMES (seconds), "threads" (PyTorch's CPU threads in the epoch: with
# --num_threads 0 they follow the other runs on the machine, and they change the results'
# last bits) and "end_time" (ISO 8601, when the epoch ended).
# The one-expert net (--pretrain) has the binary accuracy only; the autoencoder
# (--pretrain_cae) no loss_* parts and no accuracies, its <split>_loss the reconstruction
# error. Epoch 0 leaves lr_* and loss_* empty (no training step). metrics_columns lists them.
METRICS_SPLITS = ("train", "val", "test")
METRICS_ACCURACIES = ("binary", "pos_clust", "neg_clust")
METRICS_TIMES = ("seconds_train", "seconds_eval", "seconds_write")
METRICS_THREADS = "threads"
METRICS_END_TIME = "end_time"

# The suffix of the scores CSVs of each set of images scored after an epoch (METRICS_SPLITS).
SPLIT_SUFFIXES = {"train": "_train", "val": "_val", "test": ""}


def split_name(split):
    """A split's name; True and False (older callers' `train` flag) stand for train and test."""
    if isinstance(split, bool):
        return "train" if split else "test"
    if split not in SPLIT_SUFFIXES:
        raise ValueError(f"split {split!r}: expected one of {', '.join(METRICS_SPLITS)}")
    return split


def metrics_columns(optimisers, step_terms, splits, accuracies=METRICS_ACCURACIES):
    """The metrics log's columns, in order (see above): `optimisers` their names, `step_terms`
    the loss parts averaged over the training steps ("binary", then each gate term's option;
    none for the autoencoder), `splits` the scored sets the run has, `accuracies` the
    accuracies each set gets (all of METRICS_ACCURACIES for ClustNet, "binary" for the
    one-expert net, none for the autoencoder)."""
    return (["epoch"] + [f"lr_{name}" for name in optimisers] + [f"loss_{term}" for term in step_terms]
            + [f"{split}_{measure}" for split in METRICS_SPLITS if split in splits
               for measure in ("loss", *accuracies)]
            + list(METRICS_TIMES) + [METRICS_THREADS, METRICS_END_TIME])


def score_columns(n_clusters):
    """CSV header: 10-class label, binary target, 2 log-probabilities, the CN's distribution."""
    return SCORE_COLUMNS + [f"clust_{k}" for k in range(n_clusters)]


def temporary_beside(path):
    """A new empty file beside `path`, hidden, with the permissions the user's umask gives
    (mkstemp's own are 0600): (file descriptor, name)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
    return fd, tmp


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temporary_beside(path)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def check_exp_id(exp_id):
    """An experiment name is one plain folder name: no separators, no '..', not empty."""
    if not exp_id or exp_id in (".", "..") or not re.fullmatch(r"[A-Za-z0-9._+=-]+", exp_id):
        raise ClustNetError(
            f"exp_id {exp_id!r} is not a plain folder name (use letters, digits, '.', '_', '-', '+', '=')")
    return exp_id


def numbers_in(folder, pattern):
    """The sorted numbers captured by `pattern`'s group 1 in the names of `folder`'s files."""
    if not folder.is_dir():
        return []
    compiled = re.compile(pattern)
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := compiled.fullmatch(p.name)))


class Experiment:
    """The folders and file names of one experiment `exp_id` under the project root."""

    def __init__(self, exp_id, root=None):
        self.exp_id = check_exp_id(exp_id)
        self.root = Path(root) if root is not None else output_root()
        self.nets_dir = self.root / "nets" / exp_id
        self.results_dir = self.root / "results" / exp_id
        self.vis_dir = self.root / "vis" / exp_id

    def ini_path(self, ind_id, kind=CLUSTNET):
        return self.nets_dir / f"{kind}{ind_id}.ini"

    def weights_path(self, ind_id, epoch, kind=CLUSTNET):
        return self.nets_dir / f"{kind}{ind_id}_epoch{epoch}"

    def scores_path(self, ind_id, epoch, split="test", kind=CLUSTNET):
        """The per-image scores CSV of a net and epoch on `split` (METRICS_SPLITS; True and False
        stand for "train" and "test")."""
        prefix = "all_scores_net" if kind == CLUSTNET else f"all_scores_{kind}"
        return self.results_dir / f"{prefix}{ind_id}_epoch{epoch}{SPLIT_SUFFIXES[split_name(split)]}.csv"

    def metrics_path(self, ind_id, kind=CLUSTNET):
        """One row per epoch of the net's learning rates, losses, accuracies and timings (METRICS_*)."""
        prefix = "net" if kind == CLUSTNET else kind
        return self.vis_dir / f"{prefix}{ind_id}_metrics.csv"

    def tensorboard_dir(self, ind_id, kind=CLUSTNET):
        """The TensorBoard event files of a net (--tensorboard True): runs/<exp>/net<N>."""
        prefix = "net" if kind == CLUSTNET else kind
        return self.root / "runs" / self.exp_id / f"{prefix}{ind_id}"

    def confusion_path(self, ind_id, epoch, positive):
        return self.vis_dir / f"perm_{'det' if positive else 'nodet'}_{ind_id}_{epoch}.png"

    def reconstructions_path(self, ind_id, epoch):
        """A few test images above their reconstructions by autoencoder `ind_id` (--pretrain_cae)."""
        return self.vis_dir / f"{CAE}{ind_id}_reconstructions_epoch{epoch}.png"

    # What processResults.py writes in vis/X/; `train` selects the train-set variant.
    def accuracy_plot_path(self, train=False):
        return self.vis_dir / f"{self.exp_id}_{'train' if train else 'test'}Error.png"

    def accuracy_table_path(self, train=False):
        return self.vis_dir / f"{self.exp_id}_{'train' if train else 'test'}Error.csv"

    def total_variation_path(self, train=False):
        return self.vis_dir / f"tv_{'train' if train else 'test'}.png"

    def weights_distance_path(self, ind_id):
        return self.vis_dir / f"net{ind_id}_weightsDistances.png"

    def sparsity_path(self, train=False):
        return self.vis_dir / f"sparsity{'_train' if train else ''}.png"

    def failures_dir(self, ind_id, epoch, train=False):
        return self.vis_dir / f"net{ind_id}" / f"epoch{epoch}{'_train' if train else ''}"

    def cludis_path(self, ind_id, train=False):
        return self.vis_dir / f"net{ind_id}_cludis{'_train' if train else ''}.png"

    def class_dn_path(self, ind_id, epoch, train=False):
        """--class_dn's table: net `ind_id`'s images per class and DN at `epoch`."""
        return self.vis_dir / f"net{ind_id}_epoch{epoch}_class_dn{'_train' if train else ''}.csv"

    def feature_variance_path(self, ind_id, layer, positive, train=False):
        group = "pos" if positive else "neg"
        return self.vis_dir / f"net{ind_id}_lay{layer}_{group}_var{'_train' if train else ''}.png"

    def tsne_paths(self, weights_name):
        """(t-SNE of the encoder's representations, t-SNE of the raw pixels)."""
        return self.vis_dir / f"{weights_name}_tsne.png", self.vis_dir / f"{weights_name}_tsne_raw.png"

    def heads_path(self, epoch, split):
        """experiments/cn_heads.py's table: every CN head of every net at `epoch`, on `split`."""
        return self.vis_dir / f"cn_heads_epoch{epoch}_{split}.csv"

    def baselines_path(self):
        """experiments/baselines.py's table: method, binary, pos_clust, neg_clust."""
        return self.vis_dir / "baselines.csv"

    def scored_epochs(self, ind_id, split="test", kind=CLUSTNET):
        """The epochs whose scores CSV on `split` exists for net `ind_id`, sorted."""
        name = self.scores_path(ind_id, "EPOCH", split, kind).name
        return numbers_in(self.results_dir, re.escape(name).replace("EPOCH", r"(\d+)"))

    def net_ids(self, kind=CLUSTNET):
        """The ids of the nets of this kind that have a saved .ini, sorted."""
        return numbers_in(self.nets_dir, rf"{kind}(\d+)\.ini")

    def epochs(self, ind_id, kind=CLUSTNET):
        """The epochs whose weights file exists for net `ind_id`, sorted."""
        return numbers_in(self.nets_dir, rf"{kind}{ind_id}_epoch(\d+)")

    def create_folders(self, kind=CLUSTNET):
        """Create the folders a run of `kind` writes in, nets/X, results/X (not for an
        autoencoder, which has no scores) and vis/X, and the output root, where absent, and
        check that files can be created in them, before the run writes anything. Any failure
        is one ClustNetError, and the folders this call created are removed again."""
        created = []
        folders = (self.nets_dir, self.vis_dir) if kind == CAE else (self.nets_dir, self.results_dir, self.vis_dir)
        try:
            for folder in folders:
                for path in [*reversed(folder.parents), folder]:
                    if path.exists():
                        continue
                    action = f"cannot create the output folder {path}"
                    try:
                        path.mkdir()
                        created.append(path)
                    except FileExistsError:  # another run made it meanwhile
                        pass
                action = f"cannot write in the output folder {folder}"
                with tempfile.TemporaryFile(dir=folder):
                    pass
        except OSError as error:
            for path in reversed(created):
                try:
                    path.rmdir()
                except OSError:
                    pass  # another run wrote in it meanwhile
            raise ClustNetError(f"{action}: {error.strerror or error} (the output root is {self.root}: "
                                "set CLUSTNET_ROOT to a folder you can write in)") from None

    def claim_ind_id(self, ini_text_for, requested=None, overwrite=False, kind=CLUSTNET):
        """Create this net's .ini and return its id, atomically with respect to other runs.

        `ini_text_for(ind_id)` gives the file's content. The file is written whole under a
        temporary name, then hard-linked to its final name, which fails if the name exists:
        two runs started at the same moment never get the same id."""
        self.nets_dir.mkdir(parents=True, exist_ok=True)
        while True:
            ind_id = requested if requested is not None else max(self.net_ids(kind), default=0) + 1
            path = self.ini_path(ind_id, kind)
            fd, tmp = temporary_beside(path)
            try:
                with os.fdopen(fd, "w") as file:
                    file.write(ini_text_for(ind_id))
                if overwrite:
                    os.replace(tmp, path)
                else:
                    os.link(tmp, path)
                return ind_id
            except FileExistsError:
                if requested is not None:
                    raise ClustNetError(
                        f"net {ind_id} already exists in experiment {self.exp_id!r} ({path}); "
                        "choose another --ind_id, leave it out, or pass --overwrite True") from None
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)


def summary_paths(name, root=None):
    """What `processResults.py --summary --summary_name NAME` writes: (CSV, Markdown) in vis/summary/."""
    folder = (Path(root) if root is not None else output_root()) / "vis" / "summary"
    return folder / f"{name}.csv", folder / f"{name}.md"


def earlier_weights(path):
    """The weights files beside weights file `path` (named as Experiment.weights_path names
    them) of the same net at earlier epochs, the latest first; [] for a file named otherwise."""
    path = Path(path)
    match = re.fullmatch(rf"({'|'.join(KINDS)})(\d+)_epoch(\d+)", path.name)
    if not match:
        return []
    net = f"{match.group(1)}{match.group(2)}"
    epochs = numbers_in(path.parent, rf"{net}_epoch(\d+)")
    return [path.parent / f"{net}_epoch{epoch}" for epoch in reversed(epochs) if epoch < int(match.group(3))]


def write_scores(path, orig_targets, bin_targets, log_probs, cluster_probs):
    """One CSV row per image, columns `score_columns(K)`; arrays are numpy or CPU tensors."""
    n_clusters = 0 if cluster_probs is None else cluster_probs.shape[1]
    values = np.column_stack([np.asarray(orig_targets), np.asarray(bin_targets), np.asarray(log_probs)]
                             + ([np.asarray(cluster_probs)] if n_clusters else []))
    frame = pd.DataFrame(values, columns=score_columns(n_clusters))
    frame = frame.astype({"origTarg": "int64", "targ": "int64"})
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.9g")


def ends_with_newline(path):
    """Whether a non-empty file's last byte is a newline, as in every CSV that pandas writes."""
    with open(path, "rb") as file:
        if file.seek(0, os.SEEK_END) == 0:
            return False
        file.seek(-1, os.SEEK_END)
        return file.read(1) == b"\n"


def read_whole_csv(path, what):
    """The CSV file `path` (a `what`), refused with one clear error when it is missing, cut
    short (pandas ends every file it writes with a newline) or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ClustNetError(f"no {what} {path}")
    if not ends_with_newline(path):
        raise ClustNetError(f"{what} {path} is truncated: its last line is cut")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ClustNetError(f"{what} {path} is unreadable or truncated: {error}") from None


def read_scores(path):
    """Read a scores CSV written by `write_scores`, checking its header and that it is whole."""
    frame = read_whole_csv(path, "scores file")
    n_clusters = len(frame.columns) - len(SCORE_COLUMNS)
    if n_clusters < 0 or list(frame.columns) != score_columns(n_clusters) or frame.isna().any().any():
        raise ClustNetError(f"scores file {path} is truncated or not a ClustNet scores file")
    return frame


def write_metrics(path, frame):
    """Write a metrics log whole (its rows so far), atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.9g")


def read_metrics(path):
    """A metrics log written by `write_metrics`, checked: whole, its first column "epoch" and
    its last ones the times; one clear error otherwise."""
    frame = read_whole_csv(path, "metrics log")
    tail = list(METRICS_TIMES) + [METRICS_THREADS, METRICS_END_TIME]
    if list(frame.columns[:1]) != ["epoch"] or list(frame.columns[-len(tail):]) != tail:
        raise ClustNetError(f"{path} is not a ClustNet metrics log")
    return frame
