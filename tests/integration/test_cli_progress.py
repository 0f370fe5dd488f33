"""`retention sweep` in a real terminal: a progress bar per phase on standard error and the report alone on
standard output; through a pipe, the engine's step lines instead of the bar."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading

RETENTION = [sys.executable, "-m", "retention.cli"]


def sweep_with_stderr(stack, stderr: int) -> subprocess.CompletedProcess:
    return subprocess.run([*RETENTION, "sweep", "--at", stack.now.isoformat()], stdout=subprocess.PIPE,
                          stderr=stderr, text=True, timeout=300, check=False, env=os.environ)


def test_a_terminal_shows_a_bar_per_phase_and_stdout_keeps_only_the_report(stack) -> None:
    terminal, attached = pty.openpty()
    chunks: list[bytes] = []
    reader = threading.Thread(target=_read_all, args=(terminal, chunks))  # a full terminal would block the child
    reader.start()
    try:
        result = sweep_with_stderr(stack, attached)
    finally:
        os.close(attached)
        reader.join(timeout=30)
        os.close(terminal)
    shown = b"".join(chunks).decode(errors="replace")
    assert result.returncode == 0, shown
    report = result.stdout.splitlines()
    assert report[0].startswith("registry: ")  # which account registry the run acted on, first
    locations = {line.split()[0] for line in report[2:-2]}
    for phase in ("deleting", "verifying"):  # each bar ends full, at one step per location
        assert f"{phase:<12}  [{'#' * 36}]  {len(locations)}/{len(locations)}" in shown, shown[-2000:]
    assert "step=" not in shown and "[retention." not in shown  # on a terminal the bar replaces info lines
    assert report[1].startswith("location ") and "succeeded" in report[-1]
    assert "deleting" not in result.stdout and "step=" not in result.stdout


def test_a_pipe_gets_the_step_lines_instead(stack) -> None:
    result = sweep_with_stderr(stack, subprocess.PIPE)
    assert result.returncode == 0, result.stderr
    assert "step=run.planned" in result.stderr and "step=run.finished" in result.stderr
    assert "deleting" not in result.stderr and "step=" not in result.stdout


def _read_all(fd: int, chunks: list[bytes]) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: every writer closed its end
            return
        if not chunk:
            return
        chunks.append(chunk)
