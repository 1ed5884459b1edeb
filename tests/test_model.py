"""The networks: backbone strides, any frame size, parameter counts, soft aggregation."""

from __future__ import annotations

import pytest
import torch

from core.model.backbones import build_backbone
from core.model.modules import aggregate, near_best_softmax, read_memory
from core.model.network import NetworkConfig, build_network, parameter_count


@pytest.mark.parametrize("name,channels", [("mobilenetv2", (24, 32, 96)), ("resnet18", (64, 128, 256))])
def test_backbones_give_strides_4_8_16(name: str, channels: tuple[int, int, int]) -> None:
    backbone = build_backbone(name).eval()
    with torch.no_grad():
        f4, f8, f16 = backbone.forward_features(torch.randn(1, 3, 64, 96))
    assert backbone.channels == channels
    assert [f.shape[1] for f in (f4, f8, f16)] == list(channels)
    assert [f.shape[-2:] for f in (f4, f8, f16)] == [(16, 24), (8, 12), (4, 6)]


def test_mobilenet_trunk_is_small() -> None:
    assert 0.5e6 < parameter_count(build_backbone("mobilenetv2")) < 0.6e6


@pytest.mark.parametrize("config", [NetworkConfig(), NetworkConfig(aspp=False),
                                    NetworkConfig(backbone="resnet18", aspp=False),
                                    NetworkConfig(value_encoder="light", decoder_blocks="separable")])
def test_network_segments_k_objects_at_stride_4(config: NetworkConfig) -> None:
    net = build_network(config).eval()
    image = torch.randn(1, 3, 80, 112)
    with torch.no_grad():
        feats = net.encode_key(image)
        values = net.encode_value(image, feats, torch.rand(1, 3, 80, 112))  # (1, K, Cv, h, w)
        key = feats.key.flatten(2)
        logits, features = net.segment(feats, key, key.pow(2).sum(1).unsqueeze(2), values.flatten(3))
    assert values.shape == (1, 3, config.value_dim, 5, 7)
    assert logits.shape == (1, 3, 20, 28)
    assert net.upsample(logits, (80, 112)).shape == (1, 3, 80, 112)
    assert features.shape == (1, 3, config.decoder[2], 20, 28)


def test_fast_student_has_half_the_parameters_and_no_second_trunk() -> None:
    first, fast = build_network(), build_network(NetworkConfig(value_encoder="light", decoder_blocks="separable"))
    assert parameter_count(fast) < 0.55 * parameter_count(first)
    assert not any(name.startswith("value_encoder.trunk") for name, _ in fast.named_parameters())


def test_unknown_value_encoder_or_decoder_blocks_are_refused() -> None:
    with pytest.raises(ValueError, match="value encoder"):
        build_network(NetworkConfig(value_encoder="huge"))
    with pytest.raises(ValueError, match="decoder blocks"):
        build_network(NetworkConfig(decoder_blocks="huge"))


def test_memory_read_copies_the_value_of_an_identical_key() -> None:
    key = torch.zeros(1, 4, 1, 2)
    key[0, :, 0, 0] = torch.tensor([10.0, 0, 0, 0])
    key[0, :, 0, 1] = torch.tensor([0, 10.0, 0, 0])
    memory_key = key.flatten(2)  # two memory pixels, far apart
    values = torch.tensor([[[[1.0, -1.0]]]])  # (1, K=1, Cv=1, N=2)
    out = read_memory(key, memory_key, memory_key.pow(2).sum(1).unsqueeze(2), values)
    assert torch.allclose(out.flatten(), torch.tensor([1.0, -1.0]), atol=1e-4)


def test_soft_aggregation_is_a_distribution_that_keeps_the_winner() -> None:
    logits = torch.tensor([[[[4.0]], [[-4.0]]]])  # object 1 sure, object 2 not
    probs = aggregate(logits)
    assert torch.allclose(probs.sum(1), torch.ones(1, 1, 1))
    assert probs[0, :, 0, 0].argmax() == 1


def test_near_best_read_weighs_only_the_matches_within_the_margin() -> None:
    affinity = torch.tensor([[[5.0, 0.0], [4.0, 9.0], [1.0, 8.5], [2.5, -3.0]]])  # (B=1, N=4, HW=2)
    weights = near_best_softmax(affinity, 3.0)
    assert torch.equal(weights[0, :, 0] > 0, torch.tensor([True, True, False, True]))  # 5, 4 and 2.5 ≥ 5 − 3
    assert torch.equal(weights[0, :, 1] > 0, torch.tensor([False, True, True, False]))  # 9 and 8.5 ≥ 9 − 3
    assert torch.allclose(weights[0, [0, 1, 3], 0], affinity[0, [0, 1, 3], 0].softmax(dim=0))
    assert torch.allclose(weights.sum(dim=1), torch.ones(1, 2))


def test_the_read_margin_applies_in_eval_mode_only() -> None:
    torch.manual_seed(0)
    narrow, full = (build_network(NetworkConfig(value_encoder="light", decoder_blocks="separable", read_margin=m))
                    for m in (0.5, None))
    full.load_state_dict(narrow.state_dict())
    readouts = {}
    for name, network in (("narrow", narrow), ("full", full)):
        network.decoder.register_forward_pre_hook(lambda _, args, name=name: readouts.__setitem__(name, args[1]))
    feats = narrow.encode_key(torch.randn(2, 3, 64, 64))
    memory = torch.randn(2, 64, 32), torch.rand(2, 32, 1) * 10, torch.randn(2, 1, 128, 32)
    for training in (True, False):
        for network in (narrow, full):
            network.train(training).segment(feats, *memory)
        assert torch.equal(readouts["narrow"], readouts["full"]) == training
