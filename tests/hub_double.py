"""A stand-in for the Hugging Face Hub that keeps its repos in a folder, so the Hub tests run offline.

It replaces the three huggingface_hub calls dcganlib makes (`HfApi.create_repo`, `HfApi.upload_folder`,
`hf_hub_download`) and binds every call to the installed version's own signature first: a keyword that version
does not take fails the test, so the same tests check dcganlib against Colab's huggingface_hub and the newest.
Missing repos, files and revisions raise huggingface_hub's own error classes.
"""

from __future__ import annotations

import inspect
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import huggingface_hub
import huggingface_hub.errors
import pytest


def hub_error(kind: type[Exception], message: str) -> Exception:
    """An instance of one of huggingface_hub's HTTP errors without an HTTP response (their constructors want one,
    of a class that differs between versions)."""
    error = kind.__new__(kind)
    Exception.__init__(error, message)
    return error


@dataclass
class FakeHub:
    """Repos as folders under `root`: root/<user>/<name>/<revision>/<files>; `calls` records each call's bound
    arguments."""

    root: Path
    private: dict[str, bool] = field(default_factory=dict)
    calls: list[tuple[str, dict]] = field(default_factory=list)
    writable: bool = True  # False: every upload is refused, as for a read-only token

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        folder = self.root / repo_id / revision
        return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}

    def _bound(self, real, *args, **kwargs) -> dict:
        arguments = inspect.signature(real).bind(*args, **kwargs).arguments  # TypeError: a keyword it lacks
        self.calls.append((real.__name__, arguments))
        return arguments

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
        real_create, real_upload = huggingface_hub.HfApi.create_repo, huggingface_hub.HfApi.upload_folder
        real_download = huggingface_hub.hf_hub_download

        def create_repo(api, *args, **kwargs):
            arguments = self._bound(real_create, api, *args, **kwargs)
            repo_id = arguments["repo_id"]
            if repo_id in self.private and not arguments.get("exist_ok"):
                raise hub_error(huggingface_hub.errors.HfHubHTTPError, f"409 Conflict: {repo_id} exists")
            self.private.setdefault(repo_id, bool(arguments.get("private")))
            (self.root / repo_id / "main").mkdir(parents=True, exist_ok=True)

        def upload_folder(api, *args, **kwargs):
            arguments = self._bound(real_upload, api, *args, **kwargs)
            repo_id = arguments["repo_id"]
            if repo_id not in self.private:
                raise hub_error(huggingface_hub.errors.RepositoryNotFoundError, f"404 Not Found: {repo_id}")
            if not self.writable:
                raise hub_error(huggingface_hub.errors.HfHubHTTPError, "403 Forbidden: you have read access only")
            shutil.copytree(arguments["folder_path"], self.root / repo_id / "main", dirs_exist_ok=True)

        def hf_hub_download(*args, **kwargs):
            arguments = self._bound(real_download, *args, **kwargs)
            repo_id, revision = arguments["repo_id"], arguments.get("revision") or "main"
            if repo_id not in self.private:
                raise hub_error(huggingface_hub.errors.RepositoryNotFoundError,
                                f"404 Client Error. Repository Not Found for url: .../{repo_id}")
            if not (self.root / repo_id / revision).is_dir():
                raise hub_error(huggingface_hub.errors.RevisionNotFoundError, f"404: invalid revision {revision}")
            source = self.root / repo_id / revision / arguments["filename"]
            if not source.is_file():
                raise huggingface_hub.errors.LocalEntryNotFoundError(f"{arguments['filename']} not found")
            cached = self.root / "cache" / repo_id / revision / source.name
            cached.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, cached)
            return str(cached)

        monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
        monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
        monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
        return self
