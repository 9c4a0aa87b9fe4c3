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

from example_app.documents import client_basename
from example_app.extensions import db
from example_app.models import Document

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


@on_both_backends
def test_upload_writes_every_byte(client: FlaskClient, instance_path: Path) -> None:
    content = os.urandom(300_000)  # larger than Werkzeug keeps in memory

    response = upload(client, BOB, content, "Q3 figures.PDF", title="Q3 figures")

    assert response.status_code == 201
    document = response.json
    assert response.headers["Location"] == document["url"] == f"/api/documents/{document['id']}"
    assert document["title"] == "Q3 figures"
    assert document["original_filename"] == "Q3 figures.PDF"
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
        assert download.headers["Content-Disposition"] == 'attachment; filename="Q3 figures.PDF"'


def test_upload_never_uses_the_client_file_name(client: FlaskClient, instance_path: Path) -> None:
    response = upload(client, ALICE, b"x", "../../secret_key")

    assert response.status_code == 201
    assert response.json["original_filename"] == "secret_key"
    assert response.json["title"] == "secret_key"
    assert response.json["content_type"] == "application/octet-stream"
    [stored] = stored_files(instance_path)
    assert re.fullmatch(r"[0-9a-f]{32}", stored.name)


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        ({}, "Choose a file to upload (form field 'file')."),
        ({"file": (io.BytesIO(b""), "empty.txt")}, "The file is empty."),
        (
            {"file": (io.BytesIO(b"x"), "a.txt"), "title": "t" * 201},
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
    assert response.json["detail"] == detail
    assert stored_files(instance_path) == []


def test_upload_too_large_is_refused(app: Flask, client: FlaskClient, instance_path: Path) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 1024
    response = upload(client, ALICE, b"x" * 2048)
    assert response.status_code == 413
    assert stored_files(instance_path) == []


@on_both_backends
def test_viewer_cannot_upload(app: Flask, client: FlaskClient, instance_path: Path) -> None:
    response = upload(client, CAROL)

    assert response.status_code == 403
    assert response.json["detail"] == "Viewers cannot upload documents."
    assert stored_files(instance_path) == []
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Document)) == 0


@on_both_backends
def test_list_is_paginated_and_scoped_to_the_organization(client: FlaskClient) -> None:
    acme_ids = [upload(client, ALICE, filename=f"a{n}.txt").json["id"] for n in range(5)]
    globex_id = upload(client, DAVE, filename="g.txt").json["id"]

    first = client.get("/api/documents?per_page=2", headers=BOB).json
    assert (first["page"], first["per_page"], first["pages"], first["total"]) == (1, 2, 3, 5)
    assert first["prev"] is None
    assert first["next"] == "/api/documents?page=2&per_page=2"
    last = client.get("/api/documents?page=3&per_page=2", headers=BOB).json
    assert last["next"] is None

    seen = [
        item["id"]
        for number in (1, 2, 3)
        for item in client.get(f"/api/documents?page={number}&per_page=2", headers=BOB).json[
            "items"
        ]
    ]
    assert seen == list(reversed(acme_ids))  # newest first

    globex = client.get("/api/documents", headers=DAVE).json
    assert [item["id"] for item in globex["items"]] == [globex_id]


@on_both_backends
def test_document_metadata(client: FlaskClient) -> None:
    created = upload(client, BOB, b"abc", "notes.csv").json

    response = client.get(f"/api/documents/{created['id']}", headers=CAROL)

    assert response.status_code == 200
    assert response.json == created
    assert response.json["content_type"] == "text/csv"
    assert response.json["created_at"].endswith("+00:00")


@on_both_backends
def test_other_organizations_documents_look_missing(client: FlaskClient) -> None:
    acme = upload(client, ALICE, b"acme only").json

    for path in (acme["url"], acme["download_url"]):
        response = client.get(path, headers=DAVE)
        assert response.status_code == 404
        assert b"acme only" not in response.data
    assert client.get("/api/documents", headers=DAVE).json["total"] == 0
    with client.get(acme["download_url"], headers=CAROL) as download:
        assert download.data == b"acme only"


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("report.pdf", "report.pdf"),
        ("C:\\Users\\bob\\report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("  spaced name.txt ", "spaced name.txt"),
    ],
)
def test_client_basename(sent: str, kept: str) -> None:
    assert client_basename(sent) == kept


def test_missing_document_and_missing_file(client: FlaskClient, instance_path: Path) -> None:
    assert client.get("/api/documents/999", headers=ALICE).status_code == 404

    document = upload(client, ALICE).json
    for path in stored_files(instance_path):
        path.unlink()
    assert client.get(document["download_url"], headers=ALICE).status_code == 404


@on_both_backends
def test_organization_documents(client: FlaskClient) -> None:
    document = upload(client, ALICE).json
    me = client.get("/api/me", headers=CAROL).json
    dave = client.get("/api/me", headers=DAVE).json

    own = client.get(f"/api/orgs/{me['organization']['id']}/documents", headers=CAROL)
    assert own.status_code == 200
    assert [item["id"] for item in own.json["items"]] == [document["id"]]

    for org_id in (me["organization"]["id"], 12345):
        response = client.get(f"/api/orgs/{org_id}/documents", headers=DAVE)
        assert response.status_code == 403
        assert response.content_type == "application/problem+json"
    assert (
        client.get(f"/api/orgs/{dave['organization']['id']}/documents", headers=DAVE).json["total"]
        == 0
    )
