"""Every example runs as its header says, and its ``--demo`` mode ends by itself with success."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted(p for p in (Path(__file__).parent.parent / "examples").glob("*.py")
                  if not p.name.startswith("_"))  # _demo.py is the demos' process handling


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_the_demo_of_each_example_succeeds(example: Path) -> None:
    result = subprocess.run([sys.executable, str(example), "--demo"], capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr


def test_there_are_examples() -> None:
    assert EXAMPLES


def test_the_readme_example_is_the_counter_example_verbatim() -> None:
    """The README's Python example is an excerpt of examples/counter.py, which the demo runs: it
    cannot go stale."""
    root = Path(__file__).parent.parent
    readme = (root / "README.md").read_text()
    block = readme.split("```python\n", 1)[1].split("```", 1)[0]
    assert "group.cast" in block and "group.query" in block and "group.events()" in block
    assert block in (root / "examples" / "counter.py").read_text()
