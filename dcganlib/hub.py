"""The Hugging Face Hub as a place for generators: names such as "hf://user/name", downloads, uploads and the model
card. The only module that imports huggingface_hub, which is optional (preinstalled on Colab) and loaded on use."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

from ._version import REPO_URL, __version__

HUB_PREFIX = "hf://"
HUB_INSTALL = "pip install huggingface_hub"
GENERATOR_FILE = "generator.pt"  # what load_generator reads from a Hub repo
SAMPLES_FILE = "samples.png"
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


class HubNameError(ValueError):
    """A Hub name that is not "hf://user/name" or "hf://user/name@revision"."""


class HubError(OSError):
    """The Hub refused or could not be reached: the message says what to check."""


def is_hub_name(source) -> bool:
    """Whether `source` names a Hub repo ("hf://...") rather than a path."""
    return isinstance(source, str) and source.startswith(HUB_PREFIX)


def parse_hub_name(name: str) -> tuple[str, str | None]:
    """("user/name", revision or None) from "hf://user/name" or "hf://user/name@revision"."""
    repo_id, _, revision = name.removeprefix(HUB_PREFIX).partition("@")
    if not _REPO_ID.fullmatch(repo_id) or (revision == "" and "@" in name):
        raise HubNameError(f"{name!r} is not a Hub name: write hf://user/name (or hf://user/name@revision)")
    return repo_id, revision or None


def _hub() -> ModuleType:
    try:
        import huggingface_hub
        import huggingface_hub.errors  # the error classes, for one-line messages
    except ImportError as error:
        raise ImportError(f"the Hugging Face Hub needs the huggingface_hub package: {HUB_INSTALL}") from error
    return huggingface_hub


def download_generator(name: str, token: str | None = None) -> Path:
    """The generator file of the Hub repo `name` ("hf://user/name[@revision]"), downloaded once into the Hub's cache
    (later calls, and HF_HUB_OFFLINE=1, read it from there)."""
    repo_id, revision = parse_hub_name(name)
    huggingface_hub = _hub()
    try:
        path = huggingface_hub.hf_hub_download(repo_id=repo_id, filename=GENERATOR_FILE, revision=revision,
                                               token=token, library_name="dcganlib", library_version=__version__)
    except (huggingface_hub.errors.HfHubHTTPError, huggingface_hub.errors.EntryNotFoundError) as error:
        raise HubError(f"no generator at {name}: {_first_line(error)} (check the name; a private repo needs "
                       "huggingface-cli login or HF_TOKEN; offline, only generators loaded before are at hand)"
                       ) from error
    return Path(path)


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def upload_folder(folder: Path, repo_id: str, *, token: str | None = None, private: bool = False) -> str:
    """Create the model repo `repo_id` when it is new and upload `folder`'s files as one commit; returns its URL."""
    if not _REPO_ID.fullmatch(repo_id):
        raise HubNameError(f"{repo_id!r} is not a Hub repo: write user/name")
    huggingface_hub = _hub()
    api = huggingface_hub.HfApi()
    try:
        api.create_repo(repo_id=repo_id, token=token, private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), token=token,
                          commit_message=f"Generator from dcganlib {__version__}")
    except huggingface_hub.errors.HfHubHTTPError as error:
        raise HubError(f"the Hub refused the upload to {repo_id}: {_first_line(error)} (log in with "
                       "huggingface-cli login, or set HF_TOKEN to a token that may write to it)") from error
    return f"https://huggingface.co/{repo_id}"


def model_card(repo_id: str, facts: dict[str, str], class_names: tuple[str, ...] = ()) -> str:
    """The repo's README.md: what the generator draws, how to load it, and `facts` on how it was trained."""
    conditional = f" It is conditional: ask for one of {', '.join(class_names)}." if class_names else ""
    rows = "\n".join(f"| {name} | {value} |" for name, value in facts.items())
    labels = ", torch.arange(16) % G.num_classes" if class_names else ""
    imports = "import torch\n" if class_names else ""
    return f"""---
library_name: dcganlib
tags:
- dcgan
- gan
- image-generation
- pytorch
---

# {repo_id.split("/")[-1]}

A DCGAN generator trained with [dcganlib]({REPO_URL}) {__version__}.{conditional}
Install dcganlib with `pip install "git+{REPO_URL}@v{__version__}"` (on Colab too).

![Samples from fixed noise](samples.png)

## Use it

```python
{imports}from dcganlib import load_generator, make_noise
from dcganlib.models import generate

G = load_generator("hf://{repo_id}")
images = generate(G, make_noise(16, G.z_dim, seed=0){labels})  # (16, channels, size, size) in [-1, 1]
```

## How it was trained

| | |
|---|---|
{rows}
"""
