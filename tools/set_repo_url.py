"""Rewrite the repository URL and release tag in the notebooks, the docs and the package from their one source each.

Usage: python tools/set_repo_url.py [--check]   (--check changes nothing and exits 1 when a file disagrees)
The URL comes from tools/repo_url.txt, the release from the package version (`v` + dcganlib/_version.py's
`__version__`). It rewrites Colab badges (colab.research.google.com/github/OWNER/REPO/blob/...), every
`REPO_URL = "..."` line (the set-up cells and dcganlib/_version.py), the set-up cells' `RELEASE = "..."` line,
`git+https://github.com/OWNER/REPO` install lines, the docs site's address (https://OWNER.github.io/REPO/) and
mkdocs.yml's `repo_url`. Edits are textual, so the notebooks' JSON formatting is kept
byte for byte apart from what changes.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
URL_FILE = ROOT / "tools" / "repo_url.txt"
VERSION_FILE = ROOT / "dcganlib" / "_version.py"
GITHUB_URL = re.compile(r"https://github\.com/(?P<owner>[\w.-]+)/(?P<repo>[\w.-]+?)(?:\.git)?/?")
NAME = r"[\w.-]+"


def read_repo_url(path: Path = URL_FILE) -> tuple[str, str, str]:
    """(url, owner, repo) from the URL file, which holds one line such as https://github.com/dcganlib/dcganlib."""
    text = path.read_text(encoding="utf-8").strip()
    match = GITHUB_URL.fullmatch(text)
    if match is None:
        raise ValueError(f"{path}: expected one line like https://github.com/OWNER/REPO, got {text!r}")
    owner, repo = match["owner"], match["repo"]
    return f"https://github.com/{owner}/{repo}", owner, repo


def read_release(path: Path = VERSION_FILE) -> str:
    """The release tag the notebooks install: `v` + the package's `__version__`, read without importing it."""
    match = re.search(r'^__version__ = "([^"]+)"$', path.read_text(encoding="utf-8"), re.MULTILINE)
    if match is None:
        raise ValueError(f'{path}: expected a line __version__ = "X.Y.Z"')
    return f"v{match[1]}"


def rewrite(text: str, url: str, owner: str, repo: str, release: str = "") -> str:
    """`text` with every badge, REPO_URL assignment and git+ install URL pointing at url/owner/repo, and
    every RELEASE assignment naming `release` (when given)."""
    text = re.sub(rf"(https://colab\.research\.google\.com/github/){NAME}/{NAME}(/blob/)",
                  lambda m: f"{m[1]}{owner}/{repo}{m[2]}", text)
    # In .ipynb JSON the quotes are escaped (\"), in README.md they are not.
    text = re.sub(r'(REPO_URL = \\?")[^"\\]*(\\?")', lambda m: f"{m[1]}{url}{m[2]}", text)
    if release:
        text = re.sub(r'(RELEASE = \\?")[^"\\]*(\\?")', lambda m: f"{m[1]}{release}{m[2]}", text)
    text = re.sub(rf"https://{NAME}\.github\.io/{NAME}/", f"https://{owner.lower()}.github.io/{repo}/", text)
    text = re.sub(rf"^(repo_url: )https://github\.com/{NAME}/{NAME}$", lambda m: f"{m[1]}{url}", text,
                  flags=re.MULTILINE)
    return re.sub(rf"git\+https://github\.com/{NAME}/{NAME}", lambda m: f"git+{url}", text)


def targets(root: Path = ROOT) -> list[Path]:
    """The notebooks, the package's version module, the docs pages and, when present, README.md and mkdocs.yml."""
    optional = [path for path in (root / "README.md", root / "mkdocs.yml") if path.is_file()]
    return [*sorted((root / "notebooks").glob("*.ipynb")), root / "dcganlib" / "_version.py",
            *sorted((root / "docs").glob("*.md")), *optional]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report files that disagree, change nothing")
    args = parser.parse_args(argv)
    url, owner, repo = read_repo_url()
    release = read_release()
    stale = []
    for path in targets():
        text = path.read_text(encoding="utf-8")
        new = rewrite(text, url, owner, repo, release)
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    verb = "disagree with" if args.check else "updated to"
    for path in stale:
        print(f"{path.relative_to(ROOT)}: {verb} {url} @ {release}")
    if not stale:
        print(f"all {len(targets())} files already point at {url} @ {release}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
