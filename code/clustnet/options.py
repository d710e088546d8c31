"""Every option of `trainVal.py`, defined once: name, type, default, help, valid range.

A run's options come in three layers: the defaults below, then the `[default]` section of
the config file given with `-c`, then the command line. The resolved options are saved as
an .ini file that works as `-c` to rerun the same net.
"""

import argparse
import configparser
import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import ClustNetError
from .layout import PROJECT_ROOT

GATE_MODES = ("DE", "FS", "FD", "SD", "GSF")
OPTIMISERS = ("SGD", "Adam", "AMSGrad")


def parse_bool(text):
    """'True'/'False' (any case, also yes/no/1/0), as written in config files."""
    if isinstance(text, bool):
        return text
    value = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(text.lower())
    if value is None:
        raise ValueError(f"{text!r} is not True or False")
    return value


def optional(parse):
    """Accept an empty value or 'None' as None, else parse."""
    def parse_optional(text):
        return None if text.strip() in ("", "None") else parse(text)
    parse_optional.__name__ = parse.__name__
    return parse_optional


@dataclass(frozen=True)
class Option:
    name: str
    type: Callable[[str], Any]
    default: Any
    help: str
    many: bool = False  # a list of values: '--lr 0.01 0.001'
    choices: tuple = ()
    minimum: float | None = None  # inclusive
    positive: bool = False  # strictly greater than 0
    maximum: float | None = None  # inclusive
    below: float | None = None  # exclusive upper bound
    metavar: str = ""  # what --help shows for one value (default: value_name's, from the type)

    def check(self, value):
        """Raise ClustNetError if `value` is out of this option's range (inf and nan are out
        of every float option's)."""
        for item in (value if self.many and value is not None else [value]):
            if item is None:
                continue
            if isinstance(item, float) and not math.isfinite(item):
                raise ClustNetError(f"--{self.name} {item}: must be a finite number")
            if self.choices and item not in self.choices:
                raise ClustNetError(f"--{self.name} {item}: expected one of {', '.join(self.choices)}")
            if self.positive and not item > 0:
                raise ClustNetError(f"--{self.name} {item}: must be greater than 0")
            if self.minimum is not None and not item >= self.minimum:
                raise ClustNetError(f"--{self.name} {item}: must be at least {self.minimum}")
            if self.maximum is not None and not item <= self.maximum:
                raise ClustNetError(f"--{self.name} {item}: must be at most {self.maximum}")
            if self.below is not None and not item < self.below:
                raise ClustNetError(f"--{self.name} {item}: must be below {self.below}")


# The option table: a string starts a section (a group of --help, a table of docs/options.md),
# each Option after it is an option of that section.
OPTION_TABLE = [
    "The experiment",
    Option("exp_id", str, "default", "experiment name: the folder under nets/, results/ and vis/",
           metavar="NAME"),
    Option("ind_id", optional(int), None, "net number in the experiment (default: the next free one)",
           minimum=1),
    Option("overwrite", parse_bool, False, "allow an --ind_id that already exists to be written over"),
    Option("resume", parse_bool, False, "continue the nets this command names (--ind_id, one per seed of "
                                        "--seeds) from the last epoch all of them finished, with the same "
                                        "options; start them if none has started: rerunning the same "
                                        "command continues it"),
    Option("seed", int, 1, "random seed: weights, data order and gate samples", minimum=0),
    Option("seeds", int, [], "train one independent net per seed together in one process, "
                             "vectorised; each is saved as its own net", many=True, minimum=0, metavar="SEED"),
    "Data",
    Option("dataset", str, "MNIST", "MNIST, CIFAR10, or a folder with train/<class>/ and test/<class>/ images",
           metavar="NAME|PATH"),
    Option("data_dir", optional(str), None, "where torchvision datasets live (default: data/ at the project root)",
           metavar="PATH"),
    Option("pos_classes", int, [0, 1, 2, 3, 4], "classes of the positive group (binary target 1)",
           many=True, minimum=0, metavar="CLASS"),
    Option("val_size", int, 0, "training images held out as a validation set, scored after every epoch "
                               "(results/X/*_val.csv, the metrics log); the same images whatever the seed",
           minimum=0),
    "Architecture",
    Option("encnblayers", int, 2, "conv blocks in the shared encoder (conv, ReLU, 2x2 max-pool)", minimum=1),
    Option("enc_block", str, "conv5", "the encoder's conv block: conv5 (published: 5x5 valid conv) or conv3bn "
                                      "(3x3 padded conv and batch norm: the map keeps its size, so deeper "
                                      "encoders fit small images)", choices=("conv5", "conv3bn")),
    Option("encnbfilters", int, 16, "filters of the first conv block; each next block doubles them", minimum=1),
    Option("enchidd_repr_size", int, 64, "size of the encoder's output representation z", minimum=1),
    Option("clust", int, 5, "number of detecting networks (experts), the CN's output size", minimum=1),
    Option("clnblayers", int, 2, "dense layers in the clustering network (the gate)", minimum=1),
    Option("clhidd_repr_size", int, 64, "width of the CN's hidden layers", minimum=1),
    Option("denblayers", int, 1, "dense layers in each detecting network (1: linear, low capacity)", minimum=1),
    Option("dehidd_repr_size", int, 16, "width of the DNs' hidden layers", minimum=1),
    "The gate",
    Option("decision_clu", str, "DE", "gate: DE sample in training / argmax in eval, FS sample always, "
                                      "FD argmax always, SD soft (no one-hot), GSF Gumbel-softmax "
                                      "straight-through", choices=GATE_MODES),
    Option("temperature", float, 1.0, "Gumbel-softmax temperature (GSF)", positive=True),
    Option("entweig", float, 0.0, "weight of the mean entropy of the CN's distribution p, added to the loss (> 0: confident choices)"),
    Option("clustdivers", float, 0.0, "weight of the entropy of the batch's mean p, subtracted from the loss (> 0: a balanced use of the DNs)"),
    "Beyond the paper: training the gate to find the classes (all off by default)",
    Option("aug_rotation", float, 0.0, "augmentation: random rotation of the training images, up to +- this many "
                                       "degrees (any aug_* > 0 trains on two random views of each image)", minimum=0.0),
    Option("aug_shift", float, 0.0, "augmentation: random shift, up to +- this fraction of the image size",
           minimum=0.0),
    Option("aug_scale", float, 0.0, "augmentation: random zoom by a factor in [1 - v, 1 + v]", minimum=0.0,
           below=1.0),
    Option("aug_flip", float, 0.0, "augmentation: probability of mirroring a view left-right (not for digits)",
           minimum=0.0, maximum=1.0),
    Option("aug_jitter", float, 0.0, "augmentation: random contrast (a factor in [1 - v, 1 + v] around the "
                                     "image's mean) and brightness (+- v, in standard deviations)", minimum=0.0),
    Option("aug_crop", float, 0.0, "augmentation: a random crop of area 1 - v to 1 of the image's, aspect ratio "
                                   "3/4 to 4/3, resized to the image's size (SimCLR's random resized crop)",
           minimum=0.0, below=1.0),
    Option("aug_erase", float, 0.0, "augmentation: a square of side v times the image's, at a random centre "
                                    "(clipped at the border), set to 0, the dataset's mean after normalisation "
                                    "(Cutout)", minimum=0.0, maximum=1.0),
    Option("aug_colour", float, 0.0, "augmentation of colour images: hue rotated by up to +- v/4 of a turn, "
                                     "saturation scaled by [1 - v, 1 + v], grey with probability v/2 "
                                     "(SimCLR's colour distortion; no effect on one-channel images)",
           minimum=0.0),
    Option("clean_view", parse_bool, False, "True: view 1 is the image itself, not augmented (the binary loss, "
                                            "the gate's choice and the training scores read it); the terms "
                                            "compare it with the augmented view 2 (SCAN's image and its "
                                            "augmentation)"),
    Option("iic", float, 0.0, "weight of the mutual information between the CN's p on two augmented views of "
                              "each image, within each binary group (IIC), subtracted from the loss", minimum=0.0),
    Option("consistency", float, 0.0, "weight of -log(p . p'), p and p' the CN's distributions on two augmented "
                                      "views of each image (SCAN's consistency term), added to the loss",
           minimum=0.0),
    Option("consistency_grad", str, "both", "--consistency: where the gradient goes through view 1's p: both "
                                            "(as through view 2's; SCAN), cn (to the CN only: z is cut, the "
                                            "encoder learns from view 2's side), dense (to the CN and the "
                                            "encoder's dense layer to z: the conv maps are cut), view2 (nowhere: "
                                            "view 1's p is a fixed target), confident (per image: both where the "
                                            "CN's largest probability on view 1 is at least "
                                            "--consistency_confidence, cn elsewhere)",
           choices=("both", "cn", "dense", "view2", "confident")),
    Option("consistency_encoder_share", float, 0.0, "--consistency_grad cn: the share of view 1's gradient to "
                                                    "z that the encoder keeps (0: none, z cut; 1: all, as "
                                                    "both)", minimum=0.0, maximum=1.0),
    Option("consistency_confidence", float, 0.95, "--consistency_grad confident: the CN's largest probability "
                                                  "on view 1 from which an image's view-1 gradient reaches the "
                                                  "encoder (FixMatch's threshold)", minimum=0.0, maximum=1.0),
    Option("consistency_grad_from", int, 1, "--consistency_grad: the first epoch at which it applies; before, the "
                                            "gradient goes through both views (SCAN's)", minimum=1),
    Option("consistency_grad_until", int, 0, "--consistency_grad: the last epoch at which it applies (0: every "
                                             "epoch); after, the gradient goes through both views (SCAN's)",
           minimum=0),
    Option("teacher_consistency", float, 0.0, "weight of -log(p_T . p'), p_T the moving average's (--weight_ema) "
                                              "p on view 1, without gradient, and p' the CN's on view 2 (Mean "
                                              "Teacher's consistency in SCAN's form), added to the loss",
           minimum=0.0),
    Option("neighbours", float, 0.0, "weight of -log(p . p_n), p_n the CN's distribution on the image of the "
                                     "batch nearest in z within the binary group (SCAN's loss, in-batch "
                                     "neighbours; with --neighbours_k, mined over the training set), added to "
                                     "the loss", minimum=0.0),
    Option("neighbours_k", int, 0, "--neighbours: 0, the image's nearest in the batch; K > 0, one of its K "
                                   "nearest training images in z within its binary group, mined at the start of "
                                   "every epoch and drawn at random each epoch (SCAN's mined neighbours)",
           minimum=0),
    Option("self_label", float, 0.0, "weight of the cross-entropy of the CN on one view with the DN its p picks "
                                     "on the other view, where that p is confident (SCAN's self-labelling)",
           minimum=0.0),
    Option("self_label_threshold", float, 0.99, "--self_label: the confidence (max p) above which a choice "
                                                "becomes a target", minimum=0.0),
    Option("self_label_from", int, 1, "--self_label: the first epoch at which it counts (SCAN's third stage, "
                                      "once the clusters have formed); before, it is only logged", minimum=1),
    Option("sinkhorn", float, 0.0, "weight of SwAV's swapped prediction within each binary group: each view's "
                                   "p, made by Sinkhorn-Knopp to fill every DN equally over the group's images "
                                   "of the batch, is the target of the other view's p (cross-entropy)",
           minimum=0.0),
    Option("sinkhorn_temp", float, 1.0, "--sinkhorn: the targets are made from p ** (1 / T): below 1 sharper",
           positive=True),
    Option("sinkhorn_iters", int, 10, "--sinkhorn: Sinkhorn-Knopp iterations (each scales the DNs' columns, then "
                                      "the images' rows); fewer: a looser equipartition", minimum=1),
    Option("sinkhorn_from", int, 1, "--sinkhorn: the first epoch at which it counts (with --group_divers_until: "
                                    "it takes over from the balance once the gate has formed); before, it is "
                                    "only logged", minimum=1),
    Option("group_divers", float, 0.0, "weight of the entropy of the mean p within each binary group of the "
                                       "batch, subtracted from the loss (a balanced use of the DNs per group)",
           minimum=0.0),
    Option("group_divers_until", int, 0, "--group_divers: the last epoch at which it counts (0: every epoch); "
                                         "after, it is only logged", minimum=0),
    Option("contrastive", float, 0.0, "weight of SimCLR's NT-Xent between the projections of two augmented "
                                      "views of each image (trains the encoder through the projection "
                                      "head), added to the loss", minimum=0.0),
    Option("contrastive_temp", float, 0.5, "--contrastive: the temperature of the cosine similarities",
           positive=True),
    Option("proj_size", int, 0, "--contrastive: output size of the projection head on z (one hidden layer "
                                "of z's size); 0: no head, the NT-Xent on z itself", minimum=0),
    Option("rotation_pred", float, 0.0, "weight of RotNet's term: each training image turned by a random "
                                        "quarter-turn, a head on z (one hidden layer) predicts which of the four "
                                        "(cross-entropy); trains the encoder only (square images)", minimum=0.0),
    Option("rotation_reads", str, "z", "--rotation_pred: what its head reads: z, or maps (the last conv "
                                       "block's maps, flattened: the term then trains the conv blocks only)",
           choices=("z", "maps")),
    Option("overclust", int, 0, "outputs of an auxiliary over-clustering head on z (IIC; more than --clust), "
                                "read by --overclust_iic only; 0: no head", minimum=0),
    Option("overclust_iic", float, 0.0, "weight of --iic's mutual information on the over-clustering head's "
                                        "outputs on two augmented views, subtracted from the loss", minimum=0.0),
    Option("warmup_epochs", int, 0, "SCAN's two stages: during the first N epochs only the binary loss and "
                                    "the representation terms (--contrastive, --overclust_iic) count and the "
                                    "CN does not learn; the gate terms start after", minimum=0),
    Option("cn_heads", int, 1, "CN heads, each with its own --clust DNs, trained side by side on the same "
                               "encoder; after each epoch the head with the smallest training loss is the "
                               "one evaluated and saved as the CN (SCAN's heads)", minimum=1),
    Option("heads_own_z", parse_bool, False, "--cn_heads: each head has its own dense layer from the conv "
                                             "blocks to z, so the heads share the conv blocks only and the "
                                             "evaluated head's z is the net's"),
    Option("cn_binary_grad", parse_bool, True, "False: the binary loss does not reach the CN through the gate's "
                                               "straight-through estimator; the CN learns from its own terms "
                                               "(--iic, --consistency, --self_label, --group_divers) only"),
    Option("clu_train_mode", str, "joint", "joint: one loss trains CN and DNs; separated (published code, needs "
                                           "--batch_period > 0): in the CN's turns its target is the DN with the "
                                           "smallest binary loss on each image, or a random DN",
           choices=("joint", "separated")),
    Option("rand_prop_val_sched", float, [0.9, 0.5, 0.1], "separated mode: probability that an image's CN "
                                                          "target is its smallest-loss DN (else a random DN), "
                                                          "at the epochs of --rand_prop_epo_sched, linear "
                                                          "in between", many=True, minimum=0.0, maximum=1.0,
           metavar="P"),
    Option("rand_prop_epo_sched", int, [0, 1, 2], "separated mode: the epochs of --rand_prop_val_sched",
           many=True, minimum=0, metavar="EPOCH"),
    "Optimisation",
    Option("epochs", int, 10, "training epochs", minimum=1),
    Option("batch_size", int, 4, "training batch size", minimum=1),
    Option("test_batch_size", int, 1000, "evaluation batch size", minimum=1),
    Option("lr", float, [0.01], "learning rate of the encoder and DNs; several values: a schedule, "
                                "the epochs split into equal consecutive parts", many=True, positive=True,
           metavar="LR"),
    Option("lr_cl", float, [], "learning rate (schedule) of the CN (default: --lr)", many=True, positive=True,
           metavar="LR"),
    Option("optim", str, "SGD", "optimiser: SGD (with momentum), Adam, AMSGrad", choices=OPTIMISERS),
    Option("momentum", float, 0.5, "SGD momentum", minimum=0.0),
    Option("weight_decay", float, 0.0, "L2 weight decay", minimum=0.0),
    Option("weight_ema", float, 0.0, "d > 0: the net evaluated (validation, test, the weights files' analyses) "
                                     "is an exponential moving average of the trained weights, moved towards "
                                     "them by 1 - min(d, (1 + n) / (10 + n)) after the n-th step (timm's "
                                     "--model-ema, warmed up); the training scores and the choice of head stay "
                                     "the trained net's; below 1 (1 never moves the average)",
           minimum=0.0, below=1.0),
    Option("batch_period", int, 0, "0: CN and DNs step together; k: k batches for the CN, then k for "
                                   "the encoder and DNs, alternately", minimum=0),
    "Other modes",
    Option("pretrain", parse_bool, False, "train one DN with the encoder (the one-expert baseline)"),
    Option("pretrain_cae", parse_bool, False, "train a convolutional autoencoder"),
    Option("init", optional(str), None, "weights file: a pretrained DN, or a ClustNet file to resume from",
           metavar="PATH"),
    Option("init_enc", optional(str), None, "weights file (CAE or ClustNet) to initialise the encoder from",
           metavar="PATH"),
    Option("init_clu", optional(str), None, "weights file (ClustNet) to initialise the CN from", metavar="PATH"),
    Option("noise_init", float, 0.0, "relative noise added to DNs initialised from one pretrained DN",
           minimum=0.0),
    "Machine",
    Option("no_cuda", parse_bool, False, "train on the CPU even when CUDA is available"),
    Option("num_threads", int, 0, "CPU threads for PyTorch (0: the machine's cores shared evenly among the "
                                  "trainVal.py runs on it, checked at each epoch; the number of threads "
                                  "changes the results' last bits)", minimum=0),
    Option("progress", parse_bool, True, "show a progress bar during each epoch"),
    Option("tensorboard", parse_bool, False, "also log each epoch's metrics and the test set's confusion matrices "
                                             "for TensorBoard, under runs/<exp_id>/net<N> (tensorboard --logdir runs)"),
]

OPTIONS = [row for row in OPTION_TABLE if isinstance(row, Option)]
OPTIONS_BY_NAME = {option.name: option for option in OPTIONS}


def sections():
    """The table's sections in order: [(title, [Option, ...]), ...]."""
    grouped = []
    for row in OPTION_TABLE:
        if isinstance(row, str):
            grouped.append((row, []))
        else:
            grouped[-1][1].append(row)
    return grouped


def value_name(option):
    """What --help shows for one value of `option`: its own metavar, its choices, or its type's."""
    if option.metavar:
        return option.metavar
    if option.choices:
        return "{" + ",".join(option.choices) + "}"
    if option.type is parse_bool:
        return "{True,False}"
    return {"int": "N", "float": "X"}.get(option.type.__name__, "TEXT")


def value_kind(option):
    """The values `option` takes, in words (docs/options.md): choices, or type and range."""
    if option.choices:
        kind = " / ".join(option.choices)
    elif option.type is parse_bool:
        kind = "True / False"
    else:
        kind = "path" if option.metavar == "PATH" else option.type.__name__
        if option.positive:
            kind += " > 0"
        elif option.minimum is not None:
            kind += f" >= {option.minimum:g}"
        if option.maximum is not None:
            kind += f", <= {option.maximum:g}"
        if option.below is not None:
            kind += f", < {option.below:g}"
    return f"list of {kind}" if option.many else kind


def unknown_option_message(name, where):
    close = difflib.get_close_matches(name, OPTIONS_BY_NAME, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown option {name!r} {where}{hint}"


def parse_value(option, text, where):
    """Parse one config-file or command-line string for `option`."""
    try:
        if option.many:
            return [option.type(item) for item in text.split()]
        return option.type(text)
    except ValueError:
        kind = "True or False" if option.type is parse_bool else getattr(option.type, "__name__", "value")
        raise ClustNetError(f"option {option.name} {where}: {text!r} is not a valid {kind}") from None


def find_config(path):
    """`-c` is read relative to the working folder, else relative to the project root."""
    path = Path(path)
    if path.is_file() or path.is_absolute():
        return path
    return PROJECT_ROOT / path if (PROJECT_ROOT / path).is_file() else path


def read_ini_text(path):
    """The text of an INI file, or one clear error."""
    try:
        with open(path) as file:
            return file.read()
    except OSError as error:
        raise ClustNetError(f"cannot read config file {path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ClustNetError(f"config file {path} is not a valid INI file: "
                            f"{str(error).splitlines()[0]}") from None


def ini_values(text, path, kind="config file"):
    """The `[default]` section of the INI text `text` as {name: parsed value}, strictly: an
    option trainVal.py does not have, or a value its option cannot take, is refused with one
    error naming `path`. `kind` says what `path` is in the errors: "config file" (a -c file
    or a net's .ini) or "weights file" (the options a weights file holds). Values are read
    as written, no % interpolation: `options_ini` writes them so (a net's .ini, --print_config),
    and such a file is a valid -c file."""
    what, where = {"config file": (f"config file {path}", f"in {path}"),
                   "weights file": (f"the options saved in weights file {path}", f"in weights file {path}")}[kind]
    parser = configparser.ConfigParser(default_section="__none__", interpolation=None)
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as error:
        raise ClustNetError(f"{what} is not a valid INI file: {str(error).splitlines()[0]}") from None
    if not parser.has_section("default"):
        raise ClustNetError(f"{what} has no [default] section")
    values = {}
    for name, value in parser.items("default"):
        if name not in OPTIONS_BY_NAME:
            raise ClustNetError(unknown_option_message(name, where))
        values[name] = parse_value(OPTIONS_BY_NAME[name], value, where)
    return values


def read_config(path):
    """The `[default]` section of an INI file (`-c`) as {name: parsed value}."""
    path = find_config(path)
    return ini_values(read_ini_text(path), path)


def default_values():
    """{name: default} of every option."""
    return {option.name: option.default for option in OPTIONS}


def options_from_ini_text(text, path, kind="config file"):
    """The options a net was trained with, from the .ini text `options_ini` wrote (a net's
    .ini file, or the copy inside its weights file: `kind` "weights file"), as a checked
    Namespace. Read strictly by `ini_values` (an unknown option is refused, naming `path`),
    over the defaults: a file written before an option existed loads with its default."""
    values = default_values()
    values.update(ini_values(text, path, kind))
    check_values(values)
    return argparse.Namespace(**values)


def read_saved_options(path):
    """`options_from_ini_text` of a net's .ini file."""
    return options_from_ini_text(read_ini_text(path), path)


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad command line as a ClustNetError (one line, exit 2)."""

    def error(self, message):
        if message.startswith("unrecognized arguments:"):
            flag = message.split(":", 1)[1].split()[0]
            if flag.startswith("--"):
                raise ClustNetError(unknown_option_message(flag[2:], "on the command line"))
        raise ClustNetError(message)


def argument(option):
    """add_argument's keywords for `option`: a list takes one or more values (zero too where
    the empty list is its default), a boolean alone means True."""
    text = option.help if "(default:" in option.help else \
        f"{option.help} (default: {format_value(option.default) or 'none'})"
    kwargs = dict(help=text.replace("%", "%%"), default=argparse.SUPPRESS, metavar=value_name(option))
    if option.many:
        kwargs["nargs"] = "*" if option.default == [] else "+"
    elif option.type is parse_bool:
        kwargs.update(nargs="?", const="True")
    return kwargs


def build_parser(description):
    """The command line: -c and --print_config, then one argument group per section of the table."""
    parser = OneLineArgumentParser(
        description=description, allow_abbrev=False, usage="%(prog)s [-c PATH] [--print_config] [--OPTION VALUE ...]",
        epilog="Every option can also be set in the config file's [default] section (option = value); "
               "the command line wins. docs/options.md lists them with their ranges.")
    group = parser.add_argument_group("Configuration")
    group.add_argument("-c", "--config", metavar="PATH", help="INI config file whose [default] section sets the defaults")
    group.add_argument("--print_config", action="store_true", default=argparse.SUPPRESS,
                       help="print the resolved options (defaults, config file, command line) as a config file "
                            "that -c takes, and exit without reading data or writing anything")
    for title, options in sections():
        group = parser.add_argument_group(title)
        for option in options:
            group.add_argument(f"--{option.name}", **argument(option))
    return parser


@dataclass
class CommandLine:
    """A parsed command line: the resolved options, the names of those given on it, and
    whether it asks only to print them (--print_config)."""
    opts: argparse.Namespace
    given: set
    print_config: bool


def read_command_line(argv, description="Train ClustNet."):
    """Defaults, then the config file, then the command line; checked."""
    given = vars(build_parser(description).parse_args(argv))
    values = default_values()
    config = given.pop("config", None)
    print_config = given.pop("print_config", False)
    if config is not None:
        values.update(read_config(config))
    for name, raw in given.items():
        text = " ".join(raw) if isinstance(raw, list) else raw
        values[name] = parse_value(OPTIONS_BY_NAME[name], text, "on the command line")
    check_values(values)
    return CommandLine(argparse.Namespace(**values), set(given), print_config)


def parse_options(argv, description="Train ClustNet."):
    """The resolved options of a command line (read_command_line) as a Namespace."""
    return read_command_line(argv, description).opts


def check_values(values):
    """Each option's range, and the rules between options."""
    for option in OPTIONS:
        option.check(values[option.name])
    if not values["lr"]:
        raise ClustNetError("--lr needs at least one value")
    if len(values["rand_prop_val_sched"]) != len(values["rand_prop_epo_sched"]) or not values["rand_prop_epo_sched"]:
        raise ClustNetError("--rand_prop_val_sched and --rand_prop_epo_sched need the same number of values "
                            f"({len(values['rand_prop_val_sched'])} and {len(values['rand_prop_epo_sched'])})")
    if values["rand_prop_epo_sched"] != sorted(values["rand_prop_epo_sched"]):
        raise ClustNetError("--rand_prop_epo_sched: the epochs must be in increasing order")
    if values["clu_train_mode"] == "separated" and values["batch_period"] == 0:
        raise ClustNetError("--clu_train_mode separated alternates CN and DN turns: give --batch_period 1 or more")
    if values["overclust_iic"] and values["overclust"] < 2:
        raise ClustNetError(f"--overclust_iic {values['overclust_iic']} reads the over-clustering head: give "
                            "--overclust 2 or more (IIC uses several times --clust)")
    if values["warmup_epochs"] and values["clu_train_mode"] == "separated":
        raise ClustNetError("--warmup_epochs needs --clu_train_mode joint (the separated mode trains the CN on "
                            "its own turns)")
    if values["cn_heads"] > 1 and values["clu_train_mode"] == "separated":
        raise ClustNetError(f"--cn_heads {values['cn_heads']} needs --clu_train_mode joint (the separated "
                            "mode's CN turns have one target per net)")
    if values["heads_own_z"]:
        if values["cn_heads"] < 2:
            raise ClustNetError("--heads_own_z True gives each CN head its own z: give --cn_heads 2 or more")
        if values["pretrain"] or values["pretrain_cae"]:
            raise ClustNetError("--heads_own_z True: the one-expert net and the autoencoder have no CN heads")
        if values["proj_size"] or values["overclust"]:
            raise ClustNetError("--heads_own_z True: the projection head (--proj_size) and the over-clustering "
                                "head (--overclust) read one z per net; give them 0")
    if values["weight_ema"] and (values["pretrain"] or values["pretrain_cae"]):
        raise ClustNetError("--weight_ema: averages ClustNet's weights; the one-expert net and the autoencoder "
                            "are evaluated as trained")
    if values["teacher_consistency"] and not values["weight_ema"]:
        raise ClustNetError(f"--teacher_consistency {values['teacher_consistency']}: the teacher is the moving "
                            "average of the weights; give --weight_ema (0.995, say)")
    if values["consistency_encoder_share"] and values["consistency_grad"] != "cn":
        raise ClustNetError(f"--consistency_encoder_share {values['consistency_encoder_share']}: applies to "
                            "--consistency_grad cn only")
    if (values["consistency_confidence"] != OPTIONS_BY_NAME["consistency_confidence"].default
            and values["consistency_grad"] != "confident"):
        raise ClustNetError(f"--consistency_confidence {values['consistency_confidence']}: applies to "
                            "--consistency_grad confident only")
    if values["consistency_grad_until"] and values["consistency_grad_from"] > values["consistency_grad_until"]:
        raise ClustNetError(f"--consistency_grad_from {values['consistency_grad_from']}: after "
                            f"--consistency_grad_until {values['consistency_grad_until']}, so it never applies")
    repeated = sorted({seed for seed in values["seeds"] if values["seeds"].count(seed) > 1})
    if repeated:
        which = f"seed {repeated[0]} is" if len(repeated) == 1 else f"seeds {', '.join(map(str, repeated))} are"
        raise ClustNetError(f"--seeds {format_value(values['seeds'])}: {which} given more than once; "
                            "each seed trains one net, so give each seed once")


def format_value(value):
    if isinstance(value, list):
        return " ".join(str(item) for item in value)
    return "" if value is None else str(value)


def options_ini(options):
    """The resolved options as the text of an INI file with a [default] section."""
    lines = ["[default]"] + [f"{option.name} = {format_value(getattr(options, option.name))}"
                             for option in OPTIONS]
    return "\n".join(lines) + "\n"


def markdown_cell(text):
    """`text` inside a Markdown table cell: | ends a cell, <...> reads as an HTML tag."""
    return text.replace("|", "\\|").replace("<", "\\<")


def options_markdown():
    """The page docs/options.md: every option of the table, a table per section, with the
    values it takes, its default and its help."""
    lines = ["# trainVal.py options", "",
             "This page is generated from the option table (`OPTION_TABLE` in `code/clustnet/options.py`), "
             "the one definition of the options; do not edit it by hand. After changing the table, "
             "regenerate it from the `code/` folder with `python3 -m clustnet.options > ../docs/options.md` "
             "(`tests/test_options.py` fails while this page differs from the table).", "",
             "A run's options come in three layers: these defaults, then the `[default]` section of the "
             "config file given with `-c PATH`, then the command line. Every key of the config file is "
             "also an option `--key`, and every option can be put in the config file. Booleans are "
             "written `True`/`False` (`--no_cuda` alone means `--no_cuda True`); lists are written with "
             "spaces (`--lr 0.01 0.001`, `pos_classes = 0 1 2 3 4`); inf and nan are refused. "
             "`python3 code/trainVal.py --help` lists the options in these sections; "
             "`--print_config` prints the resolved options as a config file that `-c` takes and exits "
             "without reading data or writing anything.", ""]
    for title, options in sections():
        lines += [f"## {title}", "", "| option | values | default | meaning |", "|---|---|---|---|"]
        for option in options:
            default = format_value(option.default)
            lines.append(f"| `--{option.name}` | {markdown_cell(value_kind(option))} | "
                         f"{f'`{default}`' if default else ''} | {markdown_cell(option.help)} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(options_markdown(), end="")
