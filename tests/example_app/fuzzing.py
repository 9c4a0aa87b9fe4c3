"""Hostile requests for the example app, drawn by Hypothesis, and what every answer must be.

A request is drawn as plain data (``FuzzRequest``) and rendered only when it is sent:
the CSRF token of a session and a cookie signed with the app's key exist only once
the app does.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import hashlib
import html
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, unquote_plus, urlsplit

from flask.sessions import session_json_serializer
from hypothesis import strategies as st
from itsdangerous import URLSafeTimedSerializer
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header
from werkzeug.wrappers import Response

from example_app.demo import ACCOUNTS, password_for
from tests.uploads.helpers import (
    CSV,
    HTML,
    PHP,
    SHELL,
    SVG,
    TEXT,
    elf,
    gif,
    jpeg,
    ooxml,
    pdf,
    png,
    windows_exe,
    zip_archive,
)

from .helpers import HEALTH_TOKEN

MAX_CONTENT_LENGTH = 16 * 1024 * 1024
"""The example app's limit on a request body (its ``MAX_CONTENT_LENGTH``)."""

UPLOAD_MAX_SIZE = 10 * 1024 * 1024
"""The largest document the example app accepts (``DOCUMENT_UPLOADS``)."""

EMAILS = tuple(email for email, _, _ in ACCOUNTS)
PASSWORDS = tuple(password_for(email) for email in EMAILS)

ANONYMOUS = "anonymous"
"""No session cookie at all."""
VISITOR = "visitor"
"""A session that holds a CSRF token (the login page was shown) but no user."""
IDENTITIES = (ANONYMOUS, VISITOR, *EMAILS)

PROBLEM_JSON = "application/problem+json"


class Token(enum.Enum):
    """Stands, in a drawn body, for the session's CSRF token, known only at send time."""

    CSRF = "csrf"


CSRF = Token.CSRF

Piece = bytes | int | Token
"""A piece of a body: bytes, that many filler bytes (made as they are read), or the token."""


# -- Text ------------------------------------------------------------------------------------

# What a real server hands the app in a header: Latin-1, no line breaks or other controls.
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=60,
)
huge_text = st.integers(1_000, 200_000).flatmap(
    lambda size: st.sampled_from(["x", "é", "%", "0", "😀"]).map(lambda char: char * size)
)
hostile_text = st.sampled_from(
    [
        "",
        " ",
        "..",
        "../../../etc/passwd",
        "..\\..\\windows\\win.ini",
        "%00",
        "\x00",
        "%zz",
        "%ff%fe",
        "%c0%ae%c0%ae/",
        "'; DROP TABLE document; --",
        '" OR 1=1 --',
        "<script>alert(1)</script>",
        "{{7*7}}",
        "${jndi:ldap://x}",
        "\u202etxt.exe",
        "ﬁ",
        "\uff11\uff12\uff13",
        "١٢٣",
        "😀",
        "NaN",
        "-Infinity",
        "null",
        "true",
        "[]",
        "{}",
    ]
)
any_text = st.one_of(st.text(max_size=40), hostile_text, huge_text)


def _escape_url_delimiters(text: str) -> str:
    # A raw "?" or "#" would end the path; the query is drawn on its own.
    return text.replace("?", "%3F").replace("#", "%23")


url_text = st.one_of(
    any_text.map(_escape_url_delimiters),
    any_text.map(lambda text: quote(text, safe="")),
)

# -- Paths -----------------------------------------------------------------------------------

int_values = st.one_of(
    st.integers(0, 60),  # the ids documents and organizations really have
    st.sampled_from([2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**30]),
    st.integers(min_value=0),
    st.integers(0, 10**400),
).map(str) | st.just("9" * 5000)  # past what int() converts from text by default
int_garbage = st.sampled_from(
    [
        "-1",
        "+1",
        "1.5",
        "0x1f",
        "1e9",
        "01",
        "0" * 50 + "1",
        "١٢",
        "\uff11\uff12",
        "%31",
        " 1",
        "1 ",
    ]
)

SEGMENTS: Mapping[str, st.SearchStrategy[str]] = {
    "int": st.one_of(int_values, int_values, int_garbage, url_text),
    "path": st.one_of(
        st.sampled_from(
            [
                "../../etc/passwd",
                "..%2f..%2fetc%2fpasswd",
                "%2e%2e/%2e%2e/secret_key",
                "/etc/passwd",
                "a/../../b",
                "CON",
                "nul.txt",
                "x" * 300,
            ]
        ),
        url_text,
    ),
    "default": url_text,
}
"""Values for each URL converter; a rule with another converter is not fuzzed (a test says so)."""

_ARGUMENT = re.compile(r"<(?:(?P<converter>\w+)(?:\((?P<arguments>[^)]*)\))?:)?(?P<name>\w+)>")


class UnknownConverterError(LookupError):
    """A rule uses a URL converter ``SEGMENTS`` has no strategy for."""


def rule_paths(
    rule: str, segments: Mapping[str, st.SearchStrategy[str]] | None = None, *, mangle: bool = True
) -> st.SearchStrategy[str]:
    """Paths that match ``rule``, or nearly: each argument drawn for its converter."""
    segments = SEGMENTS if segments is None else segments
    parts: list[st.SearchStrategy[str]] = []
    end = 0
    for match in _ARGUMENT.finditer(rule):
        converter = match["converter"] or "default"
        if converter not in segments:
            raise UnknownConverterError(f"{rule}: no strategy for the converter {converter!r}")
        parts += [st.just(rule[end : match.start()]), segments[converter]]
        end = match.end()
    parts.append(st.just(rule[end:]))
    exact = st.tuples(*parts).map("".join)
    if not mangle:
        return exact
    return st.one_of(exact, exact, exact, st.tuples(exact, path_mangling).map(_mangle))


path_mangling = st.sampled_from(
    ["/", "//", "/..", "/../..", "/./", "%2f", "%00", ";jsessionid=1", "/%2e%2e", "~", "%"]
)


def _mangle(pair: tuple[str, str]) -> str:
    path, suffix = pair
    return path + suffix if not suffix.startswith("/.") else suffix + path


# -- Query strings ---------------------------------------------------------------------------

QUERY_KEYS = ("page", "per_page", "next", "history", "tracemalloc", "format", "q")
numbers = st.one_of(
    st.integers(-(10**30), 10**30),
    st.sampled_from([2**31, 2**63, -(2**63) - 1, 10**400]),
    st.floats(allow_nan=True),
).map(str) | st.just("9" * 5000)
redirect_targets = st.sampled_from(
    [
        "/documents",
        "//evil.test",
        "/\\evil.test",
        "///evil.test",
        "https://evil.test/",
        "javascript:alert(1)",
        "/%2f%2fevil.test",
        "/\t/evil.test",
        "/api/me",
    ]
)
query_values = st.one_of(numbers, redirect_targets, any_text)
query_pair = st.tuples(st.one_of(st.sampled_from(QUERY_KEYS), any_text), query_values)


_NOT_IN_REQUEST_LINE = re.compile(r"[\x00-\x20\x7f]")


def _render_query(pairs: Sequence[tuple[str, str]], encode: bool) -> str:
    if encode:
        return "&".join(f"{quote(key, safe='')}={quote(value, safe='')}" for key, value in pairs)
    # Raw, but as a server can hand it over: a space or a control character cannot be in
    # the request line (a newline would end it), so those arrive percent-encoded.
    raw = "&".join(f"{key}={value}" for key, value in pairs)
    return _NOT_IN_REQUEST_LINE.sub(lambda match: quote(match[0], safe=""), raw)


queries = st.one_of(
    st.just(""),
    st.builds(_render_query, st.lists(query_pair, max_size=6), st.booleans()),
    # The same key again and again, each time another way.
    st.builds(
        _render_query,
        st.tuples(st.sampled_from(QUERY_KEYS), st.lists(query_values, min_size=2, max_size=5)).map(
            lambda key_values: [(key_values[0], value) for value in key_values[1]]
        ),
        st.booleans(),
    ),
    st.sampled_from(["&&&", "=", "page", "page=", "==&==", "%", "page=%zz", "a=1;b=2"]),
)

# -- Headers ---------------------------------------------------------------------------------


def _basic(credentials: bytes) -> str:
    return "Basic " + base64.b64encode(credentials).decode()


demo_credentials = st.tuples(st.sampled_from(EMAILS), st.sampled_from(PASSWORDS)).map(
    lambda pair: f"{pair[0]}:{pair[1]}".encode()
)
authorizations = st.one_of(
    demo_credentials.map(_basic),
    st.binary(max_size=40).map(_basic),  # not UTF-8, no colon...
    st.sampled_from([b"\xff\xfe:\x80", b":", b"alice@acme.test:", b":alice-password"]).map(_basic),
    st.sampled_from(["Basic", "Basic ", "Basic !!!", "Basic =", "basic YTpi", "Digest a=b"]),
    st.sampled_from([f"Bearer {HEALTH_TOKEN}", "Bearer", "Bearer  ", f"bearer {HEALTH_TOKEN} "]),
    header_text.map(lambda text: f"Bearer {text}"),
    header_text,
)
accepts = st.one_of(
    st.sampled_from(
        [
            "application/json",
            PROBLEM_JSON,
            "text/html",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "*/*",
            "",
            "text/plain",
            "image/*",
            "text/html;q=0",
            "application/json;q=0.1, text/html;q=0.2",
            "*/*;q=abc",
            ";;;",
        ]
    ),
    header_text,
)
request_ids = st.one_of(
    st.from_regex(r"[A-Za-z0-9._:-]{1,128}", fullmatch=True),
    st.integers(129, 10_000).map(lambda size: "a" * size),
    header_text,
)
OTHER_HEADERS = (
    "User-Agent",
    "Range",
    "If-Modified-Since",
    "If-None-Match",
    "If-Range",
    "Origin",
    "Referer",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "Host",
    "Accept-Encoding",
    "Accept-Language",
    "Content-Encoding",
    "Expect",
    "X-HTTP-Method-Override",
)
RANGES = ("bytes=0-0", "bytes=-1", "bytes=999999999999-", "bytes=5-1", "bytes=0-1,2-3,4-5")
other_header_values = st.one_of(
    st.sampled_from(
        [
            *RANGES,
            "gzip",
            "100-continue",
            "DELETE",
            "*",
            "evil.test",
            "evil.test:99999",
            "[::1",
            "Thu, 01 Jan 1970 00:00:00 GMT",
            "Sat, 01 Jan 10000 00:00:00 GMT",
        ]
    ),
    header_text,
)


def _optional(
    name: str, values: st.SearchStrategy[str]
) -> st.SearchStrategy[list[tuple[str, str]]]:
    return st.one_of(st.just([]), values.map(lambda value: [(name, value)]))


header_sets = st.tuples(
    _optional("Accept", accepts),
    _optional("Authorization", authorizations),
    _optional("X-Request-ID", request_ids),
    st.lists(st.tuples(st.sampled_from(OTHER_HEADERS), other_header_values), max_size=3),
).map(lambda groups: tuple(header for group in groups for header in group))

# -- Cookies ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedSession:
    """A Flask session cookie signed at send time, with the app's key or with another."""

    contents: Mapping[str, Any]
    with_app_key: bool


def _session_values(keys: Sequence[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(
        st.sampled_from(keys),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=10),
            lambda children: (
                st.lists(children, max_size=3)
                | st.dictionaries(st.text(max_size=5), children, max_size=3)
            ),
            max_leaves=6,
        ),
        max_size=3,
    )


# What the app reads from its session (the user id, through Flask-Login, and the CSRF
# token) and Flask-Login's own keys, holding what the app never writes there.
odd_session_contents = st.one_of(
    st.fixed_dictionaries(
        {
            "_user_id": st.one_of(
                st.sampled_from(["1", "4", "999", "", "-1", "abc", "1.5", " 1", "1\x00", "01"]),
                st.sampled_from(["99999999999999999999999", "\u0663", "1" * 5000]),
                st.sampled_from([1, None, True, ["1"], {"id": 1}, 1.5]),
            )
        },
        optional={
            "_fresh": st.sampled_from([True, "yes", None, 0]),
            "_id": st.sampled_from(["0" * 128, "", 1]),
            "_csrf_token": st.sampled_from([1, None, "", ["x"], "é"]),
        },
    ),
    _session_values(["_user_id", "_csrf_token", "_fresh", "_id", "_remember", "x"]),
)
signed_sessions = st.one_of(
    # Signed with another key: whatever it holds, the app must not read it.
    st.builds(
        SignedSession,
        st.one_of(odd_session_contents, _session_values(["_flashes"])),
        st.just(False),
    ),
    # Signed with the app's key, as by an older release. Flask's own "_flashes" is left out:
    # Flask trusts what it wrote there, and malformed flashes break every page that shows
    # them (a case for RESILIENCE_SESSION_SCHEMA and a session validator).
    st.builds(SignedSession, odd_session_contents, st.just(True)),
)
raw_cookies = st.one_of(
    st.sampled_from(
        [
            "session=",
            "session=garbage",
            "session=a.b.c",
            "session=.eJyrVkpMSVOyUkpOzFWqBQAXRQPr.Z.x",
            'session="quoted"',
            "session",
            "remember_token=1|abc",
            "remember_token=",
            "remember_token=9999999999999999999999|" + "0" * 128,
            ";;;",
            "=",
            "a=b; a=c",
        ]
    ),
    header_text.map(lambda text: f"session={text}"),
    header_text,
)
cookie_sets = st.one_of(
    st.just(()),
    st.lists(
        st.one_of(raw_cookies, signed_sessions),
        min_size=1,
        max_size=3,
    ).map(tuple),
)


def signed_session_cookie(contents: Mapping[str, Any], secret_key: str) -> str:
    """``contents`` as Flask's default session interface signs a session."""
    serializer = URLSafeTimedSerializer(
        secret_key,
        salt="cookie-session",
        serializer=session_json_serializer,
        signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha1},
    )
    return f"session={serializer.dumps(dict(contents))}"


# -- Bodies ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Body:
    """A request body and what its headers claim about it.

    :param length: how ``Content-Length`` is sent: ``"true"``, ``"chunked"`` (no length,
        the stream ends the body), or a lie: ``"short"``, ``"long"``, ``"zero"``, ``"huge"``,
        ``"garbage"``, ``"negative"``.
    :param echo: the text of the body that the app may legitimately show back (every
        field but the passwords), so that a leak check does not mistake an echo for one.
    """

    kind: str
    content_type: str | None = None
    pieces: tuple[Piece, ...] = ()
    length: str = "true"
    echo: str = ""


NO_BODY = Body("none")


def _piece_size(piece: Piece) -> int:
    if isinstance(piece, Token):
        return 43  # secrets.token_urlsafe(32)
    return piece if isinstance(piece, int) else len(piece)


class GeneratedStream(io.RawIOBase):
    """A body made as it is read: large bodies cost no memory, only the time to read them.

    Seekable to its end, as Werkzeug's test client measures an input stream that way.
    """

    FILLER = b"A" * 65536

    def __init__(self, pieces: Sequence[bytes | int]) -> None:
        super().__init__()
        self._pieces = list(pieces)
        self._size = sum(piece if isinstance(piece, int) else len(piece) for piece in pieces)
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, min(self._size, base + offset))
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        chunk = self._chunk_at(self._position, len(view))
        view[: len(chunk)] = chunk
        self._position += len(chunk)
        return len(chunk)

    def _chunk_at(self, position: int, limit: int) -> bytes:
        start = 0
        for piece in self._pieces:
            size = piece if isinstance(piece, int) else len(piece)
            if position < start + size:
                offset = position - start
                if isinstance(piece, int):
                    return self.FILLER[: min(limit, size - offset, len(self.FILLER))]
                return piece[offset : offset + limit]
            start += size
        return b""


def render_pieces(pieces: Iterable[Piece], csrf_token: str) -> list[bytes | int]:
    return [csrf_token.encode() if isinstance(piece, Token) else piece for piece in pieces]


# Form fields the example app reads, and a few it does not.
FIELD_NAMES = ("csrf_token", "email", "password", "remember", "title", "file", "next")
field_names = st.one_of(st.sampled_from(FIELD_NAMES), st.sampled_from(FIELD_NAMES), any_text)
field_values: st.SearchStrategy[str | Token] = st.one_of(
    st.just(CSRF),
    st.sampled_from([*EMAILS, *PASSWORDS, "on", "off", "", "A" * 201]),
    header_text,
    any_text,
)
field_lists = st.lists(st.tuples(field_names, field_values), max_size=6)


def _form_pieces(fields: Sequence[tuple[str, str | Token]]) -> tuple[Piece, ...]:
    pieces: list[Piece] = []
    for index, (name, value) in enumerate(fields):
        pieces.append(("&" if index else "").encode() + quote(name, safe="").encode() + b"=")
        pieces.append(value if isinstance(value, Token) else quote(value, safe="").encode())
    return tuple(pieces)


def _echo(fields: Sequence[tuple[str, str | Token]]) -> str:
    return " ".join(
        f"{name} {value}" for name, value in fields if name != "password" and isinstance(value, str)
    )


FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
lying_content_types = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "text/plain",
            FORM,
            f"{FORM}; charset=utf-16",
            MULTIPART,
            f"{MULTIPART}; boundary=",
            f'{MULTIPART}; boundary="{"b" * 200}"',
            f"{MULTIPART}; boundary=nothere",
            "application/octet-stream",
            "image/png",
            "",
        ]
    ),
    header_text,
)
lengths = st.sampled_from(
    ["true"] * 6 + ["chunked", "short", "long", "zero", "huge", "garbage", "negative"]
)


def _claimed(content_type: str) -> st.SearchStrategy[str | None]:
    """Mostly the true content type, sometimes a lie, sometimes none."""
    return st.one_of(st.just(content_type), st.just(content_type), lying_content_types, st.none())


form_bodies = st.builds(
    lambda fields, content_type, length: Body(
        "form", content_type, _form_pieces(fields), length, _echo(fields)
    ),
    field_lists,
    _claimed(FORM),
    lengths,
)

json_leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from([*FIELD_NAMES, "id", "type"]) | st.text(), children)
    ),
    max_leaves=15,
)
json_texts = st.one_of(
    json_values.map(lambda value: json.dumps(value)),
    st.integers(10, 200_000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(10, 200_000).map(lambda depth: '{"a":' * depth + "1" + "}" * depth),
    json_values.map(lambda value: json.dumps(value)[:-1] or "{"),
    st.sampled_from(["", "{", "{'a': 1}", "NaN", "[1,]", '"\\ud800"', "\x00", "{}" * 1000]),
    any_text,
)
json_bodies = st.builds(
    lambda text, content_type, length: Body(
        "json", content_type, (text.encode("utf-8", "surrogatepass"),), length, text
    ),
    json_texts,
    _claimed("application/json"),
    lengths,
)
raw_bodies = st.builds(
    lambda data, content_type, length: Body(
        "raw", content_type, (data,), length, data.decode("latin-1")
    ),
    st.binary(max_size=600),
    st.one_of(lying_content_types, st.none()),
    lengths,
)

# -- Multipart ------------------------------------------------------------------------------

filenames = st.one_of(
    st.sampled_from(
        [
            "report.pdf",
            "notes.txt",
            "../../../etc/passwd",
            "..\\..\\boot.ini",
            "/etc/passwd",
            "C:\\Windows\\system.ini",
            "a\x00.pdf",
            "CON",
            "con.txt",
            "NUL.pdf",
            "AUX",
            "COM1.txt",
            "LPT1",
            "",
            ".",
            "..",
            ".htaccess",
            "x" * 300 + ".pdf",
            "ünïcødé.pdf",
            "文件.txt",
            "\u202efdp.exe",
            "a.pdf.exe",
            "shell.php",
            "REPORT.PDF",
            " .pdf",
            "a. ",
            "%2e%2e%2fx.pdf",
            'a"b.txt',
            "a\nb.txt",
            "a;b.txt",
        ]
    ),
    st.tuples(st.text(max_size=30), st.sampled_from(["", ".pdf", ".txt", ".png", ".exe"])).map(
        "".join
    ),
)
DOCUMENTS = (
    ("report.pdf", pdf()),
    ("photo.png", png()),
    ("photo.jpg", jpeg()),
    ("notes.txt", TEXT),
    ("figures.csv", CSV),
    ("letter.docx", ooxml("docx")),
    ("budget.xlsx", ooxml("xlsx")),
)
"""Files the example app accepts, under fitting names."""
REFUSED = (b"", HTML, PHP, SHELL, SVG, elf(), windows_exe(), zip_archive(), gif()[:5])
"""Contents it must refuse, whatever their names say."""

file_contents = st.one_of(
    st.sampled_from([content for _, content in DOCUMENTS]),
    st.sampled_from(REFUSED),
    st.binary(max_size=300),
)
# Mostly nothing: a few large files, one over the upload limit, one over the body limit.
paddings = st.one_of(
    st.just(0),
    st.just(0),
    st.just(0),
    st.sampled_from([600 * 1024, UPLOAD_MAX_SIZE + 1, MAX_CONTENT_LENGTH + 1]),
)
part_content_types = st.one_of(
    st.none(),
    st.sampled_from(["application/pdf", "text/plain", "image/png", "application/octet-stream"]),
    header_text,
)


@dataclass(frozen=True)
class Part:
    """One part of a multipart body: a field (``filename`` is ``None``) or a file."""

    name: str
    value: str | Token = ""
    filename: str | None = None
    content: bytes = b""
    padding: int = 0
    content_type: str | None = None


field_parts = st.builds(Part, field_names, field_values)
file_parts = st.builds(
    Part,
    st.one_of(st.just("file"), st.just("file"), field_names),
    st.just(""),
    st.one_of(filenames, filenames, st.none()),
    file_contents,
    paddings,
    part_content_types,
)
MULTIPART_DAMAGE = (
    "none",
    "none",
    "none",
    "truncated",
    "unclosed",
    "other boundary",
    "no boundary",
    "bare newlines",
    "no disposition",
    "garbage header",
    "many parts",
)


def _disposition(part: Part) -> bytes:
    disposition = f'form-data; name="{part.name}"'
    if part.filename is not None:
        disposition += f'; filename="{part.filename}"'
    return disposition.encode("utf-8", "surrogatepass")


def multipart_body(
    parts: Sequence[Part], damage: str, cut: float, claimed: str | None, length: str
) -> Body:
    boundary = "fuzzboundary7MA4YWxkTrZu0gW"
    newline = b"\n" if damage == "bare newlines" else b"\r\n"
    if damage == "many parts":
        parts = [*parts, *[Part(f"f{index}", "x") for index in range(1_100)]]
    pieces: list[Piece] = []
    for part in parts:
        pieces.append(b"--" + boundary.encode() + newline)
        if damage != "no disposition":
            pieces.append(b"Content-Disposition: " + _disposition(part) + newline)
        if part.content_type is not None:
            pieces.append(b"Content-Type: " + part.content_type.encode("latin-1") + newline)
        if damage == "garbage header":
            pieces.append(b"\xff\xfe not a header" + newline)
        pieces.append(newline)
        if part.filename is None:
            value = part.value
            pieces.append(value if isinstance(value, Token) else value.encode("utf-8"))
        else:
            pieces += [part.content, part.padding]
        pieces.append(newline)
    if damage != "unclosed":
        pieces.append(b"--" + boundary.encode() + b"--" + newline)
    if damage == "truncated":
        pieces = _truncate(pieces, int(sum(map(_piece_size, pieces)) * cut))

    if claimed == MULTIPART:  # the true type: say which boundary, or not, or another
        if damage == "other boundary":
            claimed = f"{MULTIPART}; boundary=another{boundary}"
        elif damage != "no boundary":
            claimed = f"{MULTIPART}; boundary={boundary}"
    echo = " ".join(
        f"{part.name} {part.filename or ''} {part.value if isinstance(part.value, str) else ''}"
        for part in parts
        if part.name != "password"
    )
    return Body("multipart", claimed, tuple(pieces), length, echo)


def _truncate(pieces: Sequence[Piece], size: int) -> list[Piece]:
    kept: list[Piece] = []
    for piece in pieces:
        piece_size = _piece_size(piece)
        if piece_size >= size:
            if isinstance(piece, bytes):
                kept.append(piece[:size])
            elif isinstance(piece, int):
                kept.append(size)
            break
        kept.append(piece)
        size -= piece_size
    return kept


multipart_bodies = st.builds(
    multipart_body,
    st.lists(st.one_of(field_parts, file_parts, file_parts), max_size=4),
    st.sampled_from(MULTIPART_DAMAGE),
    st.floats(0, 1),
    _claimed(MULTIPART),
    lengths,
)

bodies = st.one_of(
    st.just(NO_BODY), form_bodies, json_bodies, raw_bodies, multipart_bodies, multipart_bodies
)

# -- Plausible requests ------------------------------------------------------------------

PLAUSIBLE_SEGMENTS: Mapping[str, st.SearchStrategy[str]] = {
    **SEGMENTS,
    # Mostly the ids of the documents the tests upload first, and the organizations'.
    "int": st.one_of(
        st.integers(1, 4), st.integers(1, 60), st.sampled_from([2**31, 2**63, 10**30])
    ).map(str),
}
plausible_headers = st.tuples(
    _optional("Accept", st.sampled_from(["application/json", "text/html", "*/*", PROBLEM_JSON])),
    _optional("Authorization", demo_credentials.map(_basic)),
    _optional("X-Request-ID", st.from_regex(r"[A-Za-z0-9._:-]{1,40}", fullmatch=True)),
    _optional("Range", st.sampled_from(RANGES)),
).map(lambda groups: tuple(header for group in groups for header in group))
plausible_fields = st.tuples(
    st.just(("csrf_token", CSRF)),
    st.tuples(st.just("email"), st.one_of(st.sampled_from(EMAILS), any_text)),
    st.tuples(st.just("password"), st.one_of(st.sampled_from(PASSWORDS), any_text)),
    st.tuples(st.just("remember"), st.sampled_from(["on", "", "yes"])),
    st.tuples(st.just("title"), st.one_of(st.just(""), any_text)),
).map(list)
plausible_forms = st.builds(
    lambda fields: Body("form", FORM, _form_pieces(fields), "true", _echo(fields)),
    plausible_fields,
)
plausible_files = st.one_of(
    st.sampled_from(DOCUMENTS),
    st.sampled_from(DOCUMENTS),
    st.tuples(filenames, st.sampled_from([content for _, content in DOCUMENTS])),
    st.tuples(st.sampled_from([name for name, _ in DOCUMENTS]), file_contents),
)


def _plausible_upload(fields: list[tuple[str, str]], file: tuple[str, bytes], padding: int) -> Body:
    filename, content = file
    parts = [*(Part(name, value) for name, value in fields)]
    parts.append(Part("file", "", filename, content, padding))
    return multipart_body(parts, "none", 1.0, MULTIPART, "true")


plausible_uploads = st.builds(
    _plausible_upload,
    plausible_fields,
    plausible_files,
    paddings,
)


# -- Requests --------------------------------------------------------------------------------

# Methods no route of the example app serves, and one no server knows.
OTHER_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE", "FROB")


@dataclass(frozen=True)
class Route:
    """What the fuzzer needs of a URL rule, free of the app that made it."""

    endpoint: str
    rule: str
    methods: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.endpoint} {self.rule}"


@dataclass(frozen=True)
class FuzzRequest:
    method: str
    path: str
    query: str
    identity: str
    headers: tuple[tuple[str, str], ...] = ()
    cookies: tuple[str | SignedSession, ...] = ()
    body: Body = NO_BODY

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        return ", ".join(values) if values else None

    def echoable_text(self) -> str:
        """Everything the app may legitimately show back: never credentials or cookies."""
        shown = [unquote(self.path), unquote_plus(self.query), self.query, self.body.echo]
        shown += [value for name, value in self.headers if name not in {"Authorization"}]
        return "\n".join(shown)


def requests_for(route: Route) -> st.SearchStrategy[FuzzRequest]:
    """Requests aimed at ``route``: plausible ones with a hostile detail, and hostile ones."""
    return st.one_of(plausible_requests(route), hostile_requests(route))


def _main_methods(route: Route) -> tuple[str, ...]:
    # HEAD and OPTIONS come with every rule; the view serves the others.
    return tuple(method for method in route.methods if method not in {"HEAD", "OPTIONS"}) or (
        route.methods
    )


def plausible_requests(route: Route) -> st.SearchStrategy[FuzzRequest]:
    """What a client of the app would send, so that the fuzzing reaches the views.

    Signed in as a demo account, through the session or HTTP Basic, with a body its
    forms or the API would take (all fields at once: each view reads its own) and a
    hostile detail or two: huge ids, odd query values, file names and contents.
    """
    methods = st.sampled_from(_main_methods(route))
    return st.builds(
        FuzzRequest,
        method=methods,
        path=rule_paths(route.rule, PLAUSIBLE_SEGMENTS, mangle=False),
        query=queries,
        identity=st.sampled_from([*EMAILS, VISITOR]),
        headers=plausible_headers,
        body=methods.flatmap(
            lambda method: (
                st.one_of(plausible_forms, plausible_uploads)
                if method == "POST"
                else st.just(NO_BODY)
            )
        ),
    )


def hostile_requests(route: Route) -> st.SearchStrategy[FuzzRequest]:
    """Anything, mostly with the route's own methods."""
    methods = st.one_of(
        st.sampled_from(_main_methods(route)),
        st.sampled_from(route.methods),
        st.sampled_from(OTHER_METHODS),
    )
    return st.builds(
        FuzzRequest,
        method=methods,
        path=rule_paths(route.rule),
        query=queries,
        identity=st.sampled_from(IDENTITIES),
        headers=header_sets,
        cookies=cookie_sets,
        body=bodies,
    )


@dataclass(frozen=True)
class Session:
    """A client's session as a cookie to send, and the CSRF token its forms carry."""

    cookie: str | None = None
    csrf_token: str = ""


@dataclass
class Rendered:
    """What the WSGI environ gets for a request: its body stream and overrides."""

    stream: GeneratedStream | None
    environ: dict[str, Any] = field(default_factory=dict)


def render(request: FuzzRequest, session: Session, secret_key: str) -> Rendered:
    environ: dict[str, Any] = {}
    cookies = []
    for cookie in request.cookies:
        if isinstance(cookie, SignedSession):
            key = secret_key if cookie.with_app_key else "not the app's key"
            cookies.append(signed_session_cookie(cookie.contents, key))
        else:
            cookies.append(cookie)
    # Last: of two cookies with one name the app reads the first, the drawn one.
    if session.cookie is not None:
        cookies.append(session.cookie)
    if cookies:
        environ["HTTP_COOKIE"] = "; ".join(cookies)
    body = request.body
    if body.kind == "none":
        return Rendered(None, environ)
    stream = GeneratedStream(render_pieces(body.pieces, session.csrf_token))
    size = stream.seek(0, io.SEEK_END)
    stream.seek(0)
    if body.content_type is not None:
        environ["CONTENT_TYPE"] = body.content_type
    environ.update(_claimed_length(body.length, size))
    return Rendered(stream, environ)


def _claimed_length(length: str, size: int) -> dict[str, Any]:
    if length == "chunked":
        return {
            "CONTENT_LENGTH": "",
            "HTTP_TRANSFER_ENCODING": "chunked",
            "wsgi.input_terminated": True,
        }
    claimed = {
        "true": str(size),
        "short": str(max(0, size // 2)),
        "long": str(size + 100),
        "zero": "0",
        "huge": str(2**63),
        "garbage": "12abc",
        "negative": "-1",
    }[length]
    return {"CONTENT_LENGTH": claimed}


# -- What every answer must be ---------------------------------------------------------------

CRASH_MARKERS = ("Traceback (most recent call last)", 'File "')
SQL_MARKERS = ("SELECT ", "INSERT INTO")
DRIVER_MARKERS = ("sqlalchemy", "psycopg", "sqlite3")
"""Checked without regard to case: ``SQLAlchemy`` or ``sqlite3.OperationalError`` alike."""


def forbidden_markers(secret_key: str) -> tuple[str, ...]:
    return (*CRASH_MARKERS, secret_key, HEALTH_TOKEN, *PASSWORDS, *SQL_MARKERS)


def readable_texts(response: Response) -> str:
    """The body as a reader of it would see it: raw, HTML-unescaped and JSON-decoded."""
    raw = response.get_data().decode("utf-8", "replace")
    texts = [raw, html.unescape(raw)]
    with contextlib.suppress(ValueError):
        texts += list(_strings_in(json.loads(raw)))
    return "\n".join(texts)


def _strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings_in(item)


def leaks(response: Response, request: FuzzRequest, secret_key: str) -> list[str]:
    """The forbidden texts in the answer that the request did not bring itself."""
    body = readable_texts(response)
    sent = request.echoable_text()
    found = [
        marker for marker in forbidden_markers(secret_key) if marker in body and marker not in sent
    ]
    found += [
        marker for marker in DRIVER_MARKERS if marker in body.lower() and marker not in sent.lower()
    ]
    return found


def asked_for_html(request: FuzzRequest) -> bool:
    """Whether the client prefers HTML to JSON, by the rule the app itself follows."""
    accept = parse_accept_header(request.header("Accept"), MIMEAccept)
    return accept.best_match([PROBLEM_JSON, "application/json", "text/html"]) == "text/html"


def problem_errors(response: Response, request: FuzzRequest) -> list[str]:
    """What is wrong with an error answer: it must be a problem document, or a page for browsers."""
    if response.mimetype == "text/html":
        return (
            []
            if asked_for_html(request)
            else ["an HTML error page for a client that did not ask for HTML"]
        )
    if response.mimetype != PROBLEM_JSON:
        return [f"an error answered as {response.content_type!r}, not {PROBLEM_JSON}"]
    if request.method == "HEAD":
        return []  # no body to check
    try:
        problem = json.loads(response.get_data())
    except ValueError:
        return ["a problem document that is not JSON"]
    if not isinstance(problem, dict):
        return ["a problem document that is not a JSON object"]
    errors = []
    if problem.get("status") != response.status_code:
        errors.append(f"status member {problem.get('status')!r} != {response.status_code}")
    if not isinstance(problem.get("title"), str):
        errors.append(f"title {problem.get('title')!r} is not a string")
    kind = problem.get("type")
    if not isinstance(kind, str) or (kind != "about:blank" and not urlsplit(kind).scheme):
        errors.append(f"type {kind!r} is neither a URI nor about:blank")
    return errors
