"""What both fault-injection test files share: a real small filesystem and
the one-`error:`-line check."""

import contextlib
import subprocess

import pytest


@contextlib.contextmanager
def small_tmpfs(tmp_path, size):
    """A tmpfs of `size` (e.g. "64K") mounted at `tmp_path/small disk`
    (unmounted afterwards), or a skip saying why mounting was refused."""
    mount = tmp_path / "small disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
        capture_output=True, text=True,
    )
    if done.returncode != 0:
        pytest.skip(
            "a full disk needs a small tmpfs, and mounting one was refused "
            f"here ({(done.stderr or done.stdout).strip()}); CI runs as root"
        )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def one_error_line(code, output, err=None):
    """The single `error:` line of a failed command (exit status 1, no
    traceback); the line is looked for in `err` when given, else in
    `output`."""
    text = output if err is None else output + err
    assert code == 1, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    where = output if err is None else err
    lines = [line for line in where.splitlines() if ": error: " in line]
    assert len(lines) == 1, where[-3000:]
    return lines[0]
