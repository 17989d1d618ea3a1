"""Child processes that take a lock and report ``locked`` before the test goes on."""

from __future__ import annotations

import subprocess
import sys


class LockHolders:
    """Starts ``python -c script args...`` processes; ``close()`` kills those still alive."""

    def __init__(self) -> None:
        self._holders: list[subprocess.Popen[str]] = []

    def start(self, script: str, *args: str) -> subprocess.Popen[str]:
        """Run ``script`` and wait until it prints ``locked`` (fails with its stderr)."""
        holder = subprocess.Popen(
            [sys.executable, "-c", script, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._holders.append(holder)
        assert holder.stdout is not None
        line = holder.stdout.readline().strip()
        assert line == "locked", holder.stderr.read() if holder.stderr else line
        return holder

    def close(self) -> None:
        """Kill the holders still running and reap them all."""
        for holder in self._holders:
            if holder.poll() is None:
                holder.kill()
            holder.communicate(timeout=10)
