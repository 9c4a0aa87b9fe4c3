"""save_upload and send_upload: atomic writes inside the folder, safe downloads."""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.exceptions import NotFound

from flask_resilience import Resilience
from flask_resilience.uploads import (
    InsufficientStorage,
    UploadCheck,
    UploadNotStored,
    UploadStorageFull,
    UploadTypeNotAllowed,
    check_upload,
    save_upload,
    send_upload,
)
from tests.uploads.helpers import HTML, MULTIPART, multipart, pdf, png, upload


def files_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def test_save_writes_every_byte_under_the_generated_name(tmp_path: Path) -> None:
    data = png() + bytes(2 * 1024 * 1024)
    file = upload(data, "holiday.png")
    check = check_upload(file, allowed_categories=["images"], max_size="4MB")
    assert check.info is not None
    path = save_upload(check, tmp_path / "new" / "folder")
    assert path == (tmp_path / "new" / "folder" / check.info.storage_name).resolve()
    assert path.read_bytes() == data
    assert path.stat().st_mode & 0o777 == 0o640
    assert files_in(path.parent) == [check.info.storage_name]  # no temporary left
    assert file.stream.tell() == 0


def test_save_checks_a_file_it_has_not_seen(tmp_path: Path) -> None:
    path = save_upload(upload(pdf(), "a.pdf"), tmp_path)
    assert path.suffix == ".pdf"
    with pytest.raises(UploadTypeNotAllowed) as raised:
        save_upload(upload(HTML, "a.pdf"), tmp_path)
    assert raised.value.members["errors"][0]["code"] == "active_content"
    assert files_in(tmp_path) == [path.name]


@pytest.mark.usefixtures("resilience")
def test_save_uses_the_check_made_in_the_request(app: Flask, tmp_path: Path) -> None:
    body = multipart([("file", "a.png", png())])
    with app.test_request_context("/", method="POST", data=body, content_type=MULTIPART):
        from flask import request

        file = request.files["file"]
        check = check_upload(file, allowed_extensions=["png"])
        assert check.info is not None
        assert save_upload(file).name == check.info.storage_name
        assert (tmp_path / "uploads" / check.info.storage_name).exists()

        refused = check_upload(file, allowed_extensions=["jpg"])
        assert not refused.ok
        with pytest.raises(UploadTypeNotAllowed):
            save_upload(file)  # the last check of this file refused it


def test_save_never_overwrites(tmp_path: Path) -> None:
    check = check_upload(upload(png(), "a.png"), allowed_categories=["images"])
    assert check.info is not None
    taken = replace(check, info=replace(check.info, storage_name="taken.png"))
    (tmp_path / "taken.png").write_bytes(b"precious")
    path = save_upload(taken, tmp_path)
    assert path.name != "taken.png"
    assert path.suffix == ".png"
    assert (tmp_path / "taken.png").read_bytes() == b"precious"
    assert path.read_bytes() == png()


def test_save_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(source: Any, target: Any) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    check = check_upload(upload(png(), "a.png"), allowed_categories=["images"])
    assert check.info is not None
    (tmp_path / "taken.png").write_bytes(b"precious")
    taken = replace(check, info=replace(check.info, storage_name="taken.png"))
    path = save_upload(taken, tmp_path)
    assert path.read_bytes() == png()
    assert (tmp_path / "taken.png").read_bytes() == b"precious"
    assert files_in(tmp_path) == sorted(["taken.png", path.name])


def test_when_every_name_is_taken_nothing_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("flask_resilience.uploads.storage.generated_name", lambda ext: "taken.png")
    check = check_upload(upload(png(), "a.png"), allowed_categories=["images"])
    assert check.info is not None
    (tmp_path / "taken.png").write_bytes(b"precious")
    with pytest.raises(UploadNotStored):
        save_upload(replace(check, info=replace(check.info, storage_name="taken.png")), tmp_path)
    assert files_in(tmp_path) == ["taken.png"]


def test_a_full_disk_is_507_and_the_partial_file_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fill_then_fail(source: Any, target: Any, length: int = 0) -> None:
        target.write(source.read(100))
        target.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfileobj", fill_then_fail)
    with pytest.raises(UploadStorageFull) as raised:
        save_upload(upload(pdf(), "a.pdf"), tmp_path)
    assert isinstance(raised.value, InsufficientStorage)
    assert raised.value.code == 507
    assert raised.value.members["errors"][0]["code"] == "storage_full"
    assert files_in(tmp_path) == []


def test_a_full_disk_over_http(
    client: FlaskClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(source: Any, target: Any, length: int = 0) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfileobj", fail)
    response = client.post(
        "/api/images", data=multipart([("file", "a.png", png())]), content_type=MULTIPART
    )
    assert response.status_code == 507
    body = response.get_json()
    assert (body["title"], body["errors"][0]["code"]) == ("Insufficient Storage", "storage_full")
    assert files_in(tmp_path / "uploads") == []


def test_a_folder_that_cannot_be_made_is_500(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(UploadNotStored) as raised:
        save_upload(upload(pdf(), "a.pdf"), tmp_path / "a-file" / "uploads")
    assert raised.value.code == 500
    assert str(tmp_path) not in str(raised.value.members)  # no path leaks to the client


def test_a_permission_error_is_500_and_nothing_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "fsync", refuse)
    with pytest.raises(UploadNotStored):
        save_upload(upload(pdf(), "a.pdf"), tmp_path)
    assert files_in(tmp_path) == []


def test_the_folder_may_be_a_link(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    path = save_upload(upload(pdf(), "a.pdf"), tmp_path / "link")
    assert path.parent == real.resolve()


def test_the_configured_folder_is_relative_to_the_instance_folder(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config["RESILIENCE_UPLOAD_FOLDER"] = "uploads"
    Resilience(app)
    with app.app_context():
        path = save_upload(upload(pdf(), "a.pdf"))
    assert path.parent == (tmp_path / "instance" / "uploads").resolve()


def test_without_a_folder_save_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="RESILIENCE_UPLOAD_FOLDER"):
        save_upload(upload(pdf(), "a.pdf"))


def test_a_check_without_a_file_cannot_be_saved(tmp_path: Path) -> None:
    check = check_upload(upload(pdf(), "a.pdf"))
    with pytest.raises(ValueError, match="no file"):
        save_upload(UploadCheck(None, info=check.info), tmp_path)


# -------------------------------------------------------------------- send_upload


@pytest.fixture
def upload_folder(tmp_path: Path) -> Path:
    """The app's upload folder with ``stored.png`` in it, and ``escape.png``, a link out."""
    folder = tmp_path / "uploads"
    folder.mkdir()
    (folder / "stored.png").write_bytes(png())
    (tmp_path / "secret.txt").write_text("secret")
    (folder / "escape.png").symlink_to(tmp_path / "secret.txt")
    return folder


@pytest.mark.usefixtures("upload_folder")
def test_send_upload_serves_an_attachment_the_browser_will_not_sniff(client: FlaskClient) -> None:
    with client.get("/api/files/stored.png") as response:
        assert response.status_code == 200
        assert response.data == png()
        assert response.headers["Content-Disposition"] == "attachment; filename=download.png"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
        assert response.mimetype == "image/png"


@pytest.mark.parametrize("name", ["../secret.txt", "escape.png", "missing.png", "."])
@pytest.mark.usefixtures("upload_folder")
def test_send_upload_stays_in_its_folder(client: FlaskClient, name: str) -> None:
    assert client.get(f"/api/files/{name}").status_code == 404


@pytest.mark.usefixtures("resilience")
def test_send_upload_paths(app: Flask, upload_folder: Path, tmp_path: Path) -> None:
    folder = upload_folder
    with app.test_request_context():
        response = send_upload(folder / "stored.png")  # absolute, no folder: as given
        assert response.headers["Content-Disposition"] == "attachment; filename=stored.png"
        response.close()
        response = send_upload("stored.png", directory=folder, mimetype="application/x-custom")
        assert response.mimetype == "application/x-custom"
        response.close()
        with pytest.raises(NotFound):
            send_upload(tmp_path / "secret.txt", directory=folder)
        with pytest.raises(NotFound):
            send_upload(tmp_path / "nothing-here.png")


def test_other_link_errors_are_500(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(source: Any, target: Any) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "link", broken)
    with pytest.raises(UploadNotStored):
        save_upload(upload(pdf(), "a.pdf"), tmp_path)
    assert files_in(tmp_path) == []


def test_a_failed_move_releases_the_claimed_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(source: Any, target: Any) -> None:
        raise OSError(errno.ENOTSUP, "Operation not supported")

    def no_room(source: Any, target: Any) -> None:
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(os, "link", no_links)
    monkeypatch.setattr(os, "replace", no_room)
    with pytest.raises(UploadStorageFull):
        save_upload(upload(pdf(), "a.pdf"), tmp_path)
    assert files_in(tmp_path) == []


@pytest.mark.usefixtures("resilience")
def test_save_checks_an_unseen_file_in_a_request_too(app: Flask, tmp_path: Path) -> None:
    with app.test_request_context("/"):
        assert save_upload(upload(pdf(), "a.pdf")).parent == (tmp_path / "uploads").resolve()
