"""The latent-slider widget: its controls, Colab's widget manager, and real use in a kernel under ipywidgets 7.7 and 8.

`make setup` installs ipywidgets 7.7.1 (Colab's version) into .venv/ipywidgets-7.7.1, beside the venv's 8.x; the
kernel test puts that folder first on the kernel's PYTHONPATH and drives the sliders as a front end does, over comms.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import ipywidgets
import pytest
import torch
from PIL import Image
from tiny_generator import Z_DIM, TinyGenerator, reference

from dcganlib import colab
from dcganlib.config import Config
from dcganlib.directions import Direction, principal_directions
from dcganlib.models import build_models, generate, make_noise
from dcganlib.pretrained import load_generator
from dcganlib.sliders import latent_sliders

SIDE_771 = Path(sys.prefix) / "ipywidgets-7.7.1"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
IPYWIDGETS_8 = int(ipywidgets.__version__.split(".")[0]) >= 8
KERNEL_START_S = 90
KERNEL_REPLY_S = 120  # the first cell imports torch and loads the generator on a shared, busy CPU


def _orthonormal(z_dim: int, k: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(z_dim, k, generator=torch.Generator().manual_seed(0)))
    return q.T.contiguous()


DIRECTIONS = [Direction(vector, label) for vector, label in zip(_orthonormal(Z_DIM, 3), ["PC1 (30%)", "PC2 (20%)",
                                                                                           "towards 7"], strict=True)]


@pytest.fixture
def explorer(gen):
    return latent_sliders(gen, directions=DIRECTIONS, seeds=(0, 1), scale=2.0, image_size_px=64)


def test_widget_renders_a_png_of_the_requested_size(explorer):
    png = bytes(explorer.image.value)
    assert png.startswith(b"\x89PNG")
    assert Image.open(io.BytesIO(png)).size == (64, 64)
    assert [s.description for s in explorer.direction_sliders] == ["PC1 (30%)", "PC2 (20%)", "towards 7"]
    assert all(s.min == -2.0 and s.max == 2.0 for s in explorer.direction_sliders)
    if IPYWIDGETS_8:
        data, metadata = explorer._repr_mimebundle_()
        assert WIDGET_VIEW in data and metadata == {}  # off Colab: no manager to name
    else:
        assert hasattr(explorer, "_ipython_display_")


def test_a_conditional_generator_gets_a_class_picker_that_keeps_the_latent():
    generator, _ = build_models(Config.from_preset("mnist28", num_classes=10))
    generator.class_names = tuple("abcdefghij")
    with torch.no_grad():
        generator.net[0][1].scale.weight[7] += 0.5  # make class 7 draw visibly otherwise
    explorer = latent_sliders(generator, image_size_px=64)
    assert [name for name, _ in explorer.class_picker.options] == list("abcdefghij")
    assert len(explorer.direction_sliders) == 4  # principal directions over samples of every class
    before = explorer.image.value
    explorer.class_picker.value = 7
    assert explorer.image.value != before
    latent = make_noise(1, generator.z_dim, seed=0)
    assert torch.equal(explorer.current_latent(), latent)
    assert torch.equal(explorer.current_images(), generate(generator, latent, torch.tensor([7])))
    assert latent_sliders(TinyGenerator(), directions=[]).class_picker is None


def test_direction_slider_changes_image_and_back_restores_it(explorer, gen):
    original = explorer.image.value
    explorer.direction_sliders[1].value = 1.5
    assert explorer.image.value != original
    expected = make_noise(1, Z_DIM, seed=0) + 1.5 * DIRECTIONS[1].vector.view(1, -1, 1, 1)
    torch.testing.assert_close(explorer.current_latent(), expected)
    explorer.direction_sliders[2].value = -0.5
    expected = expected - 0.5 * DIRECTIONS[2].vector.view(1, -1, 1, 1)
    torch.testing.assert_close(explorer.current_latent(), expected)
    explorer.direction_sliders[1].value = 0.0
    explorer.direction_sliders[2].value = 0.0
    assert explorer.image.value == original
    assert gen.training


def test_t_slider_endpoints_are_exactly_the_seeds(explorer, gen):
    for method in ("slerp", "lerp"):
        explorer.method.value = method
        explorer.t_slider.value = 0.0
        assert torch.equal(explorer.current_images(), reference(gen, make_noise(1, Z_DIM, seed=0)))
        seed_a_png = explorer.image.value
        explorer.t_slider.value = 1.0
        assert torch.equal(explorer.current_images(), reference(gen, make_noise(1, Z_DIM, seed=1)))
        alone = latent_sliders(gen, directions=DIRECTIONS, seeds=(1, 0), image_size_px=64)
        assert explorer.image.value == alone.image.value
        assert seed_a_png != alone.image.value


def test_seed_picker_changes_image(explorer):
    before = explorer.image.value
    explorer.seed_picker.value = 42
    assert explorer.image.value != before
    assert torch.equal(explorer.current_latent(), make_noise(1, Z_DIM, seed=42))


def test_method_changes_midpoint_but_not_endpoints(explorer):
    def render(method: str, t: float) -> bytes:
        explorer.method.value = method
        explorer.t_slider.value = t
        return explorer.image.value

    assert render("slerp", 0.5) != render("lerp", 0.5)
    assert render("slerp", 0.0) == render("lerp", 0.0)
    assert render("slerp", 1.0) == render("lerp", 1.0)


def test_latent_sliders_needs_a_latent_size():
    with pytest.raises(ValueError, match="z_dim"):
        latent_sliders(lambda z: z)


def test_default_sliders_are_the_generators_principal_directions():
    generator = load_generator()
    explorer = latent_sliders(generator, image_size_px=64)
    expected = principal_directions(generator)
    assert [s.description for s in explorer.direction_sliders] == [d.label for d in expected]
    assert [s.description[:3] for s in explorer.direction_sliders] == ["PC1", "PC2", "PC3", "PC4"]
    explorer.direction_sliders[0].value = 2.0
    torch.testing.assert_close(explorer.current_latent(),
                               make_noise(1, generator.z_dim, seed=0) + 2.0 * expected[0].vector.view(1, -1, 1, 1))


# Colab's widget manager -----------------------------------------------------------------------------------


def widget_manager_switches(fake_colab) -> int:
    return fake_colab.calls().count("enable_custom_widget_manager")


def test_colab_keeps_its_own_manager_for_ipywidgets_7(fake_colab):
    assert colab.enable_widget_manager("7.7.1") is False
    assert widget_manager_switches(fake_colab) == 0


def test_colab_switches_to_the_custom_manager_for_ipywidgets_8(fake_colab):
    assert colab.enable_widget_manager("8.1.5") is True
    assert widget_manager_switches(fake_colab) == 1


def test_outside_colab_the_widget_manager_is_left_alone():
    assert not colab.in_colab()
    assert colab.enable_widget_manager("8.1.5") is False


@pytest.mark.skipif(not IPYWIDGETS_8, reason="ipywidgets 7 widgets display through Colab's own manager")
def test_on_colab_the_explorer_names_the_custom_widget_manager_for_ipywidgets_8(fake_colab, gen):
    data, metadata = latent_sliders(gen, directions=DIRECTIONS)._repr_mimebundle_()
    from google.colab import output

    assert metadata == {WIDGET_VIEW: {"colab": {"custom_widget_manager": {"url": output.MANAGER_URL}}}}
    assert data[WIDGET_VIEW]["model_id"]


def test_latent_sliders_asks_for_the_manager_its_ipywidgets_needs(fake_colab, gen, monkeypatch):
    latent_sliders(gen, directions=DIRECTIONS)
    switches = int(int(ipywidgets.__version__.split(".")[0]) >= 8)
    assert widget_manager_switches(fake_colab) == switches
    monkeypatch.setattr(ipywidgets, "__version__", "7.7.1")
    latent_sliders(gen, directions=DIRECTIONS)
    assert widget_manager_switches(fake_colab) == switches


# Real use in a kernel, as a front end drives it ------------------------------------------------------------

SET_UP = """\
import json, sys
import ipywidgets
from dcganlib.pretrained import load_generator
from dcganlib.sliders import latent_sliders
explorer = latent_sliders(load_generator())
print(json.dumps({"version": ipywidgets.__version__, "file": ipywidgets.__file__, "prefix": sys.prefix,
                  "box": explorer.widget.model_id,
                  "PC1": explorer.direction_sliders[0].model_id, "t": explorer.t_slider.model_id}))
"""


class KernelSession:
    """A kernel driven over its channels as a notebook front end would: cells, and slider moves as comm messages."""

    def __init__(self, client) -> None:
        self.client = client
        self.images: list[bytes] = []  # every PNG the kernel sent for an Image widget, in order
        self.opened: dict[str, str] = {}  # comm id -> widget model name

    def _messages_until_idle(self, parent_id: str) -> list[dict]:
        messages = []
        while True:
            message = self.client.get_iopub_msg(timeout=KERNEL_REPLY_S)
            messages.append(message)
            content = message["content"]
            if message["msg_type"] == "comm_open" and content.get("target_name") == "jupyter.widget":
                self.opened[content["comm_id"]] = content["data"]["state"].get("_model_name")
            # 7.x opens the Image with an empty value and sends the PNG in an update; 8.x opens it with the PNG.
            is_image = self.opened.get(content.get("comm_id")) == "ImageModel"
            if is_image and ["value"] in content["data"].get("buffer_paths", []) and message["buffers"][0]:
                self.images.append(bytes(message["buffers"][0]))
            if (message["msg_type"] == "status" and content["execution_state"] == "idle"
                    and message["parent_header"].get("msg_id") == parent_id):
                return messages

    def run(self, code: str) -> list[dict]:
        messages = self._messages_until_idle(self.client.execute(code))
        errors = [f"{m['content']['ename']}: {m['content']['evalue']}" for m in messages if m["msg_type"] == "error"]
        assert not errors, f"the cell {code!r} failed in the kernel: {errors}"
        return messages

    def move(self, comm_id: str, value: float) -> None:
        """What a front end sends when the user lets go of a slider: an 'update' of the model's value."""
        data = {"method": "update", "state": {"value": value}, "buffer_paths": []}
        message = self.client.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        self.client.shell_channel.send(message)
        self._messages_until_idle(message["header"]["msg_id"])


@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch) -> dict[str, str]:
    """Private Jupyter and IPython folders, so that no user kernel spec or profile takes part."""
    for name, folder in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                         ("JUPYTER_RUNTIME_DIR", "runtime"), ("IPYTHONDIR", "ipython")):
        monkeypatch.setenv(name, str(tmp_path / folder))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    return dict(os.environ)


def _kernel(env: dict[str, str]):
    from jupyter_client.manager import start_new_kernel

    return start_new_kernel(kernel_name="python3", env=env, startup_timeout=KERNEL_START_S)


def _in_process_reference() -> dict[str, bytes]:
    """The PNGs the same moves give in this process (ipywidgets 8): the kernel must send exactly these."""
    explorer = latent_sliders(load_generator())
    images = {"seed A": explorer.image.value}
    explorer.direction_sliders[0].value = explorer.direction_sliders[0].max
    images["PC1 at max"] = explorer.image.value
    explorer.direction_sliders[0].value = 0.0
    explorer.t_slider.value = 1.0
    images["seed B"] = explorer.image.value
    return images


@pytest.mark.slow
@pytest.mark.parametrize("ipywidgets_version", ["7.7.1", "8.x"])
def test_sliders_in_a_kernel(ipywidgets_version, kernel_env):
    env = dict(kernel_env)
    if ipywidgets_version == "7.7.1":
        if not (SIDE_771 / "ipywidgets").is_dir():
            pytest.skip(f"{SIDE_771} is missing: `make setup` installs ipywidgets 7.7.1 there (make test runs it)")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SIDE_771), env.get("PYTHONPATH")]))
    expected = _in_process_reference()
    manager, client = _kernel(env)
    try:
        session = KernelSession(client)
        stdout = "".join(m["content"]["text"] for m in session.run(SET_UP) if m["msg_type"] == "stream")
        ids = json.loads(stdout.strip().splitlines()[-1])
        assert ids["prefix"] == sys.prefix, f"the kernel runs in {ids['prefix']}, not this venv"
        if ipywidgets_version == "7.7.1":
            assert ids["version"] == "7.7.1" and ids["file"].startswith(str(SIDE_771)), ids
        else:
            assert ids["version"] == ipywidgets.__version__ and int(ids["version"].split(".")[0]) >= 8, ids
        assert session.opened.get(ids["box"]) == "VBoxModel", "the explorer's box was never opened as a comm"
        assert session.images == [expected["seed A"]], "the kernel did not send seed A's image, once, on creation"

        shown = [m["content"]["data"] for m in session.run("explorer")
                 if m["msg_type"] in ("display_data", "execute_result")]
        assert len(shown) == 1 and WIDGET_VIEW in shown[0], f"displaying the explorer gave {shown}, not a widget view"
        assert shown[0][WIDGET_VIEW]["model_id"] == ids["box"]

        for comm_id, value, name in ((ids["PC1"], 3.0, "PC1 at max"), (ids["PC1"], 0.0, "seed A"),
                                     (ids["t"], 1.0, "seed B")):
            before = len(session.images)
            session.move(comm_id, value)
            sent = len(session.images) - before
            assert sent == 1, f"moving to {name} sent {sent} PNGs"
            assert session.images[-1].startswith(b"\x89PNG")
            assert session.images[-1] == expected[name], f"after the move to {name} the kernel sent another image"
        first, moved, back, at_b = session.images[-4:]
        assert moved != first and at_b != first and back == first
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_truncation_pulls_the_seed_latent_towards_the_mean_before_the_directions(explorer):
    before = explorer.image.value
    explorer.truncation.value = 0.5
    explorer.direction_sliders[0].value = 1.0
    assert explorer.image.value != before
    expected = 0.5 * make_noise(1, Z_DIM, seed=0) + DIRECTIONS[0].vector.view(1, -1, 1, 1)
    torch.testing.assert_close(explorer.current_latent(), expected)
    explorer.direction_sliders[0].value = 0.0
    explorer.truncation.value = 1.0
    assert explorer.image.value == before
