"""Models: shapes for every preset and size, gradients reach every layer, DCGAN init statistics, noise."""

import pytest
import torch
from kit import notebook_function
from torch import nn

from dcganlib.config import PRESETS, Config
from dcganlib.models import (
    Discriminator,
    Generator,
    build_models,
    generator_for,
    init_weights,
    make_noise,
    print_shapes,
    recalibrate_batch_norm,
    visible_pixels,
)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_shapes(preset):
    config = Config.from_preset(preset)
    generator, discriminator = build_models(config)
    images = generator(make_noise(3, config.z_dim))
    assert images.shape == (3, config.channels, config.image_size, config.image_size)
    assert images.min() >= -1 and images.max() <= 1
    assert discriminator(images).shape == (3,)


@pytest.mark.parametrize("size", [16, 28, 32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("batch_norm", [True, False])
def test_every_size_and_channel_count(size, channels, batch_norm):
    generator = Generator(z_dim=8, channels=channels, features=4, image_size=size, batch_norm=batch_norm)
    discriminator = Discriminator(channels=channels, features=4, image_size=size, batch_norm=batch_norm)
    images = generator(torch.randn(2, 8, 1, 1))
    assert images.shape == (2, channels, size, size)
    assert discriminator(images).shape == (2,)
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in [*generator.modules(), *discriminator.modules()])
    assert has_bn == batch_norm


def test_generator_accepts_flat_noise():
    generator = Generator(z_dim=8, features=4, image_size=28)
    assert generator(torch.randn(2, 8)).shape == (2, 1, 28, 28)


@pytest.mark.parametrize("size", [28, 32, 64])
def test_unsupported_sizes_raise(size):
    with pytest.raises(ValueError, match="power of two"):
        Generator(image_size=size + 20)


@pytest.mark.parametrize("preset", ["mnist28", "dcgan64"])
def test_gradients_reach_every_layer(preset):
    config = Config.from_preset(preset, g_features=8, d_features=8)
    generator, discriminator = build_models(config)
    discriminator(generator(make_noise(4, config.z_dim))).mean().backward()
    for name, parameter in [*generator.named_parameters(), *discriminator.named_parameters()]:
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_init_statistics():
    torch.manual_seed(0)
    generator, discriminator = build_models(Config.from_preset("dcgan64"))
    conv_weights = torch.cat([m.weight.detach().flatten() for m in [*generator.modules(), *discriminator.modules()]
                              if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    assert abs(conv_weights.mean()) < 1e-3
    assert conv_weights.std().item() == pytest.approx(0.02, rel=0.02)
    bn = [m for m in generator.modules() if isinstance(m, nn.BatchNorm2d)]
    bn_weights = torch.cat([m.weight.detach() for m in bn])
    assert bn_weights.mean().item() == pytest.approx(1.0, abs=0.005)
    assert bn_weights.std().item() == pytest.approx(0.02, rel=0.15)
    assert all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in bn)


def test_init_weights_zeroes_conv_bias():
    conv = nn.Conv2d(3, 4, 3)
    init_weights(conv)
    assert torch.equal(conv.bias, torch.zeros(4))


def test_make_noise_shape_and_generator():
    noise = make_noise(5, 7)
    assert noise.shape == (5, 7, 1, 1)
    first = make_noise(3, 4, generator=torch.Generator().manual_seed(1))
    again = make_noise(3, 4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(first, again)


def test_print_shapes_follows_each_stage(capsys):
    generator, discriminator = build_models(Config.from_preset("mnist28"))
    print_shapes(generator.net, make_noise(2, generator.z_dim))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["input", "(2,", f"{generator.z_dim},", "1,", "1)"]
    assert lines[1].split()[:5] == ["ConvTranspose2d", "+", "BatchNorm2d", "+", "ReLU"]
    assert lines[1].endswith(f"(2, {generator.net[0][0].out_channels}, 3, 3)")
    assert [line.split("(", 1)[1] for line in lines[-2:]] == ["2, 1, 28, 28)", "2, 1, 28, 28)"]
    assert lines[-1].split()[0] == "Tanh" and len(lines) == 1 + len(generator.net)
    print_shapes(discriminator.net, torch.zeros(2, 1, 28, 28))
    assert capsys.readouterr().out.splitlines()[-1].split() == ["Conv2d", "(2,", "1,", "1,", "1)"]


@pytest.mark.parametrize("image_size", [28, 32])
def test_spectral_norm_bounds_every_convolution_of_d(image_size):
    torch.manual_seed(0)
    plain = Discriminator(1, 16, image_size)
    torch.manual_seed(0)
    normed = Discriminator(1, 16, image_size, spectral_norm=True)
    normed.apply(init_weights)
    convs = [m for m in normed.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == len([m for m in plain.modules() if isinstance(m, nn.Conv2d)])
    for conv in convs:
        original = conv.parametrizations.weight.original
        assert abs(original.std().item() - 0.02) < 0.005, "init_weights missed the stored (original) weight"
    x = torch.randn(8, 1, image_size, image_size)
    for _ in range(30):  # each training-mode forward runs one power iteration per layer
        normed(x)
    for conv in convs:
        largest = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2).item()
        assert largest == pytest.approx(1.0, abs=0.02), f"a convolution's largest singular value is {largest:.3f}"
    assert normed.eval()(x).shape == (8,)
    assert not any("parametrizations" in key for key in plain.state_dict())


def test_recalibrated_batch_norm_holds_the_generators_own_statistics():
    torch.manual_seed(0)
    generator = Generator(z_dim=8, channels=1, features=4, image_size=28)
    batches = [make_noise(64, 8), make_noise(32, 8)]
    first_conv, first_norm = generator.net[0][0], generator.net[0][1]
    with torch.no_grad():  # what the first BatchNorm sees, batch by batch
        seen = [first_conv(z) for z in batches]
    recalibrate_batch_norm(generator, batches)
    # The plain average over batches of each batch's mean and (unbiased) variance, whatever the momentum was.
    torch.testing.assert_close(first_norm.running_mean, torch.stack([x.mean((0, 2, 3)) for x in seen]).mean(0))
    torch.testing.assert_close(first_norm.running_var,
                               torch.stack([x.transpose(0, 1).flatten(1).var(1) for x in seen]).mean(0))
    assert first_norm.momentum == 0.1 and not generator.training
    without_norm = Generator(z_dim=8, channels=1, features=4, image_size=28, batch_norm=False)
    recalibrate_batch_norm(without_norm, batches)  # nothing to measure: a no-op
    assert not without_norm.training


def test_the_course_critic_never_sees_the_last_six_rows_and_columns():
    # 28 -> 13 -> 5 -> 1 with kernel 4, stride 2, no padding: the last convolution reads 4 of the 5 x 5 positions.
    mask = visible_pixels(Discriminator(1, 16, 28))
    assert mask.shape == (28, 28)
    assert mask[:22, :22].all()
    assert not mask[22:].any() and not mask[:, 22:].any()


@pytest.mark.parametrize("size", [32, 64])
def test_the_dcgan_critic_sees_every_pixel(size):
    assert visible_pixels(Discriminator(3, 8, size)).all()


def test_visible_pixels_leaves_the_discriminator_and_the_random_stream_alone():
    discriminator = Discriminator(1, 16, 28).train()
    norm = next(m for m in discriminator.modules() if isinstance(m, nn.BatchNorm2d))
    statistics = norm.running_mean.clone()
    state = torch.random.get_rng_state()
    visible_pixels(discriminator)
    assert discriminator.training
    assert all(p.grad is None for p in discriminator.parameters())
    assert torch.equal(norm.running_mean, statistics)
    assert torch.equal(torch.random.get_rng_state(), state)


COURSE_GENERATOR = notebook_function("01_generator.ipynb", "course-generator", "CourseGenerator")
COURSE_DISCRIMINATOR = notebook_function("02_discriminator.ipynb", "course-discriminator", "CourseDiscriminator")


def assert_same_module(mine: nn.Module, theirs: nn.Module, x: torch.Tensor) -> None:
    """The same parameter and buffer names, the same values, and the same outputs in training and eval mode."""
    a, b = mine.state_dict(), theirs.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[name], b[name]) for name in a)
    for training in (True, False):
        mine.train(training), theirs.train(training)
        assert torch.equal(mine(x), theirs(x))


@pytest.mark.parametrize("seed", [0, 5])
def test_notebook_1s_written_out_generator_is_build_models_course_generator(seed):
    torch.manual_seed(seed)
    mine = COURSE_GENERATOR().apply(init_weights)
    torch.manual_seed(seed)
    theirs, _ = build_models(Config.from_preset("mnist28"))
    assert_same_module(mine, theirs, make_noise(8, 64, seed=seed))


@pytest.mark.parametrize("seed", [0, 5])
def test_notebook_2s_written_out_discriminator_is_build_models_course_discriminator(seed):
    course = Config.from_preset("mnist28")
    torch.manual_seed(seed)
    _, theirs = build_models(course)
    torch.manual_seed(seed)
    generator_for(course).apply(init_weights)  # as notebook 2 does: build_models draws G's weights first
    mine = COURSE_DISCRIMINATOR().apply(init_weights)
    assert_same_module(mine, theirs, torch.randn(8, 1, 28, 28))
    assert torch.equal(visible_pixels(mine), visible_pixels(theirs))
