"""Options: config file, command-line overrides, types, errors, the .ini round trip, --help,
--print_config and the generated docs/options.md."""

import re
import subprocess
import sys

import pytest

from conftest import CODE, REPO, run_cli
from clustnet.errors import ClustNetError
from clustnet.checkpoint import checkpoint_options
from clustnet.options import (OPTIONS, build_parser, options_from_ini_text, options_ini, options_markdown,
                              parse_options, sections)


def write(path, text):
    path.write_text(text)
    return path


def test_defaults_then_file_then_command_line(tmp_path):
    config = write(tmp_path / "c.ini", "[default]\nlr = 0.5 0.05\nbatch_size = 32\nno_cuda = True\n")
    opts = parse_options(["-c", str(config), "--batch_size", "8", "--clust", "3"])
    assert opts.lr == [0.5, 0.05]  # from the file, a schedule
    assert opts.batch_size == 8  # the command line wins
    assert opts.clust == 3 and opts.no_cuda is True
    assert opts.epochs == next(o.default for o in OPTIONS if o.name == "epochs")


def test_list_and_bool_forms():
    opts = parse_options(["--lr", "0.01", "0.001", "--pos_classes", "1", "3", "--no_cuda", "--pretrain", "False"])
    assert opts.lr == [0.01, 0.001] and opts.pos_classes == [1, 3]
    assert opts.no_cuda is True and opts.pretrain is False


def test_config_found_from_code_folder_and_root(tmp_path):
    assert parse_options(["-c", "clust.config"]).dataset == "MNIST"
    for cwd in (REPO, REPO / "code"):
        result = run_cli("trainVal.py", "-c", "clust.config", "--help", cwd=cwd)
        assert result.returncode == 0 and "--clnblayers" in result.stdout


def test_ini_round_trip(tmp_path):
    opts = parse_options(["--lr", "0.02", "0.002", "--seeds", "3", "4", "--init", "w.pt", "--clnblayers", "3"])
    saved = write(tmp_path / "net.ini", options_ini(opts))
    assert vars(parse_options(["-c", str(saved)])) == vars(opts)


@pytest.mark.parametrize("argv, message", [
    (["--lrr", "0.1"], "unknown option 'lrr' on the command line (did you mean lr?)"),
    (["--batch_size", "four"], "option batch_size on the command line: 'four' is not a valid int"),
    (["--no_cuda", "maybe"], "'maybe' is not a valid True or False"),
    (["--lr", "-0.1"], "--lr -0.1: must be greater than 0"),
    (["--batch_size", "0"], "--batch_size 0: must be at least 1"),
    (["--decision_clu", "XX"], "--decision_clu XX: expected one of DE, FS, FD, SD, GSF"),
    (["-c", "/nonexistent/c.ini"], "cannot read config file /nonexistent/c.ini"),
    (["--seeds", "3", "1", "3", "1", "2"], "--seeds 3 1 3 1 2: seeds 1, 3 are given more than once"),
    (["--lr", "inf"], "--lr inf: must be a finite number"),
    (["--momentum", "nan"], "--momentum nan: must be a finite number"),
    (["--aug_rotation", "1e999"], "--aug_rotation inf: must be a finite number"),
    (["--rand_prop_val_sched", "NaN", "0.5", "0.1"], "--rand_prop_val_sched nan: must be a finite number"),
    (["--consistency_grad", "cn", "--consistency_encoder_share", "1.5"],
     "--consistency_encoder_share 1.5: must be at most 1.0"),
    (["--consistency_encoder_share", "0.5"], "--consistency_encoder_share 0.5: applies to --consistency_grad cn only"),
    (["--consistency_confidence", "0.8"], "--consistency_confidence 0.8: applies to --consistency_grad confident only"),
    (["--consistency_grad", "confident", "--consistency_confidence", "1.5"],
     "--consistency_confidence 1.5: must be at most 1.0"),
    (["--consistency_grad", "cn", "--consistency_grad_from", "4", "--consistency_grad_until", "3"],
     "--consistency_grad_from 4: after --consistency_grad_until 3, so it never applies"),
])
def test_bad_command_lines(argv, message):
    with pytest.raises(ClustNetError, match=None) as error:
        parse_options(argv)
    assert message in str(error.value)


def test_upper_bounds_take_the_bound_itself_only_when_inclusive():
    assert parse_options(["--aug_flip", "1"]).aug_flip == 1.0  # maximum: 1 is a probability
    assert parse_options(["--aug_scale", "0.99"]).aug_scale == 0.99
    with pytest.raises(ClustNetError, match=r"^--aug_scale 1.0: must be below 1.0$"):  # below: 1 is out
        parse_options(["--aug_scale", "1"])
    assert parse_options(["--rand_prop_val_sched", "1", "0.5", "0"]).rand_prop_val_sched == [1.0, 0.5, 0.0]
    with pytest.raises(ClustNetError, match=r"^--rand_prop_val_sched 1.01: must be at most 1.0$"):
        parse_options(["--rand_prop_val_sched", "0.5", "1.01", "0"])


@pytest.mark.parametrize("text, message", [
    ("[default]\nclnblayer = 3\n", "unknown option 'clnblayer' in"),
    ("[default]\nepochs = 2.5\n", "'2.5' is not a valid int"),
    ("", "has no [default] section"),
    ("lr = 0.1\n", "is not a valid INI file"),
    ("[default]\nmomentum = nan\n", "--momentum nan: must be a finite number"),
    ("[default]\nlr = 0.1 inf\n", "--lr inf: must be a finite number"),
    ("[default]\nweight_decay = -inf\n", "--weight_decay -inf: must be a finite number"),
])
def test_bad_config_files(tmp_path, text, message):
    with pytest.raises(ClustNetError) as error:
        parse_options(["-c", str(write(tmp_path / "bad.ini", text))])
    assert message in str(error.value)


# Options added by the gate research (after the first saved nets): a file written before
# them lacks their lines.
GATE_RESEARCH_OPTIONS = ("aug_rotation", "aug_shift", "aug_scale", "aug_flip", "aug_jitter", "iic", "consistency", "self_label",
                         "self_label_threshold", "group_divers", "cn_binary_grad", "clu_train_mode",
                         "rand_prop_val_sched", "rand_prop_epo_sched")


def test_saved_options_are_read_back_strictly_one_way(tmp_path):
    """A net's .ini and the copy inside its weights file are read by one function: the
    text options_ini wrote comes back as the same options, values with % included."""
    opts = parse_options(["--lr", "0.02", "0.002", "--init", "w.pt", "--data_dir", str(tmp_path / "50%data")])
    text = options_ini(opts)
    assert vars(options_from_ini_text(text, "net.ini")) == vars(opts)
    assert vars(checkpoint_options({"options": text}, "nets/x/clustDetectNet1_epoch3")) == vars(opts)


@pytest.mark.parametrize("kind, where", [("config file", "in nets/x/clustDetectNet1.ini"),
                                         ("weights file", "in weights file nets/x/clustDetectNet1.ini")])
def test_saved_options_with_an_unknown_option_are_refused_naming_it_and_the_file(kind, where):
    text = options_ini(parse_options([])) + "clnblayer = 3\n"
    with pytest.raises(ClustNetError) as error:
        options_from_ini_text(text, "nets/x/clustDetectNet1.ini", kind)
    assert str(error.value) == f"unknown option 'clnblayer' {where} (did you mean clnblayers?)"


def test_saved_options_of_an_older_file_load_with_the_newer_options_defaults():
    opts = parse_options(["--clust", "3", "--batch_size", "16", "--lr", "0.005"])
    old_text = "".join(line for line in options_ini(opts).splitlines(keepends=True)
                       if line.split(" = ")[0] not in GATE_RESEARCH_OPTIONS)
    assert "clu_train_mode" not in old_text and "clust = 3" in old_text
    for loaded in (options_from_ini_text(old_text, "old.ini"), checkpoint_options({"options": old_text}, "old")):
        assert vars(loaded) == vars(opts)
        assert loaded.clu_train_mode == "joint" and loaded.rand_prop_val_sched == [0.9, 0.5, 0.1]


def test_saved_options_with_a_bad_value_name_the_weights_file():
    text = options_ini(parse_options([])).replace("epochs = 10", "epochs = ten")
    with pytest.raises(ClustNetError) as error:
        checkpoint_options({"options": text}, "nets/x/clustDetectNet1_epoch3")
    assert str(error.value) == "option epochs in weights file nets/x/clustDetectNet1_epoch3: 'ten' is not a valid int"


def test_cli_reports_one_line_and_writes_nothing(output_root):
    result = run_cli("trainVal.py", "-c", "clust.config", "--exp_id", "x", "--clnblayerz", "3")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown option 'clnblayerz' on the command line (did you mean clnblayers?)"]
    assert list(output_root.iterdir()) == []


@pytest.mark.parametrize("argv", [["--lr", "inf"], ["--momentum", "nan"]])
def test_cli_refuses_inf_and_nan_in_one_line(argv, output_root):
    result = run_cli("trainVal.py", "-c", "clust.config", *argv)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"error: {argv[0]} {argv[1]}: must be a finite number\n"
    assert list(output_root.iterdir()) == []


def test_help_groups_the_options_by_section_with_a_metavar_each():
    text = build_parser("Train ClustNet.").format_help()
    headings = [f"\n{title}:\n" for title, _ in sections()]
    positions = [text.index(heading) for heading in headings]
    assert positions == sorted(positions) and text.index("\nConfiguration:\n") < positions[0]
    ends = positions[1:] + [len(text)]
    for (title, options), start, end in zip(sections(), positions, ends):
        assert all(f"  --{option.name} " in text[start:end] for option in options), title
    for usage in ("--lr LR [LR ...]", "--lr_cl [LR ...]", "--seeds [SEED ...]", "--optim {SGD,Adam,AMSGrad}",
                  "--decision_clu {DE,FS,FD,SD,GSF}", "--data_dir PATH", "--init PATH", "-c PATH, --config PATH",
                  "--epochs N", "--momentum X", "--no_cuda [{True,False}]", "--pos_classes CLASS [CLASS ...]"):
        assert usage in text, usage
    assert not re.search(r"--\w+ V\b", text)
    assert "(default: 0.01)" in text and "(default: 0 1 2 3 4)" in text
    assert "(default: the next free one) (default" not in text  # a help that names its default keeps it


def test_trainval_help_is_grouped(output_root):
    result = run_cli("trainVal.py", "--help")
    assert result.returncode == 0
    assert "usage: trainVal.py [-c PATH] [--print_config] [--OPTION VALUE ...]" in result.stdout
    assert all(f"\n{title}:\n" in result.stdout for title, _ in sections())


def test_print_config_prints_a_config_that_gives_the_same_options_and_touches_nothing(tmp_path, output_root):
    config = write(tmp_path / "c.ini", "[default]\nlr = 0.5 0.05\nbatch_size = 32\nclust = 3\n")
    argv = ["-c", str(config), "--batch_size", "8", "--seeds", "3", "4", "--no_cuda", "--data_dir",
            str(tmp_path / "50%data"), "--exp_id", "printed"]
    result = run_cli("trainVal.py", *argv, "--print_config")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("[default]\nexp_id = printed\n")
    printed = write(tmp_path / "printed.ini", result.stdout)
    assert vars(parse_options(["-c", str(printed)])) == vars(parse_options(argv))
    assert list(output_root.iterdir()) == [] and not (tmp_path / "50%data").exists()


def test_print_config_of_bad_options_is_the_error(output_root):
    result = run_cli("trainVal.py", "--clust", "0", "--print_config")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "error: --clust 0: must be at least 1\n"


def test_docs_options_page_is_generated_from_the_option_table():
    page = (REPO / "docs" / "options.md").read_text()
    assert page == options_markdown(), ("docs/options.md differs from the option table: regenerate it, "
                                        "from code/: python3 -m clustnet.options > ../docs/options.md")
    assert all(f"| `--{option.name}` |" in page for option in OPTIONS)
    assert all(f"\n## {title}\n" in page for title, _ in sections())
    assert "| `--lr` | list of float > 0 | `0.01` |" in page
    assert "| `--decision_clu` | DE / FS / FD / SD / GSF | `DE` |" in page


def test_the_regeneration_command_prints_the_page():
    result = subprocess.run([sys.executable, "-m", "clustnet.options"], cwd=CODE, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == options_markdown()
