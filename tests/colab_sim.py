"""A Colab runtime simulator: fresh runtimes, each a new machine, that install dcganlib from git and keep Drive.

What is simulated is only what this machine cannot have: the `google.colab` modules (tests/colab_runtime, a
stand-in whose Drive is a folder that outlives every runtime), Colab's /content (a temp folder, passed to dcganlib
as DCGANLIB_COLAB_CONTENT), GitHub (git's `url.<base>.insteadOf` sends the set-up cell's clone of REPO_URL to a
local repository made from this checkout, tagged with the release the notebooks install) and the new machine
behind every new runtime (each kernel runs in UTS and mount namespaces of its own, with the host name colab-vm-N,
where Drive's mount point is a real mount that a test can pull away). The rest is real: the notebooks' own set-up
cell runs pip, pip clones and builds dcganlib, and the notebooks run in a Jupyter kernel.

A runtime is a new virtual environment whose only packages are "Colab's preinstalled" ones: those of COLAB_ENV,
which `make test` builds with Colab's Python (3.13, where this machine has it) and Colab's package versions
(tests/colab_versions.txt, by tools/colab_env.sh). Each runtime has a new kernel and an empty /content: the Drive
mount point is gone, the Drive folder is kept.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import nbformat
from kit import wait_until
from repo_root import ROOT

import dcganlib

STAND_IN = Path(__file__).resolve().parent / "colab_runtime"
COLAB_ENV = ROOT / ".venv" / "colab"
KERNEL = "colab-sim"
RUNTIME_THREADS = 1


def colab_python() -> Path:
    """The Colab environment's interpreter; a clear failure when `make test` has not built it."""
    python = COLAB_ENV / "bin" / "python"
    if not (COLAB_ENV / ".installed").exists():
        raise AssertionError(f"no Colab environment at {COLAB_ENV}: `make test` builds it (tools/colab_env.sh)")
    return python


def _run_python(python: Path, code: str) -> str:
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def notebook_text(path: Path) -> str:
    """All text a executed notebook printed or displayed, cell after cell."""
    texts = []
    for cell in nbformat.read(path, as_version=4).cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", "") + out.get("data", {}).get("text/plain", ""))
    return "\n".join(texts)


def _git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout


class ColabSimulator:
    """The world around a series of Colab runtimes: GitHub (a local repo), Drive (a folder) and the packages."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.content = root / "content"
        self.drive = root / "drive-cloud"  # what Google keeps: survives every runtime
        self.drive.mkdir(parents=True)
        self.log = root / "colab-calls.log"
        self.drive_down_flag = root / "drive-down"  # while it exists, Drive cannot be mounted
        self.repo = self._publish_checkout(root / "github")
        self.gitconfig = root / "gitconfig"
        self.gitconfig.write_text(f'[url "file://{self.repo}"]\n\tinsteadOf = {dcganlib.REPO_URL}\n')
        self.preinstalled = self._preinstalled_packages(root / "preinstalled")
        self.runtimes = 0

    @staticmethod
    def _publish_checkout(repo: Path) -> Path:
        """A git repo holding this checkout's files as they are now, tagged with the release the notebooks pin."""
        files = _git("ls-files", "--cached", "--others", "--exclude-standard", "-z", cwd=ROOT).split("\0")
        for name in filter(None, files):
            source = ROOT / name
            if source.is_file():
                (repo / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, repo / name)
        _git("init", "-q", cwd=repo)
        _git("add", "-A", cwd=repo)
        _git("-c", "user.name=sim", "-c", "user.email=sim@localhost", "commit", "-q", "-m", "release", cwd=repo)
        _git("tag", f"v{dcganlib.__version__}", cwd=repo)
        return repo

    @staticmethod
    def _preinstalled_packages(folder: Path) -> Path:
        """Links to the Colab environment's packages: what a runtime finds before its set-up cell runs."""
        folder.mkdir()
        purelib = Path(_run_python(colab_python(), "import sysconfig; print(sysconfig.get_paths()['purelib'])"))
        for entry in purelib.iterdir():
            (folder / entry.name).symlink_to(entry)
        return folder

    @property
    def python_version(self) -> str:
        """The Python that the runtimes run, as `python --version` says it."""
        return _run_python(colab_python(), "import platform; print('Python', platform.python_version())")

    def new_runtime(self, older: dict[str, str] | None = None) -> Runtime:
        """A fresh runtime: empty /content (so no Drive mount), a new environment and kernel; Drive is kept.

        `older` gives packages the runtime has at older versions, as an older pinned runtime version would: each is
        metadata only (enough for pip, which must refuse to upgrade it, and for importlib.metadata).
        """
        shutil.rmtree(self.content, ignore_errors=True)
        self.content.mkdir()
        self.runtimes += 1
        runtime = Runtime(self, self.root / f"runtime-{self.runtimes}", f"colab-vm-{self.runtimes}")
        for name, version in (older or {}).items():
            info = runtime.site_packages / f"{name}-{version}.dist-info"
            info.mkdir()
            (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
            (info / "INSTALLER").write_text("pip\n")
        return runtime

    def drive_goes_down(self) -> None:
        """From now on Drive cannot be mounted (a mount already made stays until unmounted)."""
        self.drive_down_flag.touch()

    def drive_comes_back(self) -> None:
        """Drive can be mounted again."""
        self.drive_down_flag.unlink(missing_ok=True)

    def calls(self) -> list[str]:
        """What notebooks asked of the google.colab stand-in, in order."""
        return self.log.read_text().splitlines() if self.log.exists() else []


class Runtime:
    """One Colab runtime on a machine of its own (`host`): its own Python environment and kernel, with no dcganlib
    until a set-up cell installs it."""

    def __init__(self, sim: ColabSimulator, folder: Path, host: str) -> None:
        self.sim = sim
        self.folder = folder
        self.host = host
        venv = folder / "venv"
        base = _run_python(colab_python(), "import sys; print(sys._base_executable)")
        subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True)
        self.python = venv / "bin" / "python"
        site_packages = Path(_run_python(self.python, "import sysconfig; print(sysconfig.get_paths()['purelib'])"))
        # A .pth line starting with "import" runs at start-up: addsitedir also reads the packages' own .pth files.
        pth = f"import site; site.addsitedir({str(sim.preinstalled)!r})\n"
        (site_packages / "_colab_preinstalled.pth").write_text(pth)
        self.site_packages = site_packages
        self.pid_file = folder / "kernel.pid"
        self.jupyter_path = folder / "jupyter"
        spec_dir = self.jupyter_path / "kernels" / KERNEL
        spec_dir.mkdir(parents=True)
        # unshare gives the kernel a host name of its own (unshare execs, keeping the pid); the shell records its pid
        # and then becomes the kernel (exec), so the pid is the kernel's own.
        launch = (f'hostname {host} && echo $$ > "{self.pid_file}" && '
                  f'exec "{self.python}" -m ipykernel_launcher -f "$0"')
        env = {"PYTHONPATH": str(STAND_IN), "DCGANLIB_COLAB_CONTENT": str(sim.content),
               "COLAB_SIM_DRIVE": str(sim.drive), "COLAB_SIM_LOG": str(sim.log), "COLAB_SIM_REAL_MOUNTS": "1",
               "COLAB_SIM_DRIVE_DOWN": str(sim.drive_down_flag),
               "GIT_CONFIG_GLOBAL": str(sim.gitconfig), "MPLBACKEND": "module://matplotlib_inline.backend_inline",
               # One thread: the baseline run in another runtime matches it bit for bit at the same thread count,
               # and OpenMP threads spinning against pytest's would slow both down many times over.
               "OMP_NUM_THREADS": str(RUNTIME_THREADS)}
        self.env = env
        spec = {"argv": ["unshare", "--uts", "--mount", "/bin/sh", "-c", launch, "{connection_file}"],
                "display_name": "Colab (simulated)", "language": "python", "env": env}
        (spec_dir / "kernel.json").write_text(json.dumps(spec))

    def python_code(self, code: str) -> str:
        """Run `code` with this runtime's Python; returns what it printed."""
        return _run_python(self.python, code)

    def start(self, notebook: str, output: Path, **parameters) -> subprocess.Popen:
        """Run notebooks/<notebook> with papermill in this runtime's kernel, from /content; returns the process."""
        command = [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / notebook), str(output),
                   "-k", KERNEL, "--cwd", str(self.sim.content), "-y", json.dumps(parameters),
                   "--execution-timeout", "600", "--no-progress-bar"]
        env = {**os.environ, "JUPYTER_PATH": str(self.jupyter_path)}
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def run(self, notebook: str, output: Path, timeout: float = 600, **parameters) -> str:
        """Run a notebook to the end in this runtime; returns its text output (fails with papermill's log)."""
        process = self.start(notebook, output, **parameters)
        log, _ = process.communicate(timeout=timeout)
        if process.returncode != 0:
            raise AssertionError(f"{notebook} failed in the simulated runtime:\n{log[-6000:]}")
        return notebook_text(output)

    def install(self) -> None:
        """Install the release from (simulated) GitHub, as the notebooks' set-up cell does."""
        release = f"dcganlib @ git+{dcganlib.REPO_URL}@v{dcganlib.__version__}"
        subprocess.run([str(self.python), "-m", "pip", "install", "-q", release], check=True,
                       env={**os.environ, "GIT_CONFIG_GLOBAL": str(self.sim.gitconfig)})

    def start_command(self, *args: str) -> subprocess.Popen:
        """Run this runtime's Python with `args` from /content, as a `!python ...` line in a notebook would, in a
        mount namespace of its own; returns the process, whose pid is the Python's."""
        launch = f'hostname {self.host} && exec "{self.python}" "$@"'
        env = {**os.environ, **self.env, "MPLBACKEND": "Agg"}
        return subprocess.Popen(["unshare", "--uts", "--mount", "/bin/sh", "-c", launch, "python", *args],
                                cwd=self.sim.content, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)

    def unmount_drive(self, pid: int) -> None:
        """Pull Drive's mount away under process `pid` (in its mount namespace), as when its FUSE mount drops."""
        subprocess.run(["nsenter", "-t", str(pid), "-m", "umount", "-l", str(self.sim.content / "drive")],
                       check=True)

    def kill_kernel(self) -> None:
        """SIGKILL the kernel, as a crashed or disconnected runtime would end it."""
        os.kill(int(self.pid_file.read_text()), signal.SIGKILL)


def wait_for(condition, what: str, process: subprocess.Popen, deadline_s: float = 300) -> None:
    """Return once `condition` holds; fail when the deadline passes (killing the notebook) or the notebook ends."""

    def ended() -> str | None:
        return None if process.poll() is None else f"the notebook ended:\n{process.stdout.read()[-6000:]}"

    try:
        wait_until(condition, what, deadline_s, gone=ended)
    except AssertionError:
        process.kill()
        raise
