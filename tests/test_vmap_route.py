"""experiments/vmap_route.py: its vmap route computes what each plain net computes alone, so
that the README's timings compare equal work."""

import copy
import importlib.util

import torch
from torch.func import functional_call, stack_module_state, vmap

from conftest import REPO
from clustnet.model import ModelConfig
from clustnet.options import parse_options

spec = importlib.util.spec_from_file_location("vmap_route", REPO / "experiments" / "vmap_route.py")
vmap_route = importlib.util.module_from_spec(spec)
spec.loader.exec_module(vmap_route)


def test_vmap_over_plain_nets_gives_each_nets_own_outputs_and_gradients():
    opts = parse_options(["-c", str(REPO / "clust.config"), "--encnbfilters", "4", "--enchidd_repr_size", "16",
                          "--clhidd_repr_size", "16"])
    config = ModelConfig.from_options(opts, vmap_route.IMAGE_SHAPE)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(3, 5, *vmap_route.IMAGE_SHAPE, generator=generator)
    noise = torch.rand(3, 5, config.clust, generator=generator)
    targets = torch.randint(0, 2, (3, 5), generator=generator)
    for channels_last_pool in (False, True):
        torch.manual_seed(1)
        nets = [vmap_route.PlainClustNet(config, channels_last_pool) for _ in range(3)]
        params, _ = stack_module_state(nets)
        base = copy.deepcopy(nets[0]).to("meta")
        log_probs = vmap(lambda p, x, u: functional_call(base, p, (x, u)))(params, images, noise)
        (-log_probs.gather(-1, targets.unsqueeze(-1)).sum()).backward()
        for i, net in enumerate(nets):
            alone = net(images[i], noise[i])
            assert torch.allclose(alone, log_probs[i], atol=1e-5)
            (-alone.gather(-1, targets[i].unsqueeze(-1)).sum()).backward()
            for name, param in net.named_parameters():
                assert torch.allclose(param.grad, params[name].grad[i], atol=1e-5), (channels_last_pool, name)


def test_channels_last_pool_is_max_pooling_with_its_gradient():
    x = torch.tensor([[[[1., 5., 2., 0.], [3., 4., 7., 1.], [0., 2., 1., 1.], [6., 1., 3., 9.]]]], requires_grad=True)
    pooled, _ = vmap_route.ChannelsLastPool.apply(x)
    assert pooled.flatten().tolist() == [5., 7., 6., 9.]
    pooled.sum().backward()
    expected = torch.zeros(4, 4)
    expected[0, 1] = expected[1, 2] = expected[3, 0] = expected[3, 3] = 1
    assert torch.equal(x.grad[0, 0], expected)
