"""Fixtures shared by the test files; the helpers they use live in kit.py."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from kit import FakeColab
from tiny_generator import TinyGenerator

from dcganlib import colab


@pytest.fixture(autouse=True)
def data_root(tmp_path_factory, monkeypatch) -> Path:
    """The default data root off Colab, a temporary folder: prepared images never land in the checkout."""
    root = tmp_path_factory.mktemp("data")
    monkeypatch.setattr(colab, "LOCAL_DATA", root)
    return root


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """torch on one thread for a module: on the shared test CPU, extra threads cost small matrices more than they
    save."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def gen() -> TinyGenerator:
    """A TinyGenerator in training mode, as a generator is after training."""
    return TinyGenerator().train()


@pytest.fixture
def fake_colab(tmp_path, monkeypatch) -> Iterator[FakeColab]:
    """This process as a fresh Colab runtime (see kit.FakeColab): Drive not mounted yet."""
    colab = FakeColab(tmp_path / "colab", monkeypatch)
    yield colab
    colab.close()


@pytest.fixture(scope="session")
def docs_site(tmp_path_factory) -> Path:
    """The docs site built as `make docs` builds it (strict), into a temporary folder; built once per session."""
    from tools import build_docs  # papermill and nbformat load only for the tests that build the site

    site = tmp_path_factory.mktemp("site")
    code = build_docs.build(site)
    if code != 0:
        pytest.fail(f"the docs site did not build strictly (mkdocs exit code {code}); its log is above",
                    pytrace=False)
    return site
