"""What a Python user expects of the package: types, a version, a key command, one-line CLI errors."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import vsgroups

USER_PROGRAM = Path(__file__).parent / "data" / "typed_user.py"


def vsgroups_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vsgroups", *args], capture_output=True, text=True,
                          timeout=60)


def strict_mypy(program: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache), program.name],
                          capture_output=True, text=True, cwd=program.parent, timeout=300)


def test_a_users_program_passes_mypy_strict_against_the_api(tmp_path: Path) -> None:
    """The package ships ``py.typed``: a program using the documented API type-checks under
    ``mypy --strict``, and a type error in it is found (the API's types are really used)."""
    good = tmp_path / "user.py"
    shutil.copy(USER_PROGRAM, good)
    result = strict_mypy(good, tmp_path / "cache")
    assert result.returncode == 0, result.stdout + result.stderr
    bad = tmp_path / "bad.py"
    bad.write_text(good.read_text().replace("mid: str = await group.cast", "mid: int = await group.cast"))
    result = strict_mypy(bad, tmp_path / "cache")
    assert result.returncode == 1 and 'expression has type "str", variable has type "int"' in result.stdout


def test_version() -> None:
    result = vsgroups_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"vsgroups {vsgroups.__version__}"


def test_keygen_prints_a_fresh_key_each_time() -> None:
    keys = [vsgroups_cli("keygen").stdout.strip() for _ in range(2)]
    assert all(re.fullmatch(r"[0-9a-f]{64}", key) for key in keys) and keys[0] != keys[1]
    too_short = vsgroups_cli("keygen", "--bytes", "8")
    assert too_short.returncode == 2 and "too short" in too_short.stderr


def test_a_cli_error_is_one_line_with_a_nonzero_status(tmp_path: Path) -> None:
    missing = tmp_path / "no-such.key"
    result = vsgroups_cli("node", "--name", "a", "--key-file", str(missing), "--groups", "g",
                          "--listen", "127.0.0.1:0")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"vsgroups node: error: [Errno 2] No such file or "
                                                  f"directory: '{missing}'"]
