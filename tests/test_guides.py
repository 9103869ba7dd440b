"""The documentation runs: every Python program in docs/guide/ passes (each checks its own claim),
and the API reference builds from the docstrings (``make api-docs``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

GUIDES = sorted((Path(__file__).parent.parent / "docs" / "guide").glob("*.md"))


def programs(guide: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", guide.read_text(encoding="utf-8"), re.DOTALL)


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.stem)
def test_every_program_of_a_guide_runs(guide: Path, tmp_path: Path) -> None:
    found = programs(guide)
    assert found, f"{guide.name} has no program"
    for i, program in enumerate(found):
        script = tmp_path / f"{guide.stem}_{i}.py"
        script.write_text(program)
        result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{guide.name}, program {i + 1}:\n{result.stdout}\n{result.stderr}"


def test_the_api_reference_builds(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pdoc", "vsgroups", "-o", str(tmp_path)], check=True,
                   capture_output=True, timeout=300)
    page = (tmp_path / "vsgroups.html").read_text()
    for name in ("Node", "Group", "Replica", "ViewChange", "Delivery", "JoinFailed"):
        assert f'id="{name}"' in page, name
