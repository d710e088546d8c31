"""Options: config file, command-line overrides, types, errors, the .ini round trip."""

import pytest

from conftest import REPO, run_cli
from clustnet.errors import ClustNetError
from clustnet.checkpoint import checkpoint_options
from clustnet.options import OPTIONS, options_from_ini_text, options_ini, parse_options


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
])
def test_bad_command_lines(argv, message):
    with pytest.raises(ClustNetError, match=None) as error:
        parse_options(argv)
    assert message in str(error.value)


@pytest.mark.parametrize("text, message", [
    ("[default]\nclnblayer = 3\n", "unknown option 'clnblayer' in"),
    ("[default]\nepochs = 2.5\n", "'2.5' is not a valid int"),
    ("", "has no [default] section"),
    ("lr = 0.1\n", "is not a valid INI file"),
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


def test_every_option_is_documented_in_the_readme():
    readme = (REPO / "README.md").read_text()
    assert [o.name for o in OPTIONS if f"| `--{o.name}` |" not in readme] == []
