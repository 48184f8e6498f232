import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from uir import sample_image_path
from uir.data.photos import default_photos_dir


TRAIN_DIR = Path(__file__).resolve().parents[1] / "train"


def load_train_script(name: str):
    """The ``train/<name>.py`` script as a module (imported once, by path; ``train/`` is not a
    package and is not installed)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TRAIN_DIR / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def free_port() -> int:
    """A TCP port nobody listens on now: each launch gets its own, so a port still closing after
    the previous launch cannot break the next rendezvous."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_two_cpu_processes(argv, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    """``accelerate launch --multi_gpu --num_processes 2 <argv>`` on CPU (gloo), one thread each:
    real two-process DDP (``--cpu`` alone would start one process). Python's fault handler
    prints the stacks of any C++ abort to stderr.

    No retry: the C++ abort these launches once hit ("terminate called without an active
    exception", about 1 in 30 on a loaded 2-core machine) came from a gloo process group left
    for the interpreter's exit to tear down; the error boundary now closes it on every exit
    (:func:`uir.boundary.end_distributed`), and 150 loaded launches of these tests' two
    commands have not aborted since."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--main_process_port", str(free_port()), *argv]
    with tempfile.TemporaryDirectory() as scratch:  # torch's elastic agent leaves a folder in the temp dir per launch
        env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1",
               "TMPDIR": scratch}
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)


@pytest.fixture(scope="session")
def train_script():
    """:func:`load_train_script`, for tests that load a script inside the test."""
    return load_train_script


@pytest.fixture(scope="session")
def photos_dir():
    root = default_photos_dir()
    if root is None or not root.is_dir():
        pytest.skip("real photos not found: set UIR_PHOTOS or place shared/photos beside the repository")
    return root


@pytest.fixture(scope="session")
def sample():
    """The bundled photo as a (3,H,W) float tensor, cropped to 128x160 to keep tests fast."""
    array = np.asarray(Image.open(sample_image_path()).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array.copy()).permute(2, 0, 1)[:, 40:168, 100:260].contiguous()


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def fresh_accelerate_state():
    """Each in-process training run builds its own Accelerator, as a new process would."""
    from accelerate.state import AcceleratorState, GradientState

    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
