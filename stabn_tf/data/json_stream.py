"""One JSON object's entries, read from a file one at a time: memory bounded by the
largest entry, not by the file.

Something-Else's box files are single objects of hundreds of megabytes (`{video id:
[frame, ...], ...}`); `json.load` holds all of it as Python objects, several times the
file's size. `iter_object` finds each `"key": value` pair of the outer object with a small
scanner over a bounded buffer and decodes each value with the standard library's C
decoder, so a value is exactly what `json.load` would have made of it (NaN and Infinity
included), and a file that is not one well-formed object gets the same one-line message
`json.load` gives (the position counted in the whole file).
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from json.decoder import scanstring
from typing import BinaryIO

from stabn_tf.errors import StabnError

try:  # a faster decoder of the same values, where installed (see `_value`)
    import orjson
except ImportError:  # pragma: no cover - exercised where orjson is missing
    orjson = None

#: Characters read at a time; a value longer than the buffer grows it (doubling).
CHUNK_CHARS = 1 << 20
#: A decoding error this close to the end of the buffer may only mean that the value goes
#: on past it (a literal, number or escape cut by the buffer's end): read more first.
_NEAR_END = 64

_DECODER = json.JSONDecoder()
_WHITESPACE = re.compile(r"[ \t\n\r]*")
#: Where a list or object value most likely ends: its closing bracket just before the next
#: `, "key": [` or `{` of the outer object (the shapes of Something-Else's and the simple
#: format's entries). A guess only: `_value` checks it. `_COMPACT_END` is the same guess
#: for files written with `json.dump`'s default separators (Something-Else's are), found
#: several times faster by its literal start; a file in another layout uses `_LIKELY_END`.
_LIKELY_END = {"[": re.compile(r'(\}\s*\])\s*,\s*"(?:[^"\\]|\\.)*"\s*:\s*\['),
               "{": re.compile(r'(\})\s*,\s*"(?:[^"\\]|\\.)*"\s*:\s*\{')}
_COMPACT_END = {"[": re.compile(r'(\}\]), "[^"\\]*": \['),
                "{": re.compile(r'(\}), "[^"\\]*": \{')}
#: orjson reads integers beyond 64 bits as floats (json: ints), so a value holding an
#: integer part of 19 or more digits is left to the standard decoder. Found by mapping
#: digits to "0", the characters that make a number a float (`.eE`) to "." and everything
#: else to " ": such a run is then `b" " + 19 zeros` (a run after "." is a fraction, e.g.
#: 0.0012345678901234567, which orjson reads as json does). Far faster than a regular
#: expression.
_LONG_INTEGER = b" " + b"0" * 19
_DIGITS_ONLY = bytes(48 if 48 <= c <= 57 else 46 if c in b".eE" else 32 for c in range(256))
_TYPE_OF_FIRST = {"[": "list", '"': "str", "t": "bool", "f": "bool", "n": "NoneType"}


class NotAnObject(ValueError, StabnError):
    """The file is JSON, but not an object; `type_name` says what it is."""

    def __init__(self, type_name: str):
        super().__init__(f"expected a JSON object, got {type_name}")
        self.type_name = type_name


class _Incomplete(Exception):
    """The buffer ended inside the entry being read."""


class _Text:
    """The file's text in a buffer: decoded incrementally, positions kept file-wide."""

    def __init__(self, f: BinaryIO, chunk_chars: int):
        self.f, self.chunk = f, chunk_chars
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.buf, self.eof = "", False
        self.dropped = 0  # characters dropped from the buffer's front ...
        self.lines_dropped, self.last_newline = 0, -1  # ... their newlines, the last one's
        self.bytes_read = 0

    def more(self, keep_from: int) -> int:
        """Drops the buffer before `keep_from`, reads at least as much as it keeps (so a
        long value costs linear time) and returns how far positions moved."""
        gone, kept = self.buf[:keep_from], self.buf[keep_from:]
        pending = len(self.decoder.getstate()[0])
        data = self.f.read(max(self.chunk, 2 * len(kept)))
        self.eof = not data
        try:
            text = self.decoder.decode(data, final=self.eof)
        except UnicodeDecodeError as e:
            where = self.bytes_read - pending + e.start
            raise ValueError(f"'utf-8' codec can't decode byte 0x{e.object[e.start]:02x} in "
                             f"position {where}: {e.reason}") from None
        self.bytes_read += len(data)
        newline = gone.rfind("\n")
        if newline >= 0:
            self.lines_dropped += gone.count("\n")
            self.last_newline = self.dropped + newline
        self.buf = kept + text
        self.dropped += keep_from
        return keep_from

    def error(self, message: str, pos: int) -> ValueError:
        """`json.load`'s message for an error at buffer position `pos`, counted in the
        whole file."""
        line = self.lines_dropped + self.buf.count("\n", 0, pos) + 1
        newline = self.buf.rfind("\n", 0, pos)
        column = pos - newline if newline >= 0 else self.dropped + pos - self.last_newline
        return ValueError(f"{message}: line {line} column {column} (char {self.dropped + pos})")


def _skip(buf: str, i: int) -> int:
    return _WHITESPACE.match(buf, i).end()


def _at_end(error: Exception, text: _Text) -> bool:
    """Whether `error` may only mean that the entry goes on past the buffer's end: then
    more is read, or at the end of the file, the file was cut."""
    if not isinstance(error, json.JSONDecodeError):
        return True
    end = len(text.buf) if text.eof else len(text.buf) - _NEAR_END
    return error.pos >= end or error.msg.startswith("Unterminated string")


def _likely_end(buf: str, i: int, layout: list[bool]) -> re.Match | None:
    """The likely end of the list or object at `i` (`_LIKELY_END`), looked for with
    `_COMPACT_END` while `layout[0]` (the file still looks compact), which a file in
    another layout turns off for the rest of it."""
    kind = buf[i]
    if layout[0]:
        found = _COMPACT_END[kind].search(buf, i)
        if found is not None:
            return found
    found = _LIKELY_END[kind].search(buf, i)
    if found is not None:
        layout[0] = False
    return found


def _value(buf: str, i: int, read_enough: bool, layout: list[bool]) -> tuple[object, int]:
    """(the value at `i`, where it ends), exactly as `json.JSONDecoder.raw_decode` gives
    them; `read_enough`: reading more would not help (the buffer holds the rest of the
    file, or a chunk's worth after `i`); `layout`: `_likely_end`'s.

    With orjson installed, a list or object value is first cut at its likely end and
    decoded by orjson (3-4 times faster). The cut can only parse whole where it is the
    value's real end (a bracket closes its value at one place), and orjson refuses what
    the standard decoder reads differently (NaN, Infinity, numbers beyond a double, lone
    surrogates; integers beyond 64 bits are kept from it), so the value is the same;
    anything else goes to the standard decoder. A list or object with no likely end in a
    buffer that does not hold the rest of the file is most likely cut by the buffer's
    end: `_Incomplete` then has more read first, instead of the standard decoder reading
    (several times slower) as far as the cut.
    """
    guess = orjson is not None and i < len(buf) and buf[i] in _LIKELY_END
    found = _likely_end(buf, i, layout) if guess else None
    if guess and found is None and not read_enough:
        raise _Incomplete
    if found is not None:
        try:
            text = buf[i:found.end(1)].encode()
            if _LONG_INTEGER not in text.translate(_DIGITS_ONLY):
                return orjson.loads(text), found.end(1)
        except (UnicodeEncodeError, orjson.JSONDecodeError):
            pass
    return _DECODER.raw_decode(buf, i)


def _entry(buf: str, i: int, first: bool, read_enough: bool, layout: list[bool]
           ) -> tuple[str | None, object, int]:
    """The entry after position `i` (just after the `{` or a `,`): (key, value, position
    of the `,` or `}` after it); key None at the `}` of an empty object. `read_enough`
    and `layout`: as `_value`'s."""
    n = len(buf)
    i = _skip(buf, i)
    if i >= n:
        raise _Incomplete
    if first and buf[i] == "}":
        return None, None, i
    if buf[i] != '"':
        raise json.JSONDecodeError("Expecting property name enclosed in double quotes", buf, i)
    key, i = scanstring(buf, i + 1)
    i = _skip(buf, i)
    if i >= n:
        raise _Incomplete
    if buf[i] != ":":
        raise json.JSONDecodeError("Expecting ':' delimiter", buf, i)
    value, i = _value(buf, _skip(buf, i + 1), read_enough, layout)
    i = _skip(buf, i)
    if i >= n:  # also a number the buffer's end may have cut
        raise _Incomplete
    if buf[i] not in ",}":
        raise json.JSONDecodeError("Expecting ',' delimiter", buf, i)
    return key, value, i


def iter_object(path: str, chunk_chars: int = CHUNK_CHARS) -> Iterator[tuple[str, object]]:
    """Yields the (key, value) pairs of the JSON object in file `path`, in file order (a
    key given twice is yielded twice).

    Raises `NotAnObject` for JSON that is not an object, ValueError for text that is not
    JSON (`json.load`'s message; "ends in the middle" for a file cut short) and OSError
    for a file that cannot be read. Pairs before the error have been yielded by then.
    """
    with open(path, "rb") as f:
        text = _Text(f, chunk_chars)
        while not text.buf and not text.eof:
            text.more(0)
        if text.buf.startswith("\ufeff"):
            raise text.error("Unexpected UTF-8 BOM (decode using utf-8-sig)", 0)
        i = _skip(text.buf, 0)
        while i >= len(text.buf) and not text.eof:
            i -= text.more(i)
            i = _skip(text.buf, i)
        if i >= len(text.buf) or text.buf[i] != "{":
            _refuse_other(text, i)
        i += 1  # just after the "{" or a ","
        count, last = 0, None
        layout = [True]  # `_likely_end`'s: the file looks compact until it does not
        while True:
            try:
                # Bounded: after a read, a chunk's worth follows `i` (unless the file ends).
                entry = _entry(text.buf, i, count == 0,
                               text.eof or len(text.buf) - i >= text.chunk, layout)
            except (_Incomplete, json.JSONDecodeError) as e:
                if not _at_end(e, text):
                    raise text.error(e.msg, e.pos) from None
                if text.eof:
                    after = (f"after {count} complete entries, the last {last!r}" if count
                             else "before its first entry is complete")
                    raise ValueError(f"the file ends in the middle (at char "
                                     f"{text.dropped + len(text.buf)}, {after}): it looks "
                                     "cut short") from None
                i -= text.more(i)
                continue
            key, value, i = entry
            if key is None:
                break
            count, last = count + 1, key
            yield key, value
            if text.buf[i] == "}":
                break
            i += 1
        _expect_end(text, i + 1)


def _expect_end(text: _Text, i: int) -> None:
    """Only whitespace may follow the object (`json.load` says "Extra data" otherwise)."""
    while True:
        i = _skip(text.buf, i)
        if i < len(text.buf):
            raise text.error("Extra data", i)
        if text.eof:
            return
        i -= text.more(i)


def _refuse_other(text: _Text, i: int) -> None:
    """Raises for a file whose value is not an object: what it is, or why it is not JSON."""
    if i >= len(text.buf):
        raise text.error("Expecting value", i)
    name = _TYPE_OF_FIRST.get(text.buf[i])
    if name is None:  # a number, NaN or Infinity: short; read it to name its type
        while not text.eof:
            text.more(0)
        try:
            value, _ = _DECODER.raw_decode(text.buf, i)
        except json.JSONDecodeError as e:
            raise text.error(e.msg, e.pos) from None
        name = type(value).__name__
    raise NotAnObject(name)
