"""Rewrite the repository URL in every notebook and README.md from tools/repo_url.txt, the one place it is kept.

Usage: python tools/set_repo_url.py [--check]   (--check changes nothing and exits 1 when a file disagrees)
It rewrites Colab badges (colab.research.google.com/github/OWNER/REPO/blob/...), the set-up cells'
`REPO_URL = "..."` line and `git+https://github.com/OWNER/REPO` install lines. Edits are textual, so the
notebooks' JSON formatting is kept byte for byte apart from the URLs.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
URL_FILE = ROOT / "tools" / "repo_url.txt"
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


def rewrite(text: str, url: str, owner: str, repo: str) -> str:
    """`text` with every badge, REPO_URL assignment and git+ install URL pointing at url/owner/repo."""
    text = re.sub(rf"(https://colab\.research\.google\.com/github/){NAME}/{NAME}(/blob/)",
                  lambda m: f"{m[1]}{owner}/{repo}{m[2]}", text)
    # In .ipynb JSON the quotes are escaped (\"), in README.md they are not.
    text = re.sub(r'(REPO_URL = \\?")[^"\\]*(\\?")', lambda m: f"{m[1]}{url}{m[2]}", text)
    return re.sub(rf"git\+https://github\.com/{NAME}/{NAME}", lambda m: f"git+{url}", text)


def targets(root: Path = ROOT) -> list[Path]:
    """The notebooks and, when present, README.md."""
    readme = root / "README.md"
    return sorted((root / "notebooks").glob("*.ipynb")) + ([readme] if readme.is_file() else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report files that disagree, change nothing")
    args = parser.parse_args(argv)
    url, owner, repo = read_repo_url()
    stale = []
    for path in targets():
        text = path.read_text(encoding="utf-8")
        new = rewrite(text, url, owner, repo)
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    verb = "disagree with" if args.check else "updated to"
    for path in stale:
        print(f"{path.relative_to(ROOT)}: {verb} {url}")
    if not stale:
        print(f"all {len(targets())} files already point at {url}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
