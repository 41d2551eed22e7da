"""The library's version and home: one small module that every other module may import."""

__version__ = "0.4.0"
# Where the library is installed from on Colab; tools/set_repo_url.py keeps this, the notebooks and the README
# in step with tools/repo_url.txt.
REPO_URL = "https://github.com/dcganlib/dcganlib"
