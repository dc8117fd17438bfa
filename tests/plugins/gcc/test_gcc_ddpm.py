"""The conditional DDPM: noise schedule, samplers against exact noise oracles, U-Net conditioning,
training signal, pool draws, and checkpoint round trips."""

from __future__ import annotations

import pytest
import torch

from deepclust_gcc.ddpm import ConditionalDDPM, to_uint8, to_unit_range
from deepclust_gcc.pool import Pool, pool_counts
from deepclust_gcc.schedule import alphas_cumprod, linear_betas, make_scheduler, posterior_variance, sample
from deepclust_gcc.unet import build_unet
from toolkit.files import load_safe, save_atomic


def test_linear_schedule_values() -> None:
    assert alphas_cumprod(linear_betas(1000))[-1].item() == pytest.approx(4.036e-05, rel=1e-3)
    assert alphas_cumprod(linear_betas(100))[-1].item() == pytest.approx(2.039e-05, rel=1e-3)
    assert alphas_cumprod(linear_betas(50))[-1].item() == pytest.approx(7.745e-06, rel=1e-3)
    assert alphas_cumprod(linear_betas(100, scale=False))[-1].item() == pytest.approx(0.364, abs=1e-3)
    assert posterior_variance(linear_betas(1000))[0].item() == 0.0


def test_q_sample_moments() -> None:
    """The DDPM's own noising: x_t has mean sqrt(abar_t) x0 and variance 1 - abar_t."""
    ddpm = ConditionalDDPM("tiny", 8, 1, 2, linear_betas(100))
    t = torch.full((20000,), 40)
    x0 = torch.full((20000, 1), 0.5)
    xt = ddpm.q_sample(x0, t, torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)))
    a = ddpm.abar[40]
    assert xt.mean().item() == pytest.approx((a.sqrt() * 0.5).item(), abs=0.02)
    assert xt.var().item() == pytest.approx((1 - a).item(), abs=0.02)


class PointMassUNet(torch.nn.Module):
    """The exact noise predictor for data that is the point mass c_y for label y (images all c_y)."""

    def __init__(self, abar: torch.Tensor, centres: torch.Tensor) -> None:
        super().__init__()
        self.abar, self.centres = abar.float(), centres

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor):  # noqa: ANN201
        a = self.abar[t].view(-1, 1, 1, 1)
        eps = (x - a.sqrt() * self.centres[class_labels].view(-1, 1, 1, 1)) / (1 - a).sqrt()
        return type("Out", (), {"sample": eps})()


def test_training_loss_uses_the_noising_and_the_labels() -> None:
    """With the exact noise predictor of per-label point masses, L_simple is zero only when loss() noises with
    q_sample's formula and conditions on each image's own label."""
    centres = torch.tensor([-0.5, 0.3, 0.9])
    ddpm = ConditionalDDPM("tiny", 8, 1, 3, linear_betas(100))
    ddpm.unet = PointMassUNet(ddpm.abar, centres)
    labels = torch.tensor([0, 1, 2, 1, 0, 2])
    x0 = centres[labels].view(-1, 1, 1, 1).expand(-1, 1, 8, 8).clone()
    assert ddpm.loss(x0, labels, torch.Generator().manual_seed(0)).item() < 1e-8
    wrong = labels.roll(1)
    assert ddpm.loss(x0, wrong, torch.Generator().manual_seed(0)).item() > 1e-3


def test_generate_draws_each_image_from_its_label() -> None:
    """generate() conditions every image on its own label: with the point-mass predictor as the EMA network,
    image i is c_{labels[i]}, in the order asked, across chunks."""
    centres = torch.tensor([-0.5, 0.3, 0.9])
    ddpm = ConditionalDDPM("tiny", 8, 1, 3, linear_betas(100))
    ddpm.ema.module = PointMassUNet(ddpm.abar, centres)
    labels = torch.tensor([2, 0, 1, 1, 2, 0, 0])
    for sampler, steps in (("ddpm", 100), ("ddim", 10)):
        out = ddpm.generate(labels, sampler, steps, torch.Generator().manual_seed(0), batch_size=3)
        assert torch.allclose(out, centres[labels].view(-1, 1, 1, 1).expand_as(out), atol=1e-3), sampler


@pytest.mark.parametrize(("kind", "steps", "timesteps"), [("ddpm", 1000, 1000), ("ddpm", 50, 50), ("ddim", 20, 1000),
                                                        ("dpm_solver", 20, 1000), ("ddpm", 25, 1000)])
def test_samplers_recover_point_masses_per_label(kind: str, steps: int, timesteps: int) -> None:
    """With the exact noise of point-mass data c_y, every sampler must land on c_y (label routed right)."""
    scheduler = make_scheduler(kind, linear_betas(timesteps))
    abar = scheduler.alphas_cumprod
    centres = torch.tensor([-0.5, 0.3, 0.9])

    def oracle(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a = abar[int(t)]
        return (x - a.sqrt() * centres[y].view(-1, 1, 1, 1)) / (1 - a).sqrt()

    labels = torch.tensor([0, 1, 2, 1, 0])
    out = sample(oracle, scheduler, labels, (1, 4, 4), steps, torch.Generator().manual_seed(0))
    assert out.shape == (5, 1, 4, 4)
    assert torch.allclose(out, centres[labels].view(-1, 1, 1, 1).expand_as(out), atol=1e-4)


@pytest.mark.parametrize("kind", ["ddpm", "ddim", "dpm_solver"])
def test_clip_option_clips_predicted_x0_in_every_sampler(kind: str) -> None:
    """Data that is the point mass 3 (outside [-1, 1]): with `clip` each step's predicted x0 is clipped, so the
    sample lands at 1 even without the final clamp; without it the sampler reaches 3. DPM-Solver once ignored it."""
    def run(clip: bool) -> torch.Tensor:
        scheduler = make_scheduler(kind, linear_betas(1000), clip=clip)
        abar = scheduler.alphas_cumprod

        def oracle(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            a = abar[int(t)]
            return (x - a.sqrt() * 3.0) / (1 - a).sqrt()

        return sample(oracle, scheduler, torch.zeros(4, dtype=torch.long), (1, 2, 2), 20,
                      torch.Generator().manual_seed(0), clamp=False)

    assert torch.allclose(run(False), torch.full((4, 1, 2, 2), 3.0), atol=1e-3)
    assert run(True).abs().max().item() <= 1.0 + 1e-4


def test_ancestral_sampler_matches_gaussian_data() -> None:
    """Gaussian data N(0.7, 0.2^2): with its exact noise oracle, T=1000 ancestral samples have its moments."""
    scheduler = make_scheduler("ddpm", linear_betas(1000), clip=False)
    abar = scheduler.alphas_cumprod
    m, s = 0.7, 0.2

    def oracle(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a = abar[int(t)]
        return (1 - a).sqrt() * (x - a.sqrt() * m) / (a * s * s + 1 - a)

    out = sample(oracle, scheduler, torch.zeros(20000, dtype=torch.long), (1, 1, 1), 1000,
                 torch.Generator().manual_seed(0), clamp=False)
    assert abs(out.mean().item() - m) < 0.01
    assert abs(out.std().item() - s) < 0.01


def test_unet_shape_and_label_conditioning() -> None:
    torch.manual_seed(0)
    net = build_unet("tiny", 8, 3, 4, dropout=0.0).eval()
    for p in net.parameters():  # the last conv starts at zero: perturb so the label can show
        p.data.add_(0.05 * torch.randn_like(p))
    x = torch.randn(2, 3, 8, 8)
    t = torch.tensor([10, 10])
    a = net(x, t, class_labels=torch.tensor([0, 0])).sample
    b = net(x, t, class_labels=torch.tensor([1, 1])).sample
    assert a.shape == x.shape
    assert not torch.allclose(a, b)


def test_unet_rejects_indivisible_sizes() -> None:
    with pytest.raises(ValueError, match="not divisible"):
        build_unet("budget", 30, 3, 10)


def test_an_odd_side_is_padded_for_the_unet_and_cropped_back() -> None:
    """25x25 faces (lfw_subset) through the budget U-Net (a multiple of 4): trained and sampled at 28, out at 25."""
    ddpm = ConditionalDDPM("budget", 25, 1, 2, linear_betas(100), dropout=0.0)
    assert ddpm.canvas == 28 and ddpm.shape == (1, 25, 25)
    x0 = torch.rand(4, 1, 25, 25) * 2 - 1
    assert torch.isfinite(ddpm.loss(x0, torch.tensor([0, 1, 0, 1]), torch.Generator().manual_seed(0)))
    out = ddpm.generate(torch.tensor([0, 1, 1]), "ddim", 2, torch.Generator().manual_seed(0), batch_size=2)
    assert out.shape == (3, 1, 25, 25)


def test_training_reduces_loss_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    ddpm = ConditionalDDPM("tiny", 8, 1, 2, linear_betas(100), dropout=0.0)
    opt = torch.optim.Adam(ddpm.unet.parameters(), lr=2e-3)
    x0 = to_unit_range(torch.randint(0, 256, (16, 1, 8, 8), generator=torch.Generator().manual_seed(1)).to(torch.uint8))
    y = torch.arange(16) % 2

    def eval_loss() -> float:
        with torch.no_grad():
            return float(ddpm.loss(x0, y, torch.Generator().manual_seed(123)))

    before = eval_loss()
    gen = torch.Generator().manual_seed(2)
    for _ in range(50):
        loss = ddpm.loss(x0, y, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert eval_loss() < 0.7 * before


def test_generate_is_finite_shaped_and_seeded() -> None:
    ddpm = ConditionalDDPM("tiny", 8, 1, 3, linear_betas(50))
    labels = torch.tensor([0, 1, 2, 2])
    a = ddpm.generate(labels, "ddim", 5, torch.Generator().manual_seed(0))
    b = ddpm.generate(labels, "ddim", 5, torch.Generator().manual_seed(0))
    assert a.shape == (4, 1, 8, 8) and torch.isfinite(a).all() and a.abs().max() <= 1
    assert torch.equal(a, b)
    assert to_uint8(a).dtype == torch.uint8


def test_checkpoint_round_trip_weights_only(tmp_path) -> None:
    torch.manual_seed(0)
    ddpm = ConditionalDDPM("tiny", 8, 1, 3, linear_betas(50))
    ddpm.unet.conv_out.weight.data.normal_()
    ddpm.update_ema()
    save_atomic({"ddpm": ddpm.state_dict()}, tmp_path / "g.pt")
    other = ConditionalDDPM("tiny", 8, 1, 3, linear_betas(50))
    other.load_state_dict(load_safe(tmp_path / "g.pt")["ddpm"])
    labels = torch.tensor([0, 1, 2])
    assert torch.equal(ddpm.generate(labels, "ddim", 4, torch.Generator().manual_seed(0)),
                       other.generate(labels, "ddim", 4, torch.Generator().manual_seed(0)))


def test_pool_counts_follow_the_histogram_with_a_floor() -> None:
    labels = torch.tensor([0] * 80 + [1] * 20)
    counts = pool_counts(labels, 3, 100, min_per_class=30)
    assert counts.tolist() == [80, 30, 0]


def test_pool_draws_match_requested_labels() -> None:
    labels = torch.tensor([2, 0, 2, 1, 0, 2])
    images = labels.view(-1, 1, 1, 1).expand(-1, 1, 2, 2).to(torch.uint8) * 10  # image encodes its label
    pool = Pool(images, labels)
    wanted = torch.tensor([0, 2, 2, 1, 5, 0])
    served, drawn = pool.draw(wanted, torch.Generator().manual_seed(0))
    assert served.tolist() == [0, 1, 2, 3, 5]  # label 5 is not in the pool
    assert (drawn[:, 0, 0, 0] // 10).tolist() == wanted[served].tolist()


def test_paper_size_unet_matches_ho_et_al() -> None:
    """The `standard` preset is Ho et al.'s CIFAR-10 net (35.7M parameters) plus a class embedding."""
    net = build_unet("standard", 32, 3, 10, dropout=0.1).eval()
    params = sum(p.numel() for p in net.parameters())
    assert 35.7e6 < params < 35.8e6
    with torch.no_grad():
        out = net(torch.randn(1, 3, 32, 32), torch.tensor([999]), class_labels=torch.tensor([3])).sample
    assert out.shape == (1, 3, 32, 32)


def test_cosine_schedule_ends_in_noise() -> None:
    from deepclust_gcc.schedule import cosine_betas, make_betas

    betas = cosine_betas(1000)
    abar = alphas_cumprod(betas)
    assert abar[-1].item() < 1e-4 and abar[0].item() > 0.999
    assert bool((betas[1:] >= betas[:-1]).all()) and betas.max().item() <= 0.999
    assert torch.equal(make_betas("cosine", 1000, 1e-4, 0.02, True), betas)
    assert torch.equal(make_betas("linear", 100, 1e-4, 0.02, True), linear_betas(100))


@pytest.mark.parametrize("round_ema", ["keep", "reset", "warmup"])
def test_round_ema_modes(round_ema: str) -> None:
    """keep: the EMA carries on; reset: it restarts from the online weights; warmup: its decay restarts at
    min(decay, (1 + k) / (10 + k)), so the first step after the round start moves it 0.9 of the way."""
    from deepclust_gcc.generator_training import GeneratorTrainer

    torch.manual_seed(0)
    ddpm = ConditionalDDPM("tiny", 8, 1, 2, linear_betas(100), dropout=0.0, ema_decay=0.999)
    trainer = GeneratorTrainer(ddpm, 1e-2, 0.0, 0)
    x0 = torch.rand(4, 1, 8, 8) * 2 - 1
    y = torch.tensor([0, 1, 0, 1])
    for _ in range(3):
        trainer._step(ddpm.loss(x0, y, torch.Generator().manual_seed(1)), warmup=False)
    first = lambda m: next(m.parameters()).detach().clone()  # noqa: E731
    ema_before, online = first(ddpm.ema.module), first(ddpm.unet)
    trainer.start_round(round_ema)
    if round_ema == "reset":
        assert torch.equal(first(ddpm.ema.module), online)
        return
    assert torch.equal(first(ddpm.ema.module), ema_before)
    trainer._step(ddpm.loss(x0, y, torch.Generator().manual_seed(2)), warmup=False)
    decay = 0.999 if round_ema == "keep" else 0.1  # k = 0: (1 + 0) / (10 + 0)
    expected = ema_before * decay + first(ddpm.unet) * (1 - decay)
    assert torch.allclose(first(ddpm.ema.module), expected, atol=1e-6)
