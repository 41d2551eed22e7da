"""A slider widget that moves one generated image through latent space; the only module that loads ipywidgets."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import ipywidgets as widgets
import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms.functional import to_pil_image

from .colab import enable_widget_manager, widget_metadata
from .directions import Direction, principal_directions
from .latent import _method, truncate
from .models import generate, make_noise


def _png_bytes(image: Tensor, size_px: int) -> bytes:
    """PNG of one image in [-1, 1], its longer side upscaled to size_px with nearest neighbour."""
    pil = to_pil_image((image.clamp(-1, 1) + 1) / 2)
    scale = size_px / max(pil.size)
    pil = pil.resize((round(pil.width * scale), round(pil.height * scale)), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return buffer.getvalue()


class LatentExplorer:
    """Sliders that move one generated image through latent space; end a notebook cell with it to show it."""

    def __init__(
        self,
        generator: Callable[[Tensor], Tensor],
        z_dim: int,
        *,
        directions: Sequence[Direction],
        seeds: tuple[int, int],
        scale: float,
        image_size_px: int,
    ) -> None:
        self.generator = generator
        self.z_dim = z_dim
        self.image_size_px = image_size_px
        self.directions = list(directions)
        max_seed = 2**31 - 1
        self.seed_picker = widgets.BoundedIntText(value=seeds[0], min=0, max=max_seed, description="seed A")
        self.second_seed = widgets.BoundedIntText(value=seeds[1], min=0, max=max_seed, description="seed B")
        self.t_slider = widgets.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.01, description="t (A→B)")
        self.method = widgets.ToggleButtons(options=["slerp", "lerp"], value="slerp", description="method")
        self.truncation = widgets.FloatSlider(value=1.0, min=0.0, max=1.0, step=0.01, description="truncation ψ")
        self.direction_sliders = [_direction_slider(direction, scale) for direction in self.directions]
        self.class_picker = _class_picker(generator)
        self.image = widgets.Image(format="png")
        self.image.add_class("dcgan-latent-image")
        pickers = [self.seed_picker, self.second_seed, *([self.class_picker] if self.class_picker else [])]
        for control in [*pickers, self.t_slider, self.method, self.truncation, *self.direction_sliders]:
            control.observe(self._render, names="value")
        self.widget = widgets.VBox(
            [
                widgets.HBox(pickers),
                self.t_slider,
                self.method,
                self.truncation,
                widgets.HBox([self.image, widgets.VBox(self.direction_sliders)]),
            ]
        )
        self._render()

    def current_latent(self) -> Tensor:
        """The latent (1, z_dim, 1, 1) the controls describe: A→B interpolation, truncated by ψ, plus the direction
        offsets."""
        z_a = make_noise(1, self.z_dim, seed=self.seed_picker.value)
        z_b = make_noise(1, self.z_dim, seed=self.second_seed.value)
        base = truncate(_method(self.method.value)(z_a, z_b, self.t_slider.value), self.truncation.value)
        offset = torch.zeros(self.z_dim, dtype=base.dtype)
        for slider, direction in zip(self.direction_sliders, self.directions, strict=True):
            offset += slider.value * direction.vector.to(base.dtype)
        return base + offset.reshape(1, -1, 1, 1)

    def current_images(self) -> Tensor:
        """The generated image (1, C, H, W) for the current latent (and class, for a conditional generator)."""
        labels = None if self.class_picker is None else torch.tensor([self.class_picker.value])
        return generate(self.generator, self.current_latent(), labels)

    def _render(self, change: dict | None = None) -> None:
        # Synchronous: a small generator's forward pass takes milliseconds, so no debouncing is needed.
        self.image.value = _png_bytes(self.current_images()[0], self.image_size_px)

    # ipywidgets 8 widgets display through _repr_mimebundle_, 7.x ones (Colab's) through _ipython_display_:
    # hand IPython whichever the installed version has, so the explorer shows as its widget under both. Under 8 on
    # Colab, the metadata names the custom widget manager's script, without which Colab may not draw it.
    if hasattr(widgets.Widget, "_repr_mimebundle_"):

        def _repr_mimebundle_(self, **kwargs):
            return self.widget._repr_mimebundle_(**kwargs), widget_metadata()

    else:

        def _ipython_display_(self, **kwargs):
            return self.widget._ipython_display_(**kwargs)


def _direction_slider(direction: Direction, scale: float) -> widgets.FloatSlider:
    """A slider for steps of -scale to scale along `direction`, named by its label."""
    return widgets.FloatSlider(value=0.0, min=-scale, max=scale, step=scale / 50, description=direction.label,
                               style={"description_width": "initial"})


def _class_picker(generator) -> widgets.Dropdown | None:
    """A conditional generator also draws a chosen class: a picker of its classes, by name (else None)."""
    names = getattr(generator, "class_names", ()) if getattr(generator, "num_classes", 0) else ()
    if not names:
        return None
    return widgets.Dropdown(options=[(name, label) for label, name in enumerate(names)], description="class")


def latent_sliders(
    generator: Callable[[Tensor], Tensor],
    z_dim: int | None = None,
    *,
    directions: Sequence[Direction] | None = None,
    seeds: tuple[int, int] = (0, 1),
    scale: float = 3.0,
    image_size_px: int = 256,
) -> LatentExplorer:
    """Interactive explorer of a generator's latent space; z_dim defaults to generator.z_dim.

    One slider per direction, named by its label; the default is the generator's first four principal directions.
    The truncation slider ψ pulls the A→B latent towards the mean (latent.truncate) before the directions apply.
    A conditional generator (one with num_classes and class_names) also gets a picker of the class to draw.
    """
    z_dim = z_dim if z_dim is not None else getattr(generator, "z_dim", None)
    if z_dim is None:
        raise ValueError("cannot tell the latent size: pass z_dim=... or a generator with a .z_dim attribute")
    if directions is None:
        directions = principal_directions(generator)
    enable_widget_manager(widgets.__version__)
    return LatentExplorer(
        generator, z_dim, directions=directions, seeds=seeds, scale=scale, image_size_px=image_size_px
    )
