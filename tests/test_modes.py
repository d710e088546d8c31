"""The other modes on tiny data: the one-expert baseline, the autoencoder, --init_enc,
--init from a pretrained DN, --init_clu, and resuming a net exactly where it stopped."""


import pandas as pd
import pytest
import torch

from conftest import TINY
from clustnet.analyses import load_encoder
from clustnet.checkpoint import load_checkpoint
from clustnet.errors import ClustNetError
from clustnet.layout import CAE, CLUSTNET, DETECTNET, SCORE_COLUMNS, Experiment
from clustnet.modes import main
from clustnet.options import parse_options
from clustnet.model import ModelConfig
from clustnet.nets import build_model
from clustnet.speed import use_onednn
from clustnet.training import make_optimiser, make_optimisers, nll, shuffled_order, train_epoch, train_pass


def train(mnist_dir, exp_id, *args, epochs=1):
    main(["-c", "clust.config", "--exp_id", exp_id, "--epochs", str(epochs), "--batch_size", "8",
          "--data_dir", str(mnist_dir), *TINY, *map(str, args)])
    return Experiment(exp_id)


def weights(path):
    return load_checkpoint(path)["model"]


def files_under(root):
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_autoencoder_writes_its_files_and_initialises_an_encoder(mnist_dir, output_root, capsys):
    exp = train(mnist_dir, "cae", "--pretrain_cae", "True", epochs=2)
    assert exp.net_ids(CAE) == [1] and exp.epochs(1, CAE) == [0, 1, 2]
    for epoch in range(3):
        assert exp.reconstructions_path(1, epoch).read_bytes().startswith(b"\x89PNG")
    assert not exp.results_dir.exists()  # an autoencoder has no scores
    errors = [float(line.split("train ")[1].split()[0]) for line in capsys.readouterr().out.splitlines()
              if "reconstruction error per pixel" in line]
    assert len(errors) == 3 and errors[2] < errors[0]  # it learns to reconstruct
    cae_state = weights(exp.weights_path(1, 2, CAE))
    assert any(name.startswith("decoder.") for name in cae_state)

    net = train(mnist_dir, "cae", "--init_enc", exp.weights_path(1, 2, CAE))
    start = weights(net.weights_path(1, 0))
    encoder_names = [name for name in start if name.startswith("encoder.")]
    assert encoder_names and all(torch.equal(start[name], cae_state[name]) for name in encoder_names)
    # What --tsne reads: the encoder of a CAE file.
    encoder, opts = load_encoder(exp.weights_path(1, 2, CAE))
    assert opts.pretrain_cae and torch.equal(encoder.dense.weight, cae_state["encoder.dense.weight"])


def test_one_expert_baseline_then_clustnet_experts_from_it(mnist_dir, output_root):
    exp = train(mnist_dir, "dn", "--pretrain", "True")
    assert exp.net_ids(DETECTNET) == [1] and exp.epochs(1, DETECTNET) == [0, 1]
    for epoch in range(2):
        for train_set in (False, True):
            scores = pd.read_csv(exp.scores_path(1, epoch, train_set, DETECTNET))
            assert list(scores.columns) == SCORE_COLUMNS and len(scores) == (200 if train_set else 80)
    dn_file = exp.weights_path(1, 1, DETECTNET)
    dn_state = weights(dn_file)

    copied = weights(train(mnist_dir, "dn", "--init", dn_file).weights_path(1, 0))
    for name in (n for n in dn_state if n.startswith("dn.")):
        assert copied[name].shape[1] == 5 and torch.equal(copied[name], dn_state[name].expand_as(copied[name]))
    assert torch.equal(copied["encoder.dense.weight"], dn_state["encoder.dense.weight"])

    noisy = weights(train(mnist_dir, "dn", "--init", dn_file, "--noise_init", "0.1").weights_path(2, 0))["dn.weights.0"]
    pretrained = dn_state["dn.weights.0"]
    assert not torch.equal(noisy[0, 0], noisy[0, 1])  # the experts start different
    relative = (noisy - pretrained).abs().mean() / pretrained.abs().mean()
    assert 0.03 < relative < 0.3


@pytest.mark.parametrize("heads", [[], ["--cn_heads", "3"]], ids=["one_head", "three_heads"])
def test_clustering_network_from_a_clustnet_file(mnist_dir, output_root, heads):
    exp = train(mnist_dir, "clu", "--seed", "1", *heads)
    source = weights(exp.weights_path(1, 1))
    started = weights(train(mnist_dir, "clu", "--seed", "2", *heads, "--init_clu",
                            exp.weights_path(1, 1)).weights_path(2, 0))
    cn = [name for name in source if name.startswith(("cn.", "selected_head"))]
    assert cn and all(torch.equal(started[name], source[name]) for name in cn)
    assert ("selected_head" in cn) == bool(heads)
    assert not torch.equal(started["encoder.dense.weight"], source["encoder.dense.weight"])


@pytest.mark.parametrize("kind_args", [[], ["--pretrain_cae", "True"], ["--pretrain", "True"]],
                         ids=["clustnet", "cae", "detectnet"])
def test_resumed_run_gives_the_numbers_of_an_uninterrupted_one(mnist_dir, output_root, kind_args):
    kind = {"--pretrain_cae": CAE, "--pretrain": DETECTNET}.get(kind_args[0] if kind_args else None, "clustDetectNet")
    cpu = ["--no_cuda", "True"]  # exact on the CPU; CUDA kernels need not be deterministic
    whole = train(mnist_dir, "whole", *kind_args, *cpu, epochs=3)
    part = train(mnist_dir, "part", *kind_args, *cpu, epochs=1)
    # A DN file initialises a ClustNet's experts unless --pretrain True asks to continue it.
    main(["--init", str(part.weights_path(1, 1, kind)), "--epochs", "3", *kind_args])
    assert part.epochs(1, kind) == [0, 1, 2, 3] and part.net_ids(kind) == [1]
    assert "epochs = 3" in part.ini_path(1, kind).read_text()
    for epoch in (2, 3):
        resumed, reference = load_checkpoint(part.weights_path(1, epoch, kind)), \
            load_checkpoint(whole.weights_path(1, epoch, kind))
        assert resumed["model"].keys() == reference["model"].keys()
        assert all(torch.equal(resumed["model"][k], reference["model"][k]) for k in reference["model"])
        assert torch.equal(resumed["generator"], reference["generator"])
        if kind != CAE:
            for train_set in (False, True):
                assert part.scores_path(1, epoch, train_set, kind).read_bytes() == \
                    whole.scores_path(1, epoch, train_set, kind).read_bytes()


def test_resume_refusals_write_nothing(mnist_dir, output_root):
    exp = train(mnist_dir, "r", epochs=2)
    first = exp.weights_path(1, 1)
    before = files_under(output_root)
    cases = [
        (["--init", first, "--epochs", "1"], "is already at epoch 1"),
        (["--init", first, "--epochs", "3"], "already has epochs up to 2"),
        (["--init", first, "--epochs", "3", "--lr", "0.5"], "--lr 0.5: the net in"),
        (["--init", first, "--epochs", "3", "--seeds", "1", "2"], "a resume continues one net"),
        (["--init", exp.weights_path(1, 2), "--epochs", "3", "--init_enc", first], "keeps its own weights"),
    ]
    for args, message in cases:
        with pytest.raises(ClustNetError, match=message.replace("-", r"\-")):
            main(list(map(str, args)))
    assert files_under(output_root) == before


def test_weights_that_do_not_match_name_the_layer(mnist_dir, output_root):
    cae = train(mnist_dir, "m", "--pretrain_cae", "True", "--encnbfilters", "6")
    before = files_under(output_root)
    with pytest.raises(ClustNetError, match=r"layer encoder\.conv_weights\.0 is \(6, 1, 5, 5\) in the file, "
                                            r"\(4, 1, 5, 5\) here"):
        train(mnist_dir, "m", "--init_enc", cae.weights_path(1, 1, CAE))
    with pytest.raises(ClustNetError, match="holds a cae net; --init_clu needs a clustDetectNet"):
        train(mnist_dir, "m", "--init_clu", cae.weights_path(1, 1, CAE))
    assert files_under(output_root) == before


@pytest.mark.parametrize("n_nets, batch_size, onednn", [(1, 4, False), (1, 8, True), (2, 4, True)])
def test_clustnet_and_pretraining_loops_take_their_cpu_kernels_from_one_switch(n_nets, batch_size, onednn):
    """train_epoch (ClustNet) and the other modes' train_pass calls both step inside
    speed.fast_cpu_kernels: oneDNN off for a single net at batch size <= 4 on the CPU, on
    otherwise, and as it was after the loop."""
    assert use_onednn(torch.device("cpu"), n_nets, batch_size) is onednn
    opts = parse_options(["-c", "clust.config", "--batch_size", str(batch_size), *TINY])
    images, targets = torch.randn(12, 1, 28, 28), torch.randint(0, 2, (12,))
    generators = [torch.Generator().manual_seed(seed) for seed in range(n_nets)]
    seen = []
    before = torch.backends.mkldnn.enabled

    clustnet = build_model(CLUSTNET, n_nets, ModelConfig.from_options(opts, (1, 28, 28)))
    clustnet.reset_parameters(generators)
    outputs = clustnet.outputs

    def recorded_outputs(*args, **kwargs):
        seen.append(("clustnet", torch.backends.mkldnn.enabled))
        return outputs(*args, **kwargs)
    clustnet.outputs = recorded_outputs
    train_epoch(clustnet, make_optimisers(clustnet, opts), images, targets, generators, opts, 1)

    detectnet = build_model(DETECTNET, n_nets, ModelConfig.from_options(opts, (1, 28, 28)))
    detectnet.reset_parameters(generators)

    def step_loss(view, index, batch, phase):
        seen.append(("pretraining", torch.backends.mkldnn.enabled))
        log_probs = detectnet(view(0))
        return nll(log_probs, targets[index]), {}, (log_probs,)
    train_pass(detectnet, {"main": make_optimiser(detectnet.parameters(), opts)}, images,
               shuffled_order(generators, len(images), images.device), None, opts, 1, step_loss)

    assert {loop for loop, _ in seen} == {"clustnet", "pretraining"}
    assert all(enabled is onednn for _, enabled in seen)
    assert torch.backends.mkldnn.enabled is before


def test_the_loop_hands_every_mode_the_batch_in_its_two_random_views():
    """train_pass's view(k): the batch's images warped with the uniforms k*u..(k+1)*u of
    their row in `views`, for every mode alike; without views, the images themselves."""
    opts = parse_options(["-c", "clust.config", "--batch_size", "3", "--aug_rotation", "90", *TINY])
    images = torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    generators = [torch.Generator().manual_seed(seed) for seed in (1, 2)]
    detectnet = build_model(DETECTNET, 2, ModelConfig.from_options(opts, (1, 28, 28)))
    detectnet.reset_parameters(generators)
    order = shuffled_order(generators, len(images), images.device)
    views = torch.full((2, 6, 8), 0.5)
    views[..., 0] = 1.0  # view 0: a quarter turn
    seen = []

    def step_loss(view, index, batch, phase):
        seen.append((index, view(0), view(1)))
        return detectnet(view(0)).sum(dim=(1, 2)), {}, ()
    for given in (views, None):
        seen.clear()
        train_pass(detectnet, {"main": make_optimiser(detectnet.parameters(), opts)}, images, order, given, opts, 1,
                   step_loss)
        assert len(seen) == 2
        for index, first, second in seen:
            batch = images[index]
            turned = torch.rot90(batch, 1, (-2, -1)) if given is not None else batch
            assert torch.allclose(first, turned, atol=1e-4) and torch.allclose(second, batch, atol=1e-4)
