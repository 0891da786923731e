"""pyproject.toml and environment.yml pin the same packages at the same versions."""

import tomllib
import yaml

from .conftest import ROOT


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert set(pip) - {"-e ."} == pinned
    assert all("==" in p for p in pinned), "every dependency is pinned"


def test_config_is_a_leaf_and_the_package_lists_every_module():
    """`config` imports no plotting and no torch (the `nblib` command starts without them);
    every module of the package loads through `nblib.<name>`."""
    import subprocess
    import sys

    loaded = subprocess.run([sys.executable, "-c", "import sys, nblib.config; print(' '.join(sys.modules))"],
                            capture_output=True, text=True, check=True, cwd=ROOT).stdout.split()
    assert not {"torch", "matplotlib", "seaborn", "nblib.plots", "nblib.train", "nblib.data"} & set(loaded)
    import nblib

    modules = {p.stem for p in (ROOT / "nblib").glob("[a-z]*.py")} | {"data"}
    assert modules - {"cli"} == nblib._MODULES  # the command line is an entry point, not a topic
