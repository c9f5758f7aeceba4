"""README.md and .ci/run agree: CI runs exactly the test command that the README gives a new user."""

import re

from conftest import ROOT


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    command = re.search(r"^TEST_COMMAND='(.+)'$", ci, re.MULTILINE).group(1)
    readme = (ROOT / "README.md").read_text()
    assert command in readme
    # ... near the top, in the first code block
    first_block = readme.split("```")[1]
    assert command in first_block
