"""--seeds: every net written whole and as if run alone; the stacked step is the one-net step.

Nets trained side by side run in one grouped convolution, whose sums may be ordered
differently from a single net's: results agree to float32 rounding, hence the tolerances
(1e-5 absolute on weights and scores after a tiny run), not bit equality."""

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY, run_cli
from clustnet.layout import Experiment
from clustnet.model import ClustNet, ModelConfig, net_optimiser_state, net_state
from clustnet.options import parse_options
from clustnet.losses import clustnet_loss

TOLERANCE = 1e-5


def train_tiny(mnist_dir, exp_id, *seed_args):
    result = run_cli("trainVal.py", "-c", "clust.config", "--exp_id", exp_id, "--epochs", "1",
                     "--data_dir", mnist_dir, "--batch_size", "8", *TINY, *seed_args)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_seeds_write_complete_nets_independent_of_their_neighbours(mnist_dir, output_root):
    train_tiny(mnist_dir, "pair", "--seeds", "1", "2")
    train_tiny(mnist_dir, "alone", "--seed", "2")
    pair, alone = Experiment("pair", root=output_root), Experiment("alone", root=output_root)
    assert pair.net_ids() == [1, 2]
    for ind_id, seed in ((1, 1), (2, 2)):
        ini = pair.ini_path(ind_id).read_text().splitlines()
        assert f"seed = {seed}" in ini and "seeds = " in ini and f"ind_id = {ind_id}" in ini
        for epoch in (0, 1):
            assert pair.weights_path(ind_id, epoch).is_file()
            assert pair.confusion_path(ind_id, epoch, True).is_file()
            assert pair.confusion_path(ind_id, epoch, False).is_file()
            assert len(pd.read_csv(pair.scores_path(ind_id, epoch))) == 80
            assert len(pd.read_csv(pair.scores_path(ind_id, epoch, "train"))) == 200
    # Net 2 of the pair is the net that seed 2 gives alone.
    for epoch in (0, 1):
        for train in (False, True):
            beside, single = (pd.read_csv(e.scores_path(i, epoch, train)) for e, i in ((pair, 2), (alone, 1)))
            assert list(beside.columns) == list(single.columns)
            assert np.allclose(beside.values, single.values, rtol=0, atol=TOLERANCE)
        beside, single = (torch.load(e.weights_path(i, epoch), weights_only=False)["model"]
                          for e, i in ((pair, 2), (alone, 1)))
        for name in single:
            assert torch.allclose(beside[name], single[name], rtol=0, atol=TOLERANCE), name


def test_stacked_step_computes_the_one_net_loss_and_gradients():
    opts = parse_options(["--encnbfilters", "4", "--enchidd_repr_size", "16", "--clhidd_repr_size", "16",
                          "--denblayers", "2"])
    pair = ClustNet(2, ModelConfig.from_options(opts, (1, 28, 28)))
    pair.reset_parameters([torch.Generator().manual_seed(s) for s in (1, 2)])
    single = ClustNet(1, ModelConfig.from_options(opts, (1, 28, 28)))
    single.load_state_dict(net_state(pair, 0))
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(2, 6, 1, 28, 28, generator=generator)
    noise = torch.rand(2, 6, opts.clust, generator=generator)
    targets = torch.randint(0, 2, (2, 6), generator=generator)
    losses = {}
    for name, model, nets in (("pair", pair.train(), slice(0, 2)), ("single", single.train(), slice(0, 1))):
        losses[name] = clustnet_loss(model.outputs(images[nets], noise[nets]), None, targets[nets], opts)
        losses[name].sum().backward()
    assert torch.allclose(losses["pair"][0], losses["single"][0], rtol=0, atol=1e-6)
    for (name, stacked), alone in zip(pair.named_parameters(), single.parameters()):
        assert torch.allclose(stacked.grad[:1], alone.grad, rtol=1e-5, atol=1e-6), name
    # One Adam step: net 0's cut of the pair's optimiser state is the single net's state.
    optimisers = {name: torch.optim.Adam(model.parameters(), lr=0.01)
                  for name, model in (("pair", pair), ("single", single))}
    for optimiser in optimisers.values():
        optimiser.step()
    cut, alone = net_optimiser_state(optimisers["pair"], 0), optimisers["single"].state_dict()
    assert cut["param_groups"] == alone["param_groups"]
    for key, entry in alone["state"].items():
        assert set(cut["state"][key]) == {"step", "exp_avg", "exp_avg_sq"}
        assert torch.equal(cut["state"][key]["step"], entry["step"])
        for field in ("exp_avg", "exp_avg_sq"):
            assert cut["state"][key][field].shape == entry[field].shape
            assert torch.allclose(cut["state"][key][field], entry[field], rtol=1e-5, atol=1e-9), (key, field)
    other = net_optimiser_state(optimisers["pair"], 1)
    assert not torch.allclose(other["state"][0]["exp_avg"], cut["state"][0]["exp_avg"])
