import numpy as np
import pytest
import torch

from ipet_train.models import (DISCRIMINATORS, Generator, RoundedGenerator, build_discriminator,
                               load_discriminator, save_discriminator, discriminator_config)
from ipet_train.generator_training import generator_loss


@pytest.mark.parametrize("model", sorted(DISCRIMINATORS))
@pytest.mark.parametrize("slots", [40, 20])
def test_discriminator_shapes(model, slots):
    torch.manual_seed(0)
    d = build_discriminator(model, n_classes=7, slots=slots)
    x = torch.rand(5, slots, 4) * torch.tensor([10.0, 1e5, 10.0, 1e5])  # raw bytes reach large values
    s = torch.tensor([0.0, 0.5, 30.0, 3600.0, 1e6])
    out = d(x, s)
    assert out.shape == (5, 7)
    assert torch.isfinite(out).all()
    # gradients reach the raw input (perturbations are added before the log1p normalisation)
    x.requires_grad_(True)
    d(x, s).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_lstm_architecture_matches_reference():
    d = build_discriminator("lstm", 7, 40)
    assert d.rnn1.hidden_size == 8 and d.rnn1.bidirectional
    assert d.rnn2.hidden_size == 8 and d.rnn2.bidirectional and d.rnn2.input_size == 16
    assert d.head.dense.in_features == 16 + 1 and d.head.dense.out_features == 128
    assert d.head.dropout.p == pytest.approx(0.2)
    assert d.head.out.out_features == 7


def test_unknown_model():
    with pytest.raises(ValueError, match="unknown discriminator"):
        build_discriminator("transformer", 3, 40)


def test_discriminator_save_load(tmp_path):
    torch.manual_seed(0)
    d = build_discriminator("gru", 4, 40).eval()
    save_discriminator(tmp_path / "d.pt", d, discriminator_config("gru", 4, 40))
    d2, saved = load_discriminator(tmp_path / "d.pt")
    x, s = torch.rand(3, 40, 4) * 50, torch.rand(3)
    assert saved["config"] == {"model": "gru", "n_classes": 4, "slots": 40}
    assert torch.equal(d(x, s), d2(x, s))


def test_generator_within_caps():
    torch.manual_seed(0)
    g = Generator(latent_dim=20, slots=40, caps=(4, 100, 4, 100))
    with torch.no_grad():
        g.dense.weight.mul_(50)  # saturate the sigmoid both ways
        z = torch.randn(1000, 20)
        p = g(z)
        r = RoundedGenerator(g)(z)
    caps = torch.tensor([4.0, 100.0, 4.0, 100.0])
    assert p.shape == (1000, 40, 4)
    assert (p >= 0).all() and (p <= caps).all()
    assert (r >= 0).all() and (r <= caps).all()
    assert torch.equal(r, torch.round(r))
    assert (r == caps).any() and (r == 0).any()


def test_neg_ce_loss_decreases_as_true_label_gets_less_right():
    # the discriminator's confidence in the true class (0) falls from left to right
    confident = torch.tensor([[5.0, 0.0, 0.0]])
    unsure = torch.tensor([[1.0, 0.0, 0.0]])
    wrong = torch.tensor([[-3.0, 4.0, 0.0]])
    l1, l2, l3 = (float(generator_loss(l, 0, "neg_ce")) for l in (confident, unsure, wrong))
    assert l1 > l2 > l3
    # it is minus the cross-entropy against the true label
    assert l3 == pytest.approx(-float(torch.nn.functional.cross_entropy(wrong, torch.tensor([0]))))


def test_uniform_loss_is_minimal_at_uniform_output():
    u = float(generator_loss(torch.zeros(1, 4), 2, "uniform"))
    assert u == pytest.approx(np.log(4))
    for logits in ([3.0, 0, 0, 0], [0, 0, 3.0, 0], [-2.0, 1.0, 0.5, 0]):
        assert float(generator_loss(torch.tensor([logits]), 2, "uniform")) > u


def test_generator_training_lowers_true_class_confidence():
    """A few Nadam steps against a frozen discriminator push it away from the true label."""
    from ipet_train.settings import Settings
    from ipet_train.discriminator import Data
    from ipet_train.generator_training import train_generator

    torch.manual_seed(0)
    n = 256
    # class 0 = silent windows, class 1 = busy windows; a discriminator that keys on packets
    x = torch.zeros(n, 40, 4)
    y = torch.zeros(n, dtype=torch.long)
    d = build_discriminator("mlp", 2, 40)
    with torch.no_grad():  # hand-set: logit_1 - logit_0 grows with log1p(packets)
        for p in d.parameters():
            p.zero_()
        d.slot1.weight[0, 0] = 1.0
        d.slot2.weight[0, 0] = 1.0
        d.head.dense.weight[0, : 32 * 40 : 32] = 0.02
        d.head.out.weight[1, 0] = 5.0
        d.head.out.bias[0] = 2.0
    d.eval()
    data = Data(x, torch.zeros(n), y, 2)
    st = Settings(generator_epochs=10, batch_size=64, generator_lr=0.05, progress=False)
    g = Generator(20, 40, (4, 100, 4, 100))
    ce = lambda: float(torch.nn.functional.cross_entropy(d(x + g(torch.randn(n, 20)), data.s), y))  # noqa: E731
    with torch.no_grad():
        before = ce()
    info = train_generator(g, [d], data, torch.arange(n), st, torch.Generator().manual_seed(0),
                           torch.device("cpu"))
    with torch.no_grad():
        after = ce()
    assert info["steps"] == 40
    assert after > before + 0.1
