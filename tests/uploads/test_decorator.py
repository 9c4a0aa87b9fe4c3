"""@validate_uploads: refusals as problem+json, what the view gets, and its options."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request
from flask.testing import FlaskClient

from flask_resilience import validate_uploads
from flask_resilience.uploads import (
    UploadInvalid,
    UploadTooLarge,
    UploadTypeNotAllowed,
    upload_checks,
)
from tests.uploads.helpers import HTML, MULTIPART, jpeg, multipart, pdf, png, post


def test_a_missing_field_is_400(client: FlaskClient) -> None:
    response = post(client, "/api/images", multipart([("other", "a.png", png())]))
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    [error] = response.get_json()["errors"]
    assert error == {
        "field": "file",
        "filename": None,
        "code": "missing",
        "detail": "Send a file in the 'file' field.",
    }


def test_a_form_without_files_is_400(client: FlaskClient) -> None:
    response = post(client, "/api/images", multipart([("title", None, b"holiday")]))
    assert response.status_code == 400
    assert response.get_json()["errors"][0]["code"] == "missing"


def test_a_json_body_is_told_to_send_multipart(client: FlaskClient) -> None:
    response = client.post("/api/images", json={"file": "photo.png"})
    assert response.status_code == 400
    assert "as multipart/form-data" in response.get_json()["errors"][0]["detail"]


def test_an_empty_file_input_counts_as_no_file(client: FlaskClient) -> None:
    body = multipart([("file", "", b"")])
    assert post(client, "/api/images", body).get_json()["errors"][0]["code"] == "missing"
    response = post(client, "/api/optional", body)
    assert (response.status_code, response.get_json()) == (201, {"stored": []})


def test_optional_uploads_let_an_empty_request_through(client: FlaskClient) -> None:
    assert post(client, "/api/optional", b"", MULTIPART).status_code == 201
    assert client.post("/api/optional", data={"title": "x"}).status_code == 201
    assert post(client, "/api/optional", multipart([("file", "a.png", png())])).status_code == 201


def test_options_requests_pass(app: Flask, client: FlaskClient) -> None:
    assert client.options("/api/images").status_code == 200


def test_the_view_gets_the_checks(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path))
    seen: dict[str, Any] = {}

    @app.route("/upload/<kind>", methods=["POST", "OPTIONS"])
    @validate_uploads("photos", "scan", extensions=["png", "jpg", "pdf"], max_size=4096)
    def view(kind: str) -> str:
        seen["kind"] = kind
        seen["photos"] = upload_checks("photos")
        seen["scan"] = upload_checks("scan")
        seen["other"] = upload_checks("other")
        return "ok"

    body = multipart(
        [("photos", "a.png", png()), ("photos", "b.jpg", jpeg()), ("scan", "s.pdf", pdf())]
    )
    client = app.test_client()
    assert client.options("/upload/holiday").status_code == 200  # not checked
    response = post(client, "/upload/holiday", body)
    assert response.status_code == 200
    assert seen["kind"] == "holiday"
    assert [check.info.mime_type for check in seen["photos"]] == ["image/png", "image/jpeg"]
    assert [check.info.safe_name for check in seen["scan"]] == ["s.pdf"]
    assert seen["other"] == []
    with app.test_request_context():
        assert upload_checks("photos") == []


def test_refusals_raise_problem_errors_an_app_can_handle(app: Flask, client: FlaskClient) -> None:
    caught: list[Exception] = []

    @app.errorhandler(UploadTypeNotAllowed)
    def not_allowed(error: UploadTypeNotAllowed) -> tuple[str, int]:
        caught.append(error)
        return "custom", 415

    response = post(client, "/api/images", multipart([("file", "a.png", HTML)]))
    assert (response.status_code, response.get_data(as_text=True)) == (415, "custom")
    [error] = caught
    assert isinstance(error, UploadTypeNotAllowed)
    assert error.code == 415
    assert error.members["errors"][0]["code"] == "active_content"


@pytest.mark.parametrize(
    ("body", "exception"),
    [
        (multipart([("file", "a.png", b"")]), UploadInvalid),
        (multipart([("file", "a.png", png() + bytes(2 * 1024 * 1024))]), UploadTooLarge),
        (multipart([("file", "a.png", jpeg())]), UploadTypeNotAllowed),
    ],
)
@pytest.mark.usefixtures("resilience")
def test_each_status_has_its_exception_class(
    app: Flask, body: bytes, exception: type[Exception]
) -> None:
    view = app.view_functions["images"]
    with (
        app.test_request_context("/api/images", method="POST", data=body, content_type=MULTIPART),
        pytest.raises(exception) as raised,
    ):
        view()
    assert raised.value.members["errors"][0]["field"] == "file"  # type: ignore[attr-defined]


def test_wrong_options_fail_when_the_view_is_decorated() -> None:
    with pytest.raises(TypeError, match="Name the form fields"):
        validate_uploads()
    with pytest.raises(ValueError, match="max_files"):
        validate_uploads("file", max_files=0)
    with pytest.raises(ValueError, match="Unknown upload category"):
        validate_uploads("file", categories=["pictures"])


def test_a_policy_object_can_be_shared(tmp_path: Path) -> None:
    from flask_resilience.uploads import UploadPolicy

    policy = UploadPolicy(allowed_extensions=["pdf"], max_size="1KB")
    app = Flask(__name__, instance_path=str(tmp_path))

    @app.post("/a")
    @validate_uploads("file", policy=policy)
    def a() -> str:
        return request.files["file"].filename or ""

    client = app.test_client()
    assert post(client, "/a", multipart([("file", "x.pdf", pdf())])).get_data() == b"x.pdf"
    assert post(client, "/a", multipart([("file", "x.pdf", pdf() * 100)])).status_code == 413


def test_a_chunked_body_that_parses_into_nothing_is_malformed(client: FlaskClient) -> None:
    body = b"--resilience-test-boundary\r\nnot a part at all\r\n"
    response = client.post(
        "/api/optional",
        input_stream=io.BytesIO(body),
        headers={"Content-Type": MULTIPART, "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 400
    assert response.get_json()["errors"][0]["code"] == "malformed"
    response = client.post("/api/optional", headers={"Content-Type": MULTIPART})
    assert response.status_code == 201  # no body at all: nothing was sent


@pytest.mark.usefixtures("resilience")
def test_an_unreadable_part_is_reported_not_raised(app: Flask) -> None:
    body = multipart([("file", "", b"")])
    view = app.view_functions["images"]
    with app.test_request_context("/api/images", method="POST", data=body, content_type=MULTIPART):
        from flask import request as current

        current.files["file"].stream.close()
        with pytest.raises(UploadInvalid) as raised:
            view()
    assert raised.value.members["errors"][0]["code"] == "missing_filename"


def test_async_views_are_checked_and_run(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path))

    @app.post("/async")
    @validate_uploads("file", extensions=["png"])
    async def view() -> str:
        return upload_checks("file")[0].info.safe_name  # type: ignore[union-attr]

    client = app.test_client()
    assert post(client, "/async", multipart([("file", "a b.png", png())])).data == b"a_b.png"
    assert post(client, "/async", multipart([("file", "a.png", HTML)])).status_code == 415
