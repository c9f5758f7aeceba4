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


def test_ci_runs_the_tests_in_a_fresh_clone_without_the_shared_folders():
    """.ci/run proves that a clone passes: it clones the checkout into an empty folder, works there,
    and gives the tests no path to tokenizers or data outside it."""
    ci = (ROOT / ".ci" / "run").read_text()
    clone = ci.index('git clone -q "$PWD" "$CLONE_PARENT/tip-decode"')
    assert 'CLONE_PARENT="$(mktemp -d)"' in ci[:clone]
    assert ci.index('cd "$CLONE_PARENT/tip-decode"') < ci.index("TEST_COMMAND=")
    assert "unset TIP_DECODE_TOKENIZERS TIP_DECODE_DATA" in ci
    assert "export TIP_DECODE_TOKENIZERS" not in ci and "export TIP_DECODE_DATA" not in ci and "../shared" not in ci
