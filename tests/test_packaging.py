"""A non-editable install carries the Hydra config tree inside the package."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from conftest import REPO


@pytest.mark.slow
def test_wheel_ships_the_config_tree_and_console_scripts(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(REPO)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("convnetlab-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"convnetlab/conf/train.yaml", "convnetlab/conf/eval.yaml", "convnetlab/conf/model/resnet50.yaml",
            "convnetlab/conf/data/shapes.yaml"} <= set(names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert all(f"convnetlab-{name}" in scripts for name in ("train", "eval", "data"))


@pytest.mark.slow
def test_installed_wheel_finds_its_packaged_configs(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(REPO)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("convnetlab-*.whl")
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")  # what a non-editable install puts on sys.path
    out = subprocess.run([sys.executable, "-c", "from convnetlab.cli.hydra_app import config_dir; print(config_dir())"],
                         env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"}, cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == str(tmp_path / "site" / "convnetlab" / "conf")
