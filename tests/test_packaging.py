"""The wheel ships every package and asset, and works without the source tree.

CI installs editable, which hides a package missing from the wheel; this test builds the
wheel the way ``pip install .`` does and looks inside.
"""

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """Built from a clean copy of the tree: an in-tree ``build/`` could hold stale modules."""
    source, out = tmp_path_factory.mktemp("source") / "uir", tmp_path_factory.mktemp("wheel")
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", "runs",
                                                                "outputs", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(source)], check=True, capture_output=True)
    (path,) = out.glob("uir-*.whl")
    return path


def _expected_files() -> set[str]:
    """Every module and asset of the source tree, as the wheel names them."""
    files = {str(p.relative_to(REPO)) for p in (REPO / "uir").rglob("*")
             if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    files |= {"uir/pipelines/" + p.name for p in (REPO / "pipelines").glob("*.py")}
    return files


def test_wheel_holds_every_package_module_and_asset(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_expected_files() - names)
    assert not missing, f"missing from the wheel: {missing[:10]}"
    assert "uir/assets/default/restorer/diffusion_pytorch_model.safetensors" in names
    assert not any(n.startswith(("tests/", "train/", "pipelines/")) for n in names)


def _python_from_wheel(wheel, tmp_path, *args) -> subprocess.CompletedProcess:
    """``python -S ARGS`` with the wheel extracted to ``tmp_path/site`` first on its path, and
    the installed dependencies after it (``-S`` skips site-packages' .pth files, so the editable
    install cannot answer)."""
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    path = f"{tmp_path / 'site'}:{sysconfig.get_paths()['purelib']}:{sysconfig.get_paths()['platlib']}"
    return subprocess.run([sys.executable, "-S", *args], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": path, "PATH": "/usr/bin:/bin"})


def test_wheel_imports_every_module_without_the_source_tree(wheel, tmp_path):
    modules = sorted({n[:-3].replace("/", ".").removesuffix(".__init__") for n in zipfile.ZipFile(wheel).namelist()
                      if n.endswith(".py") and "/assets/" not in n})
    script = ("import importlib, uir\n"
              f"assert uir.__file__.startswith({str(tmp_path / 'site')!r}), uir.__file__\n"
              f"for m in {modules!r}: importlib.import_module(m)\n"
              "print(uir.default_model_dir())\n")
    done = _python_from_wheel(wheel, tmp_path, "-c", script)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (Path(done.stdout.strip()) / "model_index.json").is_file()


def test_wheels_console_script_runs_the_command_from_the_wheel(wheel, tmp_path):
    """The ``uir`` script the wheel declares, run as pip's wrapper runs it, from the wheel alone:
    its entry point (the boundary first, then :mod:`uir.cli`) answers ``uir degradations``."""
    import configparser

    archive = zipfile.ZipFile(wheel)
    (entry_points,) = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
    scripts = configparser.ConfigParser()
    scripts.read_string(archive.read(entry_points).decode())
    module, function = scripts["console_scripts"]["uir"].split(":")
    wrapper = f"import sys\nfrom {module} import {function}\nsys.argv[0] = 'uir'\nsys.exit({function}())\n"
    done = _python_from_wheel(wheel, tmp_path, "-c", wrapper, "degradations")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "hazy" in done.stdout and "noisy" in done.stdout
