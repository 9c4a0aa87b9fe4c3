"""Hostile and malformed uploads, each with the answer it must get, over HTTP.

Every file is built here from real headers; libmagic is the real one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.uploads.helpers import (
    CSV,
    HTML,
    PHP,
    SHELL,
    SVG,
    SVG_PROLOG,
    TEXT,
    elf,
    jpeg,
    multipart,
    ooxml,
    png,
    post,
    windows_exe,
    zip_archive,
)

ACCEPTED = 201


@dataclass(frozen=True)
class Case:
    id: str
    filename: str
    content: bytes
    status: int
    code: str | None = None
    route: str = "/api/images"
    content_type: str = "application/octet-stream"
    safe_name: str | None = None
    """For accepted files: the expected ``safe_name`` (``*`` where it is generated)."""


CORPUS = [
    Case("posix traversal", "../../etc/passwd", b"root:x:0:0::/root:/bin/sh\n", 415,
         "extension_not_allowed"),
    Case("windows traversal", "..\\..\\windows\\win.ini", b"[fonts]\r\n", 415,
         "extension_not_allowed"),
    Case("double extension", "shell.php.jpg", jpeg(), 415, "dangerous_extension"),
    Case("NUL byte", "shell.php\x00.jpg", jpeg(), 400, "unsafe_filename"),
    Case("percent-encoded NUL", "shell.php%00.jpg", jpeg(), 400, "unsafe_filename"),
    Case("IIS semicolon, php last", "image.jpg;.php", PHP, 415, "dangerous_extension"),
    Case("IIS semicolon, jpg last", "x.asp;.jpg", jpeg(), 415, "dangerous_extension"),
    Case("mixed case extension", "shell.PhP", PHP, 415, "dangerous_extension"),
    Case("fullwidth name", "ｓｈｅｌｌ．ｐｈｐ", PHP, 415, "dangerous_extension"),  # noqa: RUF001
    Case("CJK name", "文件.png", png(), ACCEPTED, safe_name="upload-*.png"),
    Case(".htaccess", ".htaccess", b"AddType application/x-httpd-php .jpg\n", 415,
         "dangerous_extension"),
    Case("Windows device name", "CON.png", png(), ACCEPTED, safe_name="_CON.png"),
    Case("300-character name", "a" * 296 + ".png", png(), ACCEPTED,
         safe_name="a" * 124 + ".png"),
    Case("leading hyphen", "-rf.png", png(), ACCEPTED, safe_name="rf.png"),
    Case("name of dots", "..", png(), 415, "extension_not_allowed"),
    Case("right-to-left override", "invoice\u202egnp.exe", png(), 400, "unsafe_filename"),
    Case("HTML sent as image/png", "image.png", HTML, 415, "active_content",
         content_type="image/png"),
    Case("PNG header, PHP after", "photo.png", png() + PHP, 415, "active_content"),
    Case("JPEG with script in a comment", "photo.jpg", jpeg(b"<script>alert(1)</script>"),
         415, "active_content"),
    Case("SVG with script, named .png", "logo.png", SVG, 415, "active_content"),
    Case("SVG with XML prolog, named .png", "logo.png", SVG_PROLOG, 415, "active_content"),
    Case("SVG named .svg", "logo.svg", SVG, 415, "dangerous_extension"),
    Case("HTML named .jpg", "photo.jpg", HTML, 415, "active_content"),
    Case("PHP named .jpg", "avatar.jpg", PHP, 415, "active_content"),
    Case("ELF binary named .jpg", "photo.jpg", elf(), 415, "active_content"),
    Case("ZIP named .jpg", "photo.jpg", zip_archive(), 415, "type_not_allowed"),
    Case("PNG named .jpg", "photo.jpg", png(), 415, "content_mismatch"),
    Case("zero-byte file", "empty.png", b"", 400, "empty"),
    Case("empty file name, with content", "", png(), 400, "missing_filename"),
    Case("too large for the policy", "big.png", png() + bytes(1024 * 1024), 413, "too_large"),
    Case("a plain PNG", "photo.png", png(), ACCEPTED, safe_name="photo.png"),
    Case("a DOCX", "report.docx", ooxml("docx"), ACCEPTED, route="/api/documents",
         safe_name="report.docx"),
    Case("a ZIP named .docx", "report.docx", zip_archive(), 415, "type_not_allowed",
         route="/api/documents"),
    Case("an XLSX named .docx", "report.docx", ooxml("xlsx"), 415, "type_not_allowed",
         route="/api/documents"),
    Case("Windows executable named .pdf", "invoice.pdf", windows_exe(), 415, "active_content",
         route="/api/documents"),
    Case("shell script named .txt", "notes.txt", SHELL, 415, "active_content",
         route="/api/notes"),
    Case("PHP opener in a text file", "notes.txt", TEXT + b"<?= `id` ?>\n", 415,
         "active_content", route="/api/notes"),
    Case("a CSV file", "cities.csv", CSV, ACCEPTED, route="/api/notes", safe_name="cities.csv"),
]  # fmt: skip


def assert_problem(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body: dict[str, Any] = response.get_json()
    assert body["status"] == status
    assert {"type", "title", "detail", "instance", "request_id"} <= body.keys()
    if code is not None:
        assert [error["code"] for error in body["errors"]] == [code]
    return body


@pytest.mark.parametrize("case", CORPUS, ids=[case.id for case in CORPUS])
def test_corpus(client: FlaskClient, app: Flask, tmp_path: Path, case: Case) -> None:
    body = multipart([("file", case.filename, case.content)], case.content_type)
    response = post(client, case.route, body)
    if case.status != ACCEPTED:
        problem = assert_problem(response, case.status, case.code)
        assert problem["errors"][0]["field"] == "file"
        assert not (tmp_path / "uploads").exists() or not any((tmp_path / "uploads").iterdir())
        return

    assert response.status_code == ACCEPTED, response.get_data(as_text=True)
    [stored] = [Path(path) for path in response.get_json()["stored"]]
    folder = (tmp_path / "uploads").resolve()
    assert stored.parent == folder
    assert stored.read_bytes() == case.content
    assert case.filename not in stored.name  # the storage name is generated
    assert stored.suffix == Path(case.safe_name or "").suffix


@pytest.mark.parametrize("case", [c for c in CORPUS if c.safe_name], ids=lambda c: c.id)
@pytest.mark.usefixtures("resilience")
def test_corpus_safe_names(app: Flask, case: Case) -> None:
    from flask_resilience.uploads import check_upload
    from tests.uploads.helpers import upload

    route_categories = {"/api/images": "images", "/api/documents": "documents"}
    with app.app_context():
        check = check_upload(
            upload(case.content, case.filename),
            allowed_categories=[route_categories.get(case.route, "text")],
        )
    assert check.info is not None
    assert case.safe_name is not None
    prefix, _, suffix = case.safe_name.partition("*")
    assert check.info.safe_name.startswith(prefix)
    assert check.info.safe_name.endswith(suffix)
    assert len(check.info.safe_name) <= 128


def test_body_over_the_app_limit_is_413_before_any_check(client: FlaskClient) -> None:
    body = multipart([("file", "huge.png", png() + bytes(5 * 1024 * 1024))])
    assert_problem(post(client, "/api/images", body), 413)


def test_1001_form_parts_are_413(client: FlaskClient) -> None:
    parts = [(f"field{index}", None, b"x") for index in range(1000)]
    body = multipart([*parts, ("file", "photo.png", png())])
    assert_problem(post(client, "/api/images", body), 413)


# Werkzeug's parser drops, unclosed, the spool file of a part it could not finish.
_WERKZEUG_LEAKS_ITS_SPOOL = pytest.mark.filterwarnings(
    "ignore::pytest.PytestUnraisableExceptionWarning"
)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            multipart([("file", "photo.png", png())])[:-30],  # cut short: no closing boundary
            marks=_WERKZEUG_LEAKS_ITS_SPOOL,
            id="truncated",
        ),
        pytest.param(b"this is not a multipart body at all", id="garbage"),
        pytest.param(
            multipart([("file", "photo.png", png())]).replace(b"resilience-test-boundary", b"x"),
            id="wrong boundary",
        ),
    ],
)
def test_malformed_multipart_is_400_not_an_empty_success(client: FlaskClient, body: bytes) -> None:
    problem = assert_problem(post(client, "/api/optional", body), 400, "malformed")
    assert problem["errors"][0]["field"] is None


def test_several_files_in_a_field_that_takes_one(client: FlaskClient) -> None:
    body = multipart([("file", "a.pdf", b"%PDF-1.4\n"), ("file", "b.pdf", b"%PDF-1.4\n")])
    assert_problem(post(client, "/api/documents", body), 400, "too_many_files")


def test_several_files_in_one_field_are_each_checked(client: FlaskClient, tmp_path: Path) -> None:
    body = multipart(
        [("photos", "a.png", png()), ("photos", "b.jpg", jpeg()), ("photos", "c.gif", png())]
    )
    problem = assert_problem(post(client, "/api/gallery", body), 415, "content_mismatch")
    assert problem["errors"][0]["filename"] == "c.gif"
    assert problem["detail"] == problem["errors"][0]["detail"]

    body = multipart([("photos", "a.png", png()), ("photos", "b.jpg", jpeg())])
    response = post(client, "/api/gallery", body)
    assert response.status_code == ACCEPTED
    assert len(response.get_json()["stored"]) == 2


def test_errors_name_every_refused_file_and_the_worst_status_wins(client: FlaskClient) -> None:
    body = multipart(
        [
            ("photos", "empty.png", b""),
            ("photos", "page.png", HTML),
            ("photos", "big.png", png() + bytes(1024 * 1024)),
            ("photos", "fine.png", png()),
        ]
    )
    problem = assert_problem(post(client, "/api/gallery", body), 413)
    assert [(e["filename"], e["code"]) for e in problem["errors"]] == [
        ("empty.png", "empty"),
        ("page.png", "active_content"),
        ("big.png", "too_large"),
    ]
    assert problem["detail"] == "3 uploads were refused."

    body = multipart([("photos", "empty.png", b""), ("photos", "page.png", HTML)])
    assert assert_problem(post(client, "/api/gallery", body), 415)["errors"][1]["filename"] == (
        "page.png"
    )
