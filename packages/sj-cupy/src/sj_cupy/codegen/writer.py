"""An indented text buffer for emitting CUDA source, one line at a time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["CodeWriter"]


class CodeWriter:
    """Collects source lines with the current indentation.

    Example::

        >>> w = CodeWriter()
        >>> w.line("if (x) {")
        >>> with w.indent():
        ...     w.line("y = 1;")
        >>> w.line("}")
        >>> print(w.text(), end="")
        if (x) {
            y = 1;
        }
    """

    def __init__(self, step: str = "    ") -> None:
        self._lines: list[str] = []
        self._depth = 0
        self._step = step

    def line(self, text: str = "") -> None:
        """Append one line (an empty line stays empty, without trailing spaces)."""
        self._lines.append(self._step * self._depth + text if text else "")

    def lines(self, block: str) -> None:
        """Append every line of a multi-line ``block`` at the current indentation."""
        for text in block.strip("\n").splitlines():
            self.line(text)

    @contextmanager
    def indent(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1

    @contextmanager
    def block(self, opener: str, closer: str = "}") -> Iterator[None]:
        """``opener`` (ending in ``{``), the indented body, then ``closer``."""
        self.line(opener)
        with self.indent():
            yield
        self.line(closer)

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"
