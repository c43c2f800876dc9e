"""Packaging: the wheel carries the napari manifest, its entry points and the sample; npe2 accepts both
the installed (editable) plugin and the manifest shipped in the wheel.

The wheel is built without network access (``--no-isolation``, using the venv's setuptools) from a
copy of the source tree, so the test leaves no build/ or *.egg-info in the working tree.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
NPE2 = Path(sys.executable).with_name("npe2")
IGNORED = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "out", "runs", "*.egg-info", "__pycache__", ".pytest_cache",
    ".hypothesis", ".gl", ".whl", "tests", "*.pyc",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "src"
    shutil.copytree(ROOT, source, symlinks=True, ignore=IGNORED)
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--skip-dependency-check",
         "--outdir", str(tmp / "dist"), str(source)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    wheels = list((tmp / "dist").glob("napari_genselfdiff-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _dist_info(names: list[str], filename: str) -> str:
    matches = [n for n in names if n.endswith(f".dist-info/{filename}")]
    assert len(matches) == 1, matches
    return matches[0]


@pytest.mark.slow
def test_wheel_ships_the_manifest_the_sample_and_the_cli(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        manifest = archive.read("napari_genselfdiff/napari.yaml").decode()
        assert "napari_genselfdiff/samples/he_nuclei_512.png" in names
        assert "napari_genselfdiff/samples/he_nuclei_512_instances.png" in names
        assert "napari_genselfdiff/cli/main.py" in names
        assert "napari_genselfdiff/core/io/write.py" in names
        assert not [n for n in names if n.startswith("tests/") or "__pycache__" in n]
        # The manifest is a real file in the wheel (not a dangling symlink), identical to the root one.
        assert manifest == (ROOT / "napari.yaml").read_text()
        # Every command of the manifest points to a module that the wheel contains.
        for command in yaml.safe_load(manifest)["contributions"].get("commands", []):
            module = command["python_name"].split(":")[0]
            path = module.replace(".", "/")
            assert f"{path}.py" in names or f"{path}/__init__.py" in names, command["python_name"]


@pytest.mark.slow
def test_wheel_metadata_declares_the_napari_plugin_and_the_console_script(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = configparser.ConfigParser()
        entry_points.read_string(archive.read(_dist_info(names, "entry_points.txt")).decode())
        metadata = Parser().parsestr(archive.read(_dist_info(names, "METADATA")).decode())
    assert dict(entry_points["napari.manifest"]) == {"napari-genselfdiff": "napari_genselfdiff:napari.yaml"}
    assert entry_points["console_scripts"]["genselfdiff"] == "napari_genselfdiff.cli.main:main"
    assert "Framework :: napari" in metadata.get_all("Classifier")
    assert metadata["Name"] == "napari-genselfdiff"
    assert "GenSelfDiff" in metadata.get_payload()  # the README is the long description


@pytest.mark.slow
def test_npe2_validates_the_manifest_shipped_in_the_wheel(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as archive:
        archive.extract("napari_genselfdiff/napari.yaml", tmp_path)
    proc = subprocess.run([str(NPE2), "validate", str(tmp_path / "napari_genselfdiff" / "napari.yaml")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid" in proc.stdout


def test_npe2_validates_the_installed_plugin_and_imports_its_commands():
    # The editable install's entry point finds napari.yaml; --imports resolves every python_name.
    proc = subprocess.run([str(NPE2), "validate", "napari-genselfdiff", "--imports"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid" in proc.stdout


def test_package_manifest_is_the_root_file():
    # napari_genselfdiff/napari.yaml is a link to the root napari.yaml (one manifest, two paths).
    packaged = ROOT / "napari_genselfdiff" / "napari.yaml"
    assert packaged.read_text() == (ROOT / "napari.yaml").read_text()
