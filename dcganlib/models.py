"""DCGAN generator and discriminator for 28 px (course net) and 16-128 px (DCGAN net), plus init and noise.

Sizes are channels, not pixels: each layer trades spatial size for feature channels. A transposed convolution
maps H_in to H_out = (H_in - 1) * stride - 2 * padding + kernel + output_padding, which the shape comments follow.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from .config import Config


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm whose learned scale and shift belong to the image's class (Dumoulin et al. 2017; Miyato and Koyama
    2018): the class modulates every stage of G. Call it with the batch and its labels."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.scale = nn.Embedding(num_classes, channels)  # one gamma per class and channel
        self.shift = nn.Embedding(num_classes, channels)  # one beta per class and channel

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        return self.norm(x) * self.scale(labels)[:, :, None, None] + self.shift(labels)[:, :, None, None]


def _up(in_ch: int, out_ch: int, kernel: int, stride: int, padding: int, batch_norm: bool,
        num_classes: int = 0) -> nn.Sequential:
    """Transposed conv -> (BatchNorm, conditional on the class when num_classes > 0) -> ReLU: one generator stage."""
    layers = [nn.ConvTranspose2d(in_ch, out_ch, kernel, stride, padding, bias=not batch_norm)]
    if batch_norm:
        layers.append(ConditionalBatchNorm2d(out_ch, num_classes) if num_classes else nn.BatchNorm2d(out_ch))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def through(net: nn.Sequential, x: Tensor, labels: Tensor | None) -> Tensor:
    """x through `net`'s stages and their layers in order, the labels handed to every conditional layer."""
    for stage in net:
        for layer in stage if isinstance(stage, nn.Sequential) else (stage,):
            x = layer(x, labels) if isinstance(layer, ConditionalBatchNorm2d) else layer(x)
    return x


def _down(in_ch: int, out_ch: int, kernel: int, stride: int, padding: int, batch_norm: bool) -> nn.Sequential:
    """Conv -> (BatchNorm) -> LeakyReLU(0.2): one discriminator stage; the leak keeps gradients for fakes."""
    layers = [nn.Conv2d(in_ch, out_ch, kernel, stride, padding, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_ch))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


def _doublings(image_size: int) -> int:
    """Number of stride-2 stages between 4x4 and image_size (a power of two)."""
    if image_size < 16 or image_size & (image_size - 1):
        raise ValueError(f"image_size {image_size} must be 28 or a power of two from 16 to 128")
    return int(math.log2(image_size // 4))


class Generator(nn.Module):
    """Maps noise (N, z_dim, 1, 1) to images (N, channels, image_size, image_size) in [-1, 1].

    With num_classes > 0 it is conditional: it also takes each image's class label, and its BatchNorm layers are
    ConditionalBatchNorm2d.
    """

    def __init__(self, z_dim: int = 100, channels: int = 1, features: int = 64, image_size: int = 64,
                 batch_norm: bool = True, num_classes: int = 0):
        super().__init__()
        self.z_dim, self.channels, self.image_size, self.num_classes = z_dim, channels, image_size, num_classes
        self.class_names = tuple(str(label) for label in range(num_classes))  # the data set's names, once known
        f, k = features, num_classes
        if image_size == 28:
            # Course net: kernels 3/4/3/4 give 1 -> 3 -> 6 -> 13 -> 28.
            self.net = nn.Sequential(
                _up(z_dim, f * 4, 3, 2, 0, batch_norm, k),  # (f*4) x 3 x 3
                _up(f * 4, f * 2, 4, 1, 0, batch_norm, k),  # (f*2) x 6 x 6
                _up(f * 2, f, 3, 2, 0, batch_norm, k),  # f x 13 x 13
                nn.ConvTranspose2d(f, channels, 4, 2, 0),  # channels x 28 x 28
                nn.Tanh(),
            )
            return
        n = _doublings(image_size)
        width = f * 2 ** (n - 1)
        layers = [_up(z_dim, width, 4, 1, 0, batch_norm, k)]  # width x 4 x 4
        for _ in range(n - 1):  # each stage: kernel 4, stride 2, padding 1 doubles H and halves the width
            layers.append(_up(width, width // 2, 4, 2, 1, batch_norm, k))
            width //= 2
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh()]  # channels x size x size
        self.net = nn.Sequential(*layers)

    def label(self, which: int | str) -> int:
        """The label of a class given by its name ("Sneaker", "7") or its number (7 or "7")."""
        if str(which) in self.class_names:
            return self.class_names.index(str(which))
        if str(which).isdigit() and int(which) < self.num_classes:
            return int(which)
        known = ", ".join(self.class_names) if self.num_classes else "none: this generator is unconditional"
        raise ValueError(f"no class {which!r}; the generator's classes are {known}")

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]
        if not self.num_classes:
            return self.net(z)
        if labels is None:
            raise ValueError(f"this generator is conditional ({self.num_classes} classes): pass the label of each "
                             "image to draw, generator(z, labels)")
        return through(self.net, z, labels)


class Discriminator(nn.Module):
    """Maps images to one real/fake logit each, shape (N,): pair it with BCEWithLogitsLoss.

    spectral_norm=True divides every convolution's weight, as an (out, in x kernel x kernel) matrix, by its largest
    singular value (Miyato et al. 2018, estimated by power iteration). That caps how much each convolution can
    stretch a change of its input (roughly: the cap is on the matrix, not on the convolution that reuses it), so
    D's output varies more smoothly. It bounds nothing else: BatchNorm layers, which divide by the batch's spread,
    can still amplify.

    With num_classes > 0 it is conditional: it also takes each image's label and returns (logits, class_logits).
    The logit is a projection discriminator's (Miyato and Koyama 2018): it adds the inner product of a learned class
    vector with the image's features from the stage before the last (summed over positions), how well the image
    fits its class. The class logits (N, num_classes) are an auxiliary classifier's on the same features (Odena et
    al. 2017), which the training step teaches the classes of real and fake images alike.
    """

    def __init__(self, channels: int = 1, features: int = 64, image_size: int = 64, batch_norm: bool = True,
                 spectral_norm: bool = False, num_classes: int = 0):
        super().__init__()
        self.channels, self.image_size, self.num_classes = channels, image_size, num_classes
        self.net = (_course_critic(channels, features, batch_norm) if image_size == 28
                    else _dcgan_critic(channels, features, image_size, batch_norm))
        if num_classes:
            self.class_vectors = nn.Embedding(num_classes, self.net[-1].in_channels)
            self.classifier = nn.Linear(self.net[-1].in_channels, num_classes)
        if spectral_norm:
            for module in self.net.modules():
                if isinstance(module, nn.Conv2d):
                    nn.utils.parametrizations.spectral_norm(module)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        if not self.num_classes:
            return self.net(x).flatten()
        if labels is None:
            raise ValueError(f"this discriminator is conditional ({self.num_classes} classes): pass the label of "
                             "each image, discriminator(x, labels)")
        features = self.net[:-1](x)
        projection = (self.class_vectors(labels) * features.sum((2, 3))).sum(1)
        return self.net[-1](features).flatten() + projection, self.classifier(features.mean((2, 3)))


def _course_critic(channels: int, f: int, batch_norm: bool) -> nn.Sequential:
    """Course net: kernel 4 stride 2 gives 28 -> 13 -> 5 -> 1."""
    return nn.Sequential(
        _down(channels, f, 4, 2, 0, batch_norm),  # f x 13 x 13
        _down(f, f * 2, 4, 2, 0, batch_norm),  # (f*2) x 5 x 5
        nn.Conv2d(f * 2, 1, 4, 2, 0),  # 1 x 1 x 1
    )


def _dcgan_critic(channels: int, f: int, image_size: int, batch_norm: bool) -> nn.Sequential:
    """The DCGAN D in dcgan.torch's layout (4 x 4 kernels, as PyTorch's DCGAN tutorial; the paper's code uses 5 x 5):
    stride-2 convolutions halve the size down to 4 x 4, then one 4 x 4 convolution."""
    n = _doublings(image_size)
    # No BatchNorm on the input layer: with it on every layer the paper's samples oscillated and training was unstable.
    layers = [_down(channels, f, 4, 2, 1, batch_norm=False)]  # f x size/2 x size/2
    width = f
    for _ in range(n - 1):
        layers.append(_down(width, width * 2, 4, 2, 1, batch_norm))
        width *= 2
    layers.append(nn.Conv2d(width, 1, 4, 1, 0))  # 1 x 1 x 1 from width x 4 x 4
    return nn.Sequential(*layers)


def init_weights(module: nn.Module) -> None:
    """DCGAN paper init: conv weights N(0, 0.02); BatchNorm weight N(1, 0.02), bias 0 (every class's, in a
    conditional BatchNorm); a projection discriminator's class vectors N(0, 0.02). Use with `.apply`."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        # Under spectral norm `weight` is computed from `original`: initialise what is stored.
        parametrized = nn.utils.parametrize.is_parametrized(module, "weight")
        nn.init.normal_(module.parametrizations.weight.original if parametrized else module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d) and module.affine:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, ConditionalBatchNorm2d):  # every class's scale and shift start as BatchNorm's do
        nn.init.normal_(module.scale.weight, 1.0, 0.02)
        nn.init.zeros_(module.shift.weight)
    elif isinstance(module, Discriminator) and module.num_classes:
        nn.init.normal_(module.class_vectors.weight, 0.0, 0.02)


# The Config fields a generator is built from (D's sizes and spectral norm do not matter to it), as exported files
# record them.
GENERATOR_FIELDS = ("image_size", "channels", "z_dim", "g_features", "batch_norm")


def generator_for(architecture: Config | Mapping) -> Generator:
    """An uninitialised generator with the GENERATOR_FIELDS of `architecture` (a Config or a mapping of them), and
    its num_classes (0, unconditional, when the mapping names none)."""
    values = architecture if isinstance(architecture, Mapping) else architecture.to_dict()
    return Generator(values["z_dim"], values["channels"], values["g_features"], values["image_size"],
                     values["batch_norm"], values.get("num_classes", 0))


def build_models(config: Config) -> tuple[Generator, Discriminator]:
    """A freshly initialised (G, D) pair for `config`: G built and initialised first, then D, so that a G written
    out layer by layer (notebook 1) draws the same weights from the same seed."""
    generator = generator_for(config).apply(init_weights)
    discriminator = Discriminator(config.channels, config.d_features, config.image_size, config.batch_norm,
                                  config.spectral_norm, config.num_classes).apply(init_weights)
    return generator, discriminator


def make_noise(n: int, z_dim: int, *, seed: int | None = None, device=None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard-normal latents of shape (n, z_dim, 1, 1): from `generator`, or fixed by `seed` (leaving the global
    RNG untouched), else from the global RNG."""
    if seed is not None:
        noise = torch.randn(n, z_dim, 1, 1, generator=torch.Generator().manual_seed(int(seed)))
        return noise if device is None else noise.to(device)
    return torch.randn(n, z_dim, 1, 1, device=device, generator=generator)


@torch.no_grad()
def recalibrate_batch_norm(generator: nn.Module, noise_batches: Iterable[Tensor | tuple[Tensor, ...]]) -> None:
    """Set G's BatchNorm running statistics to its own, averaged over `noise_batches` ("standing statistics"); a
    batch is G's input: noise, or (noise, labels) for a conditional G.

    In eval mode BatchNorm normalises with running statistics gathered during training. An averaged (EMA)
    generator never trains: its statistics are copies of the live generator's, which belong to other weights.
    Measuring them again through its own layers makes its samples what its weights draw. Leaves G in eval mode.
    """
    norms = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        generator.eval()
        return
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the batches instead of an exponential one
    generator.train()
    try:
        param = next(generator.parameters())
        for batch in noise_batches:
            generator(*(tensor.to(device=param.device) for tensor in (batch if isinstance(batch, tuple) else (batch,))))
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        generator.eval()


def adversarial_logits(scores: Tensor | tuple[Tensor, Tensor]) -> Tensor:
    """The real/fake logits of D's output: the output itself, or a conditional D's first part."""
    return scores[0] if isinstance(scores, tuple) else scores


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters of `module`."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def visible_pixels(discriminator: nn.Module) -> Tensor:
    """(H, W) bool mask of the input pixels that can change D's logit: its receptive field over the image. Any D
    with `image_size` and `channels` attributes will do (a Discriminator, or notebook 2's class written out).

    A pixel that no path of convolutions reaches gets an exactly zero gradient; the gradient is taken in eval mode
    and with respect to the input only, so D's weights, their gradients and its mode are left as they were.
    """
    parameter = next(discriminator.parameters())
    size = discriminator.image_size
    image = torch.randn(1, discriminator.channels, size, size, generator=torch.Generator().manual_seed(0))
    image = image.to(parameter.device).requires_grad_()
    was_training = discriminator.training
    discriminator.eval()
    conditional = getattr(discriminator, "num_classes", 0)
    labels = (torch.zeros(1, dtype=torch.int64, device=parameter.device),) if conditional else ()
    try:
        with torch.enable_grad():
            (gradient,) = torch.autograd.grad(adversarial_logits(discriminator(image, *labels)).sum(), image)
    finally:
        discriminator.train(was_training)
    return gradient[0].abs().sum(0).cpu() > 0


@torch.no_grad()
def stage_outputs(net: nn.Sequential, x: Tensor) -> list[Tensor]:
    """What each stage of `net` outputs as x goes through it one stage at a time (without gradients)."""
    outputs = []
    for stage in net:
        x = stage(x)
        outputs.append(x)
    return outputs


def print_shapes(net: nn.Sequential, x: Tensor) -> None:
    """Push x through `net` one stage at a time (without gradients), printing each stage's layers and output shape."""
    print(f"{'input':>42} {tuple(x.shape)}")
    for stage, out in zip(net, stage_outputs(net, x), strict=True):
        layers = " + ".join(type(m).__name__ for m in stage.modules() if not list(m.children()))
        print(f"{layers:>42} {tuple(out.shape)}")


def generate(generator: Callable[..., Tensor], z: Tensor, labels: Tensor | None = None) -> Tensor:
    """Images for latents z (and, for a conditional generator, the classes `labels`), made in eval mode without
    gradients; returns a CPU tensor in [-1, 1]."""
    inputs = (z,) if labels is None else (z, labels)
    if not isinstance(generator, torch.nn.Module):
        with torch.no_grad():
            return generator(*inputs).cpu()
    was_training = generator.training
    param = next(generator.parameters(), None)
    # Seeded noise is made on the CPU; follow the model wherever the notebook put it (e.g. a Colab GPU).
    if param is not None:
        inputs = tuple(tensor.to(param.device) for tensor in inputs)
    generator.eval()
    try:
        with torch.no_grad():
            return generator(*inputs).cpu()
    finally:
        generator.train(was_training)
