"""Map TOML key paths to line numbers, so config errors can name file:line.

`tomllib` validates syntax but keeps no positions. This scanner runs only
on text that `tomllib` already accepted and records where each key (and each
element of an array) starts; an error for a path it cannot place falls back
to its nearest known parent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

PathKey = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class _Cursor:
    """Position in the text with line tracking."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def advance(self, count: int = 1) -> None:
        chunk = self.text[self.pos : self.pos + count]
        self.line += chunk.count("\n")
        self.pos += len(chunk)

    def skip_space(self, newlines: bool) -> None:
        """Skip blanks, and with `newlines` also line breaks and comments."""
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in " \t\r" or (newlines and char == "\n"):
                self.advance()
            elif char == "#":
                end = self.text.find("\n", self.pos)
                self.advance((end if end >= 0 else len(self.text)) - self.pos)
            else:
                return

    def skip_line(self) -> None:
        end = self.text.find("\n", self.pos)
        self.advance((end + 1 if end >= 0 else len(self.text)) - self.pos)


def _read_string(cur: _Cursor) -> str:
    """Read a basic, literal or multi-line string; return its raw content."""
    quote = cur.peek()
    triple = cur.text.startswith(quote * 3, cur.pos)
    delim = quote * 3 if triple else quote
    cur.advance(len(delim))
    start = cur.pos
    while cur.pos < len(cur.text):
        if quote == '"' and cur.peek() == "\\":
            cur.advance(2)
            continue
        if cur.text.startswith(delim, cur.pos):
            # A multi-line string may end with up to two extra quotes.
            while triple and cur.text.startswith(delim + quote, cur.pos):
                cur.advance()
            content = cur.text[start : cur.pos]
            cur.advance(len(delim))
            return content
        cur.advance()
    return cur.text[start:]


def _read_key(cur: _Cursor) -> list[str]:
    """Read a (possibly dotted, possibly quoted) key."""
    parts: list[str] = []
    while True:
        cur.skip_space(newlines=False)
        char = cur.peek()
        if char in ('"', "'"):
            parts.append(_read_string(cur))
        else:
            match = _BARE_KEY.match(cur.text, cur.pos)
            if match is None:
                return parts
            parts.append(match.group())
            cur.advance(match.end() - cur.pos)
        cur.skip_space(newlines=False)
        if cur.peek() != ".":
            return parts
        cur.advance()


class _Locator:
    def __init__(self, text: str) -> None:
        self.cur = _Cursor(text)
        self.lines: dict[PathKey, int] = {}
        self.array_counts: dict[PathKey, int] = {}

    def mark(self, path: PathKey, line: int) -> None:
        self.lines.setdefault(path, line)

    def run(self) -> dict[PathKey, int]:
        cur = self.cur
        table: PathKey = ()
        while True:
            cur.skip_space(newlines=True)
            if cur.pos >= len(cur.text):
                return self.lines
            if cur.peek() == "[":
                table = self._header()
            else:
                self._key_value(table)
            cur.skip_line()

    def _header(self) -> PathKey:
        cur = self.cur
        line = cur.line
        is_array = cur.text.startswith("[[", cur.pos)
        cur.advance(2 if is_array else 1)
        path: PathKey = tuple(_read_key(cur))
        if is_array:
            index = self.array_counts.get(path, 0)
            self.array_counts[path] = index + 1
            self.mark(path, line)
            path = (*path, index)
        self.mark(path, line)
        return path

    def _key_value(self, table: PathKey) -> None:
        cur = self.cur
        line = cur.line
        key = tuple(_read_key(cur))
        path = (*table, *key)
        self.mark(path, line)
        cur.skip_space(newlines=False)
        if cur.peek() == "=":
            cur.advance()
            cur.skip_space(newlines=False)
            self._value(path)

    def _value(self, path: PathKey) -> None:
        cur = self.cur
        char = cur.peek()
        if char in ('"', "'"):
            _read_string(cur)
        elif char == "[":
            self._array(path)
        elif char == "{":
            self._inline_table(path)
        else:
            while cur.pos < len(cur.text) and cur.peek() not in ",]}\n#":
                cur.advance()

    def _array(self, path: PathKey) -> None:
        cur = self.cur
        cur.advance()
        index = 0
        while True:
            cur.skip_space(newlines=True)
            char = cur.peek()
            if char in ("]", ""):
                cur.advance()
                return
            if char == ",":
                cur.advance()
                continue
            self.mark((*path, index), cur.line)
            self._value((*path, index))
            index += 1

    def _inline_table(self, path: PathKey) -> None:
        cur = self.cur
        cur.advance()
        while True:
            cur.skip_space(newlines=True)
            char = cur.peek()
            if char in ("}", ""):
                cur.advance()
                return
            if char == ",":
                cur.advance()
                continue
            line = cur.line
            key = tuple(_read_key(cur))
            if not key:
                cur.advance()
                continue
            self.mark((*path, *key), line)
            cur.skip_space(newlines=False)
            if cur.peek() == "=":
                cur.advance()
                cur.skip_space(newlines=False)
                self._value((*path, *key))


def key_lines(text: str) -> dict[PathKey, int]:
    """Line of every key and array element in `text` (valid TOML)."""
    return _Locator(text).run()


def _prefixes(path: PathKey) -> Iterator[PathKey]:
    for end in range(len(path), 0, -1):
        yield path[:end]


def line_of(lines: dict[PathKey, int], path: PathKey) -> int | None:
    """Line of `path`, or of its nearest ancestor that the file mentions."""
    for prefix in _prefixes(path):
        if prefix in lines:
            return lines[prefix]
    return None
