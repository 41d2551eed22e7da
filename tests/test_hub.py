"""Generators on the Hugging Face Hub, offline against tests/hub_double.py: a push writes the generator, its samples and
a model card, `load_generator("hf://...")` draws what the run draws, and every failure is one line."""

import sys

import huggingface_hub
import pytest
import torch
from hub_double import FakeHub
from kit import make_trainer, tiny_config

from dcganlib.cli import main
from dcganlib.hub import HubError, HubNameError, parse_hub_name
from dcganlib.models import generate, make_noise
from dcganlib.pretrained import SHIPPED_CONDITIONAL_GENERATOR, load_generator, push_generator


@pytest.fixture
def hub(tmp_path, monkeypatch) -> FakeHub:
    return FakeHub(tmp_path / "hub").install(monkeypatch)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "digits"
    make_trainer(run, tiny_config(epochs=2, eval_every=1, eval_samples=200)).fit()
    return run


def same_images(first, second, labels=None) -> bool:
    z = make_noise(6, first.z_dim, seed=5)
    return torch.equal(generate(first, z, labels), generate(second, z, labels))


def test_a_pushed_run_loads_back_by_its_hub_name_and_draws_the_same(hub, trained_run):
    url = push_generator(trained_run, "me/digits")
    assert url == "https://huggingface.co/me/digits" and hub.private == {"me/digits": False}
    files = hub.files("me/digits")
    assert sorted(files) == ["README.md", "generator.pt", "samples.png"]
    assert files["samples.png"].startswith(b"\x89PNG")
    card = files["README.md"].decode()
    assert 'load_generator("hf://me/digits")' in card and "library_name: dcganlib" in card
    assert "| data set | mnist-5k |" in card and "| epochs | 2 |" in card and "best FID" in card
    assert same_images(load_generator("hf://me/digits"), load_generator(trained_run))


def test_a_conditional_generator_keeps_its_classes_through_the_hub(hub):
    push_generator(SHIPPED_CONDITIONAL_GENERATOR, "me/conditional-digits", private=True)
    assert hub.private == {"me/conditional-digits": True}
    card = hub.files("me/conditional-digits")["README.md"].decode()
    assert "It is conditional: ask for one of 0, 1, 2" in card and "torch.arange(16) % G.num_classes" in card
    loaded, shipped = load_generator("hf://me/conditional-digits"), load_generator(SHIPPED_CONDITIONAL_GENERATOR)
    assert loaded.class_names == shipped.class_names
    assert same_images(loaded, shipped, labels=torch.tensor([0, 3, 5, 7, 8, 9]))


def test_a_revision_after_the_at_sign_reaches_the_download(hub, trained_run):
    push_generator(trained_run, "me/digits")
    load_generator("hf://me/digits")
    assert dict(hub.calls)["hf_hub_download"]["revision"] is None
    with pytest.raises(HubError, match=r"no generator at hf://me/digits@v2: 404: invalid revision v2"):
        load_generator("hf://me/digits@v2")


@pytest.mark.parametrize("name", ["hf://digits", "hf://me/", "hf://me/digits@", "hf://me/dig its", "hf:///x/y"])
def test_a_malformed_hub_name_is_one_clear_error(name):
    with pytest.raises(HubNameError, match="write hf://user/name"):
        parse_hub_name(name)


def test_a_refused_upload_or_a_bad_repo_name_is_one_clear_error(hub, trained_run):
    hub.writable = False
    with pytest.raises(HubError, match=r"refused the upload to me/digits: 403 Forbidden.*huggingface-cli login"):
        push_generator(trained_run, "me/digits")
    with pytest.raises(HubNameError, match="'digits' is not a Hub repo: write user/name"):
        push_generator(trained_run, "digits")


def test_a_missing_repo_says_what_to_check(hub):
    with pytest.raises(HubError, match=r"no generator at hf://nobody/nothing: 404 .*huggingface-cli login"):
        load_generator("hf://nobody/nothing")


def test_without_huggingface_hub_the_error_says_what_to_install(trained_run, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ImportError, match="pip install huggingface_hub"):
        load_generator("hf://me/digits")
    with pytest.raises(ImportError, match="pip install huggingface_hub"):
        push_generator(trained_run, "me/digits")
    assert main(["push", "--run-dir", str(trained_run), "--repo", "me/digits"]) == 2
    assert capsys.readouterr().err == ("error: the Hugging Face Hub needs the huggingface_hub package: "
                                       "pip install huggingface_hub\n")


def test_the_cli_pushes_and_samples_from_the_hub(hub, trained_run, tmp_path, capsys):
    assert main(["push", "--run-dir", str(trained_run), "--repo", "me/digits", "--private"]) == 0
    assert capsys.readouterr().out.strip() == "https://huggingface.co/me/digits" and hub.private["me/digits"]
    assert main(["sample", "--run-dir", "hf://me/digits", "--n", "4", "--out", str(tmp_path / "grid.png")]) == 0
    assert (tmp_path / "grid.png").read_bytes().startswith(b"\x89PNG")
    capsys.readouterr()
    assert main(["sample", "--run-dir", "hf://nobody/nothing", "--out", str(tmp_path / "none.png")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: no generator at hf://nobody/nothing") and error.count("\n") == 1


def test_the_double_refuses_a_keyword_the_installed_version_lacks(hub):
    with pytest.raises(TypeError):
        huggingface_hub.hf_hub_download(repo_id="me/digits", filename="generator.pt", no_such_keyword=True)
