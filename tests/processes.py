"""Real subprocesses for tests: read their output line by line without
blocking, wait for a line, and stop them by PID."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time


class Process:
    """A child process whose merged stdout/stderr is read by a thread."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.argv = argv
        self.popen = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.popen.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    @property
    def output(self) -> str:
        self._drain()
        return "\n".join(self.lines)

    def _drain(self) -> None:
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return
            if line is not None:
                self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 30) -> str:
        """Return the first line containing `text`, waiting for it."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            self._drain()
            for line in self.lines[seen:]:
                if text in line:
                    return line
            seen = len(self.lines)
            if self.popen.poll() is not None and self._queue.empty():
                self._drain()
                if not any(text in line for line in self.lines[seen:]):
                    raise AssertionError(
                        f"{self.argv} exited {self.popen.returncode} before "
                        f"printing {text!r}:\n{self.output}"
                    )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {text!r} within {timeout}s from {self.argv}:\n{self.output}"
                )
            time.sleep(0.02)

    def first_line(self, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while not self.lines:
            self._drain()
            if time.monotonic() > deadline or (
                self.popen.poll() is not None and self._queue.empty()
            ):
                self._drain()
                break
            time.sleep(0.02)
        assert self.lines, f"{self.argv} printed nothing"
        return self.lines[0]

    def signal(self, number: int = signal.SIGINT) -> None:
        self.popen.send_signal(number)

    def wait(self, timeout: float = 30) -> int:
        code = self.popen.wait(timeout=timeout)
        time.sleep(0.05)  # let the reader thread hand over the last lines
        self._drain()
        return code

    def stop(self) -> None:
        """Stop it if it still runs: SIGTERM, then SIGKILL."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc's parent links: a server's
    forkserver and its execution processes."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().split(") ", 1)[1].split()[1])
            except OSError:
                continue
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, of in parents.items() if of == parent]
        found += children
        frontier += children
    return found


def alive(pid: int) -> bool:
    """Whether a process still runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False
