"""Every test file that marks tests ``slow`` is in .ci/run's slow step, so CI runs them."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# a decorator or a module's pytestmark
SLOW_MARK = re.compile(r"^(@pytest\.mark\.slow|pytestmark = pytest\.mark\.slow)", re.MULTILINE)


def slow_step_files() -> set[str]:
    """The test files that .ci/run hands to ``pytest -m slow``."""
    text = (ROOT / ".ci" / "run").read_text().replace("\\\n", " ")
    commands = [line for line in text.splitlines() if "pytest" in line and "-m slow" in line]
    return {path for line in commands for path in re.findall(r"tests/\S+\.py", line)}


def test_every_file_with_slow_tests_is_in_the_slow_step():
    marked = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "tests").rglob("test_*.py")
        if SLOW_MARK.search(path.read_text())
    }
    assert marked and marked <= slow_step_files(), sorted(marked - slow_step_files())
