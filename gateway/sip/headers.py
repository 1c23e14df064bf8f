"""`Headers`: the ordered, multi-valued, case-insensitive header collection.

Names are normalised once, at insertion: compact forms become long forms
(RFC 3261 §7.3.3 and later RFCs) and well-known names get their usual
spelling, so lookups are one dict probe. Values are stored as received
(unfolded, trimmed); list-valued headers are split only when asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from gateway.sip.grammar import is_token, split_list

COMPACT_FORMS: dict[str, str] = {
    "i": "Call-ID",
    "m": "Contact",
    "f": "From",
    "t": "To",
    "v": "Via",
    "l": "Content-Length",
    "c": "Content-Type",
    "e": "Content-Encoding",
    "k": "Supported",
    "s": "Subject",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
    "u": "Allow-Events",
    "x": "Session-Expires",
    "y": "Identity",
    "a": "Accept-Contact",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
}

# Headers whose grammar is `#element`, so one field may carry several values.
LIST_HEADERS: frozenset[str] = frozenset(
    name.lower()
    for name in (
        "Via", "Contact", "Route", "Record-Route", "Path", "Service-Route",
        "Allow", "Supported", "Require", "Proxy-Require", "Unsupported",
        "Accept", "Accept-Encoding", "Accept-Language", "Allow-Events",
        "Content-Encoding", "Content-Language", "In-Reply-To", "Alert-Info",
        "Call-Info", "Error-Info", "Warning", "Reason", "Security-Client",
        "Security-Server", "Security-Verify", "P-Asserted-Identity",
        "P-Preferred-Identity", "Accept-Contact", "Reject-Contact",
        "Request-Disposition", "Privacy", "History-Info",
    )
)  # fmt: skip

_WELL_KNOWN = (
    "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
    "Allow-Events", "Authentication-Info", "Authorization", "Call-ID",
    "Call-Info", "Contact", "Content-Disposition", "Content-Encoding",
    "Content-Language", "Content-Length", "Content-Type", "CSeq", "Date",
    "Error-Info", "Event", "Expires", "From", "Identity", "In-Reply-To",
    "Max-Forwards", "Min-Expires", "MIME-Version", "Organization", "Path",
    "Priority", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require",
    "Reason", "Record-Route", "Refer-To", "Referred-By", "Reply-To", "Require",
    "Retry-After", "Route", "RSeq", "RAck", "Server", "Service-Route",
    "Session-Expires", "Subject", "Subscription-State", "Supported",
    "Timestamp", "To", "Unsupported", "User-Agent", "Via", "Warning",
    "WWW-Authenticate", "P-Asserted-Identity", "P-Preferred-Identity",
    "Privacy", "Min-SE", "Accept-Contact", "Reject-Contact",
    "Request-Disposition", "Flow-Timer", "History-Info",
)  # fmt: skip

_CANONICAL: dict[str, str] = {name.lower(): name for name in _WELL_KNOWN}
_CANONICAL.update(COMPACT_FORMS)


# Lookup keys for the spellings code usually passes, so get("Call-ID") skips .lower().
_KEYS: dict[str, str] = {}
for _lower, _name in _CANONICAL.items():
    _KEYS[_name] = _KEYS[_lower] = _name.lower()

# Exact spellings seen on the wire or passed by code -> (lower-case key, canonical
# name); every spelling here is a known token, so no name check is needed for it.
SPELLINGS: dict[str, tuple[str, str]] = {}
for _lower, _canonical in _CANONICAL.items():
    for _spelling in (_lower, _canonical, _lower.upper(), _lower.title()):
        SPELLINGS.setdefault(_spelling, (_canonical.lower(), _canonical))


def canonical_name(name: str) -> str:
    """Long, conventionally spelled form of a header name (unknown names unchanged)."""
    return _CANONICAL.get(name.lower(), name)


def _key(name: str) -> str:
    key = _KEYS.get(name)
    return key if key is not None else canonical_name(name).lower()


class Headers:
    """Ordered multi-map of header fields keyed case-insensitively."""

    __slots__ = ("_fields", "_index")

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        self._fields: list[tuple[str, str, str]] = []
        self._index: dict[str, list[int]] | None = None
        for name, value in fields:
            self.add(name, value)

    @classmethod
    def _trusted(
        cls, fields: list[tuple[str, str, str]], index: dict[str, list[int]] | None = None
    ) -> Headers:
        """Build from (key, name, value) triples already validated (by the parser, or
        copied from a parsed message); `index` is the parser's key -> positions map."""
        headers = cls.__new__(cls)
        headers._fields = fields
        headers._index = index
        return headers

    def _lookup(self) -> dict[str, list[int]]:
        index = self._index
        if index is None:
            index = {}
            for position, (key, _name, _value) in enumerate(self._fields):
                positions = index.get(key)
                if positions is None:
                    index[key] = [position]
                else:
                    positions.append(position)
            self._index = index
        return index

    @staticmethod
    def _checked(name: str, value: str) -> tuple[str, str, str]:
        """The (key, name, value) triple for a field given by code, validated."""
        known = SPELLINGS.get(name)
        if known is None:
            if not is_token(name):
                raise ValueError(f"invalid header name {name!r}")
            canonical = canonical_name(name)
            known = (canonical.lower(), canonical)
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name} value contains CR or LF")
        return (known[0], known[1], value.strip(" \t"))

    def add(self, name: str, value: str) -> None:
        """Append a field (after any existing fields of that name)."""
        field = self._checked(name, value)
        index = self._index
        if index is not None:
            positions = index.get(field[0])
            if positions is None:
                index[field[0]] = [len(self._fields)]
            else:
                positions.append(len(self._fields))
        self._fields.append(field)

    def set(self, name: str, value: str) -> None:
        """Replace all fields of `name` by one, at the first one's position."""
        field = self._checked(name, value)
        key = field[0]
        positions = self._lookup().get(key)
        if not positions:
            self.add(name, value)
            return
        first = positions[0]
        if len(positions) == 1:
            self._fields[first] = field  # the index stays valid
            return
        self._fields = [
            field if i == first else f
            for i, f in enumerate(self._fields)
            if i == first or f[0] != key
        ]
        self._index = None

    def remove(self, name: str) -> int:
        """Delete every field of `name`; returns how many were removed."""
        key = canonical_name(name).lower()
        before = len(self._fields)
        self._fields = [f for f in self._fields if f[0] != key]
        self._index = None
        return before - len(self._fields)

    def get(self, name: str) -> str | None:
        """First value: the first list element for list headers (top Via), else the field."""
        key = _KEYS.get(name)
        if key is None:
            key = canonical_name(name).lower()
        index = self._index
        positions = (index if index is not None else self._lookup()).get(key)
        if not positions:
            return None
        value = self._fields[positions[0]][2]
        if key in LIST_HEADERS:
            if "," not in value:
                return value if value else self._first_element(key)
            return split_list(value)[0]  # a comma list always has a first element
        return value

    def _first_element(self, key: str) -> str | None:
        for i in self._lookup()[key]:
            values = split_list(self._fields[i][2])
            if values:
                return values[0]
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value of `name` in order, comma lists split for list headers."""
        key = _key(name)
        index = self._index
        positions = (index if index is not None else self._lookup()).get(key)
        if not positions:
            return []
        fields = self._fields
        if key not in LIST_HEADERS:
            return [fields[i][2] for i in positions]
        values: list[str] = []
        for i in positions:
            values.extend(split_list(fields[i][2]))
        return values

    def count(self, name: str) -> int:
        """Number of header fields (lines) named `name`."""
        return len(self._lookup().get(_key(name), ()))

    def items(self) -> list[tuple[str, str]]:
        """(name, value) pairs in wire order, one per field."""
        return [(name, value) for _key, name, value in self._fields]

    def copy(self) -> Headers:
        """Independent copy (messages share nothing mutable by accident)."""
        return Headers._trusted(list(self._fields))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _key(name) in self._lookup()

    def __iter__(self) -> Iterator[str]:
        return (name for _key, name, _value in self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _n, v in self._fields] == [(k, v) for k, _n, v in other._fields]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"
