"""The README documents every setting, and nothing it documents is made up."""

from __future__ import annotations

import re

from archiver.settings import Settings
from tests.conftest import REPO


def test_every_setting_is_in_the_readme_table() -> None:
    readme = (REPO / "README.md").read_text()
    documented = set(re.findall(r"^\| `(ARCHIVER_[A-Z0-9_]+)` \|", readme, flags=re.M))
    fields = {f"ARCHIVER_{name.upper()}" for name in Settings.model_fields}
    assert fields - documented == set(), "settings missing from the README"
    assert documented - fields == set(), "README documents settings that do not exist"


def test_readme_names_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text()
    assert ".venv/bin/archiver serve" in readme
    assert "\nscripts/test\n" in readme
