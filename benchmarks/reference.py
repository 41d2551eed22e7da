"""The canonical PyTorch DCGAN loop (as in pytorch/examples `dcgan/main.py`), the baseline for the benchmarks.

Everything the canonical script does is kept: a torchvision DataLoader with per-image PIL transforms, eager fp32,
NCHW, a Sigmoid on D with BCELoss, `zero_grad()`, D's real and fake halves backpropagated separately, and
`.item()` reads every step. Only the networks are dcganlib's, so both loops train the same model.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from dcganlib.config import Config
from dcganlib.models import build_models


class PilImages(Dataset):
    """uint8 images (N, C, H, W) served as PIL images through transforms, as torchvision.datasets.MNIST does."""

    def __init__(self, images: torch.Tensor, transform):
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        array = self.images[index].numpy()
        image = Image.fromarray(array[0], mode="L") if array.shape[0] == 1 else Image.fromarray(
            np.transpose(array, (1, 2, 0)), mode="RGB")
        return self.transform(image), 0


class ReferenceLoop:
    """One canonical D+G update per batch; `train_batches(n)` cycles through epochs as needed."""

    def __init__(self, config: Config, images: torch.Tensor, *, device="cpu", seed: int = 0, num_workers: int = 0):
        torch.manual_seed(seed)
        self.config, self.device = config, torch.device(device)
        generator, discriminator = build_models(config)
        self.net_g = generator.to(self.device)
        self.net_d = nn.Sequential(discriminator, nn.Sigmoid()).to(self.device)
        self.criterion = nn.BCELoss()
        betas = (config.beta1, config.beta2)
        self.optimizer_g = torch.optim.Adam(self.net_g.parameters(), lr=config.lr, betas=betas)
        self.optimizer_d = torch.optim.Adam(self.net_d.parameters(), lr=config.lr, betas=betas)
        transform = transforms.Compose([
            transforms.Resize(config.image_size), transforms.CenterCrop(config.image_size), transforms.ToTensor(),
            transforms.Normalize((0.5,) * config.channels, (0.5,) * config.channels)])
        self.loader = DataLoader(PilImages(images, transform), batch_size=config.batch_size, shuffle=True,
                                 drop_last=True, num_workers=num_workers)
        self.stats: list[tuple[float, float, float, float]] = []

    def step(self, real: torch.Tensor) -> None:
        """The canonical update, line for line."""
        real = real.to(self.device)
        batch_size = real.size(0)
        label = torch.full((batch_size,), 1.0, device=self.device)
        # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
        self.net_d.zero_grad()
        output = self.net_d(real).view(-1)
        err_d_real = self.criterion(output, label)
        err_d_real.backward()
        d_x = output.mean().item()
        noise = torch.randn(batch_size, self.config.z_dim, 1, 1, device=self.device)
        fake = self.net_g(noise)
        label.fill_(0.0)
        output = self.net_d(fake.detach()).view(-1)
        err_d_fake = self.criterion(output, label)
        err_d_fake.backward()
        d_g_z1 = output.mean().item()
        self.optimizer_d.step()
        # (2) Update G network: maximize log(D(G(z)))
        self.net_g.zero_grad()
        label.fill_(1.0)
        output = self.net_d(fake).view(-1)
        err_g = self.criterion(output, label)
        err_g.backward()
        self.optimizer_g.step()
        self.stats.append(((err_d_real + err_d_fake).item(), err_g.item(), d_x, d_g_z1))

    def train_batches(self, count: int) -> None:
        """Run `count` updates, starting new epochs as the loader runs out."""
        done = 0
        while done < count:
            for real, _ in self.loader:
                self.step(real)
                done += 1
                if done == count:
                    return

    def train_epoch(self) -> None:
        """One pass over the data."""
        self.train_batches(len(self.loader))

    @torch.no_grad()
    def sample(self, noise: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] on the CPU, G in eval mode."""
        self.net_g.eval()
        images = self.net_g(noise.to(self.device)).cpu()
        self.net_g.train()
        return images
