"""The HTML pages: the document list, the upload form, and what viewers see."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from flask.testing import FlaskClient

from tests.uploads.helpers import HTML

from .helpers import csrf_token_in


def test_documents_page_lists_and_uploads(
    client: FlaskClient, login: Callable[..., None], instance_path: Path
) -> None:
    login("bob@acme.test")
    page = client.get("/documents")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "No documents yet." in html
    assert 'enctype="multipart/form-data"' in html

    response = client.post(
        "/documents",
        data={
            "csrf_token": csrf_token_in(html),
            "file": (io.BytesIO(b"minutes of the meeting"), "minutes.txt"),
            "title": "Board <minutes>",
        },
        content_type="multipart/form-data",
        follow_redirects=True,
    )

    html = response.get_data(as_text=True)
    assert response.request.path == "/documents"
    assert "Uploaded “Board &lt;minutes&gt;”." in html
    assert "Board &lt;minutes&gt;" in html and "<minutes>" not in html
    assert "22 bytes" in html
    [stored] = (instance_path / "uploads").rglob("*.txt")
    assert stored.read_bytes() == b"minutes of the meeting"


def test_upload_form_reports_a_missing_file(
    client: FlaskClient, login: Callable[..., None]
) -> None:
    login("alice@acme.test")
    token = csrf_token_in(client.get("/documents").get_data(as_text=True))

    response = client.post("/documents", data={"csrf_token": token}, follow_redirects=True)

    assert response.request.path == "/documents"
    assert "No file was sent." in response.get_data(as_text=True)


def test_upload_form_flashes_why_a_file_was_refused(
    client: FlaskClient, login: Callable[..., None], instance_path: Path
) -> None:
    login("bob@acme.test")
    token = csrf_token_in(client.get("/documents").get_data(as_text=True))

    response = client.post(
        "/documents",
        data={"csrf_token": token, "file": (io.BytesIO(HTML), "invoice.pdf")},
        content_type="multipart/form-data",
    )
    # A browser gets the list back with a message, not a problem document.
    assert response.status_code == 302
    assert response.headers["Location"] == "/documents"

    html = client.get("/documents").get_data(as_text=True)
    assert "The content is text/html, which a browser or server would run." in html
    assert "No documents yet." in html
    assert not (instance_path / "uploads").exists()


def test_upload_form_needs_the_csrf_token(
    client: FlaskClient, login: Callable[..., None], instance_path: Path
) -> None:
    login("alice@acme.test")
    response = client.post(
        "/documents",
        data={"file": (io.BytesIO(b"x"), "x.txt")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert not (instance_path / "uploads").exists()


def test_viewer_sees_no_upload_form_and_cannot_post(
    client: FlaskClient, login: Callable[..., None], instance_path: Path
) -> None:
    login("carol@acme.test")
    html = client.get("/documents").get_data(as_text=True)
    assert "multipart/form-data" not in html
    assert "Viewers can read and download documents but not upload them." in html

    response = client.post(
        "/documents",
        data={"csrf_token": csrf_token_in(html), "file": (io.BytesIO(b"x"), "x.txt")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 403
    assert response.get_json()["reason"] == "permission"
    assert not (instance_path / "uploads").exists()

    # A browser gets the refusal as a page.
    response = client.post(
        "/documents",
        data={"csrf_token": csrf_token_in(html), "file": (io.BytesIO(b"x"), "x.txt")},
        content_type="multipart/form-data",
        headers={"Accept": "text/html"},
    )
    assert response.status_code == 403
    assert response.mimetype == "text/html"


def test_documents_page_far_past_the_last_is_empty(
    client: FlaskClient, login: Callable[..., None]
) -> None:
    login("carol@acme.test")

    response = client.get(f"/documents?page={10**30}")

    assert response.status_code == 200
    assert "No documents yet." in response.get_data(as_text=True)
