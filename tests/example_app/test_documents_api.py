"""The documents API: listing, upload, metadata, download, and tenant isolation."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.http import parse_options_header

from example_app.extensions import db
from example_app.models import Document
from tests.uploads.helpers import CSV, HTML, MULTIPART, multipart, ooxml, pdf, png

from .helpers import basic_auth, on_both_backends

ALICE = basic_auth("alice@acme.test")
BOB = basic_auth("bob@acme.test")
CAROL = basic_auth("carol@acme.test")
DAVE = basic_auth("dave@globex.test")


def upload(
    client: FlaskClient,
    headers: dict[str, str],
    content: bytes = b"quarterly numbers\n",
    filename: str = "report.txt",
    **fields: str,
) -> Any:
    return client.post(
        "/api/documents",
        headers=headers,
        data={"file": (io.BytesIO(content), filename), **fields},
        content_type="multipart/form-data",
    )


def stored_files(instance_path: Path) -> list[Path]:
    return sorted(p for p in (instance_path / "uploads").rglob("*") if p.is_file())


def download_name(response: Any) -> str | None:
    disposition, options = parse_options_header(response.headers["Content-Disposition"])
    assert disposition == "attachment"
    return options.get("filename")


def document_count(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Document)) or 0


@on_both_backends
def test_upload_writes_every_byte(client: FlaskClient, instance_path: Path) -> None:
    # A real PDF header, then more than Werkzeug keeps in memory.
    content = pdf() + os.urandom(300_000)

    response = upload(client, BOB, content, "Q3 figures.PDF", title="Q3 figures")

    assert response.status_code == 201
    document = response.get_json()
    assert response.headers["Location"] == document["url"] == f"/api/documents/{document['id']}"
    assert document["title"] == "Q3 figures"
    assert document["original_filename"] == "Q3_figures.pdf"  # sanitized
    assert document["content_type"] == "application/pdf"
    assert document["size"] == len(content)
    assert document["owner"]["email"] == "bob@acme.test"

    [stored] = stored_files(instance_path)
    assert stored.read_bytes() == content
    assert stored.parent.name == str(document["organization_id"])
    assert re.fullmatch(r"[0-9a-f]{32}\.pdf", stored.name)

    with client.get(document["download_url"], headers=ALICE) as download:
        assert download.status_code == 200
        assert download.data == content
        assert download.mimetype == "application/pdf"
        assert download_name(download) == "Q3_figures.pdf"
        assert download.headers["X-Content-Type-Options"] == "nosniff"


def test_upload_never_uses_the_client_file_name(client: FlaskClient, instance_path: Path) -> None:
    response = upload(client, ALICE, filename="../../secret_key.txt")

    assert response.status_code == 201
    assert response.get_json()["original_filename"] == "secret_key.txt"
    assert response.get_json()["title"] == "secret_key"
    assert response.get_json()["content_type"] == "text/plain"
    [stored] = stored_files(instance_path)
    assert re.fullmatch(r"[0-9a-f]{32}\.txt", stored.name)


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("report.txt", "report.txt"),
        ("../../etc/passwd.txt", "passwd.txt"),
        ("  spaced name.TXT ", "spaced_name.txt"),
    ],
)
def test_upload_keeps_a_safe_base_name(client: FlaskClient, sent: str, kept: str) -> None:
    response = upload(client, ALICE, filename=sent)

    assert response.status_code == 201
    assert response.get_json()["original_filename"] == kept
    with client.get(response.get_json()["download_url"], headers=ALICE) as download:
        assert download_name(download) == kept


@pytest.mark.parametrize(
    ("filename", "content", "detected"),
    [
        ("diagram.png", png(), "image/png"),
        ("contacts.csv", CSV, "text/csv"),
        (
            "proposal.docx",
            ooxml("docx"),
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        (
            "roadmap.pptx",
            ooxml("pptx"),
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        ),
    ],
)
def test_upload_records_the_detected_type(
    client: FlaskClient, filename: str, content: bytes, detected: str
) -> None:
    # The client's Content-Type is a claim; the recorded type comes from the bytes.
    response = client.post(
        "/api/documents",
        headers=BOB,
        data={"file": (io.BytesIO(content), filename, "text/html")},
        content_type="multipart/form-data",
    )

    assert response.status_code == 201
    assert response.get_json()["content_type"] == detected
    assert response.get_json()["size"] == len(content)
    with client.get(response.get_json()["download_url"], headers=BOB) as download:
        assert download.mimetype == detected
        assert download.data == content


@on_both_backends
def test_html_disguised_as_pdf_is_refused(
    app: Flask, client: FlaskClient, instance_path: Path
) -> None:
    response = upload(client, ALICE, HTML, "invoice.pdf")

    assert response.status_code == 415
    assert response.content_type == "application/problem+json"
    [error] = response.get_json()["errors"]
    assert error["field"] == "file"
    assert error["filename"] == "invoice.pdf"
    assert error["code"] == "active_content"
    assert response.get_json()["detail"] == error["detail"]
    assert stored_files(instance_path) == []
    assert document_count(app) == 0


@pytest.mark.parametrize(
    ("filename", "content", "code"),
    [
        ("report.pdf", b"quarterly numbers\n", "content_mismatch"),
        ("shell.php.pdf", pdf(), "dangerous_extension"),
        ("setup.exe", b"MZ" + bytes(100), "dangerous_extension"),
        ("secret_key", b"quarterly numbers\n", "extension_not_allowed"),
        ("backup.zip", ooxml("docx"), "extension_not_allowed"),
    ],
)
def test_upload_refuses_what_the_policy_does_not_allow(
    app: Flask, client: FlaskClient, instance_path: Path, filename: str, content: bytes, code: str
) -> None:
    response = upload(client, ALICE, content, filename)

    assert response.status_code == 415
    assert [error["code"] for error in response.get_json()["errors"]] == [code]
    assert stored_files(instance_path) == []
    assert document_count(app) == 0


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        ({}, "Send a file in the 'file' field."),
        ({"file": (io.BytesIO(b""), "empty.txt")}, "The file is empty."),
        (
            {"file": [(io.BytesIO(CSV), "a.csv"), (io.BytesIO(CSV), "b.csv")]},
            "At most 1 file(s) may be sent as 'file'.",
        ),
        (
            {"file": (io.BytesIO(b"notes\n"), "a.txt"), "title": "t" * 201},
            "The title is longer than 200 characters.",
        ),
    ],
)
def test_upload_rejects_unusable_files(
    client: FlaskClient, instance_path: Path, data: dict[str, Any], detail: str
) -> None:
    response = client.post(
        "/api/documents", headers=ALICE, data=data, content_type="multipart/form-data"
    )

    assert response.status_code == 400
    assert response.content_type == "application/problem+json"
    assert response.get_json()["detail"] == detail
    assert stored_files(instance_path) == []


def test_upload_too_large_is_refused(app: Flask, client: FlaskClient, instance_path: Path) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 1024
    response = upload(client, ALICE, b"x" * 2048)
    assert response.status_code == 413
    assert stored_files(instance_path) == []


def test_upload_over_the_policy_size_is_refused(
    app: Flask, client: FlaskClient, instance_path: Path
) -> None:
    # Within MAX_CONTENT_LENGTH (16 MB), over the documents policy (10 MB). Sent as
    # bytes: the test client would spool a dict body this large to a file it never closes.
    body = multipart([("file", "big.txt", b"a" * (10 * 1024 * 1024 + 1))])
    response = client.post("/api/documents", headers=ALICE, data=body, content_type=MULTIPART)

    assert response.status_code == 413
    assert response.content_type == "application/problem+json"
    assert [error["code"] for error in response.get_json()["errors"]] == ["too_large"]
    assert stored_files(instance_path) == []
    assert document_count(app) == 0


@on_both_backends
@pytest.mark.parametrize(
    ("content", "filename"),
    [(b"quarterly numbers\n", "report.txt"), (HTML, "invoice.pdf")],
    ids=["good-file", "html-as-pdf"],
)
def test_viewer_cannot_upload(
    app: Flask, client: FlaskClient, instance_path: Path, content: bytes, filename: str
) -> None:
    # The permission is checked first: a viewer's bad file is a 403 too, not a 415.
    response = upload(client, CAROL, content, filename)

    assert response.status_code == 403
    assert response.content_type == "application/problem+json"
    assert response.get_json()["reason"] == "permission"
    assert response.get_json()["detail"] == "You do not have the permission this needs."
    assert "errors" not in response.get_json()
    assert stored_files(instance_path) == []
    assert document_count(app) == 0


def test_failed_insert_leaves_no_file(app: Flask, client: FlaskClient, instance_path: Path) -> None:
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answer as in production
    with app.app_context():
        # Every INSERT now fails in the database.
        db.metadata.tables[Document.__tablename__].drop(db.engine)

    response = upload(client, ALICE)

    # A missing table is a bug, not an outage: 500, and nothing is left on disk.
    assert response.status_code == 500
    assert response.content_type == "application/problem+json"
    assert stored_files(instance_path) == []


@on_both_backends
def test_list_is_paginated_and_scoped_to_the_organization(client: FlaskClient) -> None:
    acme_ids = [upload(client, ALICE, filename=f"a{n}.txt").get_json()["id"] for n in range(5)]
    globex_id = upload(client, DAVE, filename="g.txt").get_json()["id"]

    first = client.get("/api/documents?per_page=2", headers=BOB).get_json()
    assert (first["page"], first["per_page"], first["pages"], first["total"]) == (1, 2, 3, 5)
    assert first["prev"] is None
    assert first["next"] == "/api/documents?page=2&per_page=2"
    last = client.get("/api/documents?page=3&per_page=2", headers=BOB).get_json()
    assert last["next"] is None

    seen = [
        item["id"]
        for number in (1, 2, 3)
        for item in client.get(f"/api/documents?page={number}&per_page=2", headers=BOB).get_json()[
            "items"
        ]
    ]
    assert seen == list(reversed(acme_ids))  # newest first

    globex = client.get("/api/documents", headers=DAVE).get_json()
    assert [item["id"] for item in globex["items"]] == [globex_id]


@on_both_backends
def test_document_metadata(client: FlaskClient) -> None:
    created = upload(client, BOB, CSV, "notes.csv").get_json()

    response = client.get(f"/api/documents/{created['id']}", headers=CAROL)

    assert response.status_code == 200
    assert response.get_json() == created
    assert response.get_json()["content_type"] == "text/csv"
    assert response.get_json()["created_at"].endswith("+00:00")


@on_both_backends
def test_other_organizations_documents_look_missing(client: FlaskClient) -> None:
    acme = upload(client, ALICE, b"acme only\n").get_json()

    for path in (acme["url"], acme["download_url"]):
        response = client.get(path, headers=DAVE)
        assert response.status_code == 404
        assert b"acme only" not in response.data
    assert client.get("/api/documents", headers=DAVE).get_json()["total"] == 0
    with client.get(acme["download_url"], headers=CAROL) as download:
        assert download.data == b"acme only\n"


def test_missing_document_and_missing_file(client: FlaskClient, instance_path: Path) -> None:
    assert client.get("/api/documents/999", headers=ALICE).status_code == 404

    document = upload(client, ALICE).get_json()
    for path in stored_files(instance_path):
        path.unlink()
    assert client.get(document["download_url"], headers=ALICE).status_code == 404


@on_both_backends
@pytest.mark.parametrize("doc_id", [2**31, 2**63, 10**30])
def test_ids_no_row_can_have_are_missing(client: FlaskClient, doc_id: int) -> None:
    # The databases refuse such a parameter (PostgreSQL past 32 bits, SQLite past 64).
    for path in (f"/api/documents/{doc_id}", f"/api/documents/{doc_id}/download"):
        response = client.get(path, headers=ALICE)
        assert response.status_code == 404
        assert response.get_json()["detail"] == f"There is no document {doc_id}."


@on_both_backends
@pytest.mark.parametrize("page", [2**31, 2**63, 10**30])
def test_a_page_far_past_the_last_is_empty(client: FlaskClient, page: int) -> None:
    upload(client, ALICE)

    response = client.get(f"/api/documents?page={page}&per_page=100", headers=ALICE)

    assert response.status_code == 200
    assert (response.get_json()["items"], response.get_json()["total"]) == ([], 1)


@on_both_backends
def test_organization_documents(client: FlaskClient) -> None:
    document = upload(client, ALICE).get_json()
    me = client.get("/api/me", headers=CAROL).get_json()
    dave = client.get("/api/me", headers=DAVE).get_json()

    own = client.get(f"/api/orgs/{me['organization']['id']}/documents", headers=CAROL)
    assert own.status_code == 200
    assert [item["id"] for item in own.get_json()["items"]] == [document["id"]]

    for org_id in (me["organization"]["id"], 12345):
        response = client.get(f"/api/orgs/{org_id}/documents", headers=DAVE)
        assert response.status_code == 403
        assert response.content_type == "application/problem+json"
        assert response.get_json()["reason"] == "organization"
        assert b"acme" not in response.data.lower()
    assert (
        client.get(f"/api/orgs/{dave['organization']['id']}/documents", headers=DAVE).get_json()[
            "total"
        ]
        == 0
    )
