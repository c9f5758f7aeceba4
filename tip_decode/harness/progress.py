"""Progress of a run on stderr: samples finished and tokens generated.

On a terminal it is a tqdm bar whose postfix counts generated tokens, so it moves during a long
generation even before any sample finishes. When stderr is not a terminal (a log file, CI, a pipe) a
redrawn bar would write a carriage return per update; instead a plain line is printed at most every
`interval` seconds, plus a last line when the run ends.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def _clock(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Counts finished samples and generated tokens.

    Args:
        total: samples to generate.
        desc: the label ("compare").
        enabled: False prints nothing (`--quiet`).
        stream: where to write (default: sys.stderr).
        interval: seconds between plain lines when `stream` is not a terminal.
    """

    def __init__(self, total: int, desc: str = "compare", enabled: bool = True, stream: TextIO | None = None, interval: float = 15.0) -> None:
        self.total = total
        self.desc = desc
        self.samples = 0
        self.tokens = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and total > 0
        self.interval = interval
        self._start = time.monotonic()
        self._last_line = self._start
        self._bar: Any = None
        if not self.enabled:
            return
        isatty = getattr(self.stream, "isatty", None)
        if callable(isatty) and isatty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="sample", file=self.stream, dynamic_ncols=True)
            self._bar.set_postfix_str("0 tokens", refresh=False)
        else:
            self._write(f"{desc}: {total} samples to generate")

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def _line(self) -> str:
        elapsed = time.monotonic() - self._start
        text = f"{self.desc}: {self.samples}/{self.total} samples, {self.tokens:,} tokens generated, {_clock(elapsed)} elapsed"
        if 0 < self.samples < self.total:
            text += f", about {_clock(elapsed / self.samples * (self.total - self.samples))} left"
        return text

    def _maybe_line(self) -> None:
        now = time.monotonic()
        if now - self._last_line >= self.interval:
            self._last_line = now
            self._write(self._line())

    def add_tokens(self, count: int) -> None:
        """`count` more tokens were generated (possibly by samples not finished yet)."""
        if count <= 0:
            return
        self.tokens += count
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(f"{self.tokens:,} tokens", refresh=False)
            self._bar.update(0)  # redraws at most every tqdm mininterval
        else:
            self._maybe_line()

    def finish_sample(self) -> None:
        self.samples += 1
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(f"{self.tokens:,} tokens", refresh=False)
            self._bar.update(1)
        else:
            self._maybe_line()

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        else:
            self._write(self._line())
        self.enabled = False
