"""Packaging: every subpackage is listed in pyproject (the list is explicit because
models/ is mapped to afxmatch._models), and the model lookup finds a shipped model."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"afxmatch"} | {
        "afxmatch." + ".".join(p.parent.relative_to(ROOT / "afxmatch").parts)
        for p in (ROOT / "afxmatch").rglob("__init__.py") if p.parent != ROOT / "afxmatch"}
    assert found | {"afxmatch._models"} == listed
