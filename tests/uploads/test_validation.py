"""check_upload, UploadPolicy and the seed's validate_uploaded_file_comprehensive."""

from __future__ import annotations

import hashlib
import io
import re
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import magic
import pytest
from flask import Flask
from werkzeug.datastructures import FileStorage

from flask_resilience import ConfigurationError, Resilience
from flask_resilience.uploads import (
    CATEGORIES,
    EXTENSION_TYPES,
    UploadPolicy,
    check_upload,
    sniffing,
    validate_uploaded_file_comprehensive,
)
from flask_resilience.uploads.validation import format_size
from tests.support.paths import DOCS
from tests.uploads.helpers import (
    CSV,
    HTML,
    SVG,
    SVG_PROLOG,
    TEXT,
    gif,
    jpeg,
    mp4,
    ooxml,
    pdf,
    png,
    upload,
    wav,
    zip_archive,
)

ALL = list(CATEGORIES)


class CountingStream(io.RawIOBase):
    """A seekable file that counts the bytes read from it."""

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self.wrapped.seek(offset, whence))

    def tell(self) -> int:
        return int(self.wrapped.tell())

    def readinto(self, buffer: Any) -> int:
        data = self.wrapped.read(len(buffer))
        buffer[: len(data)] = data
        self.bytes_read += len(data)
        return len(data)


class Unseekable(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self.data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.data.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


# ------------------------------------------------------------------ the good files

GOOD = {
    "png": png(),
    "jpg": jpeg(),
    "gif": gif(),
    "pdf": pdf(),
    "docx": ooxml("docx"),
    "xlsx": ooxml("xlsx"),
    "pptx": ooxml("pptx"),
    "zip": zip_archive(),
    "txt": TEXT,
    "csv": CSV,
    "wav": wav(),
    "mp4": mp4(),
}


@pytest.mark.parametrize("extension", GOOD)
def test_each_category_accepts_its_own_files(extension: str) -> None:
    check = check_upload(upload(GOOD[extension], f"file.{extension}"), allowed_categories=ALL)
    assert check.ok, check.error
    assert check.info is not None
    assert check.info.mime_type in EXTENSION_TYPES[extension]
    assert check.info.extension == extension
    assert check.info.size == len(GOOD[extension])
    assert check.info.sha256 is None


@pytest.mark.parametrize("kind", ["docx", "xlsx", "pptx"])
@pytest.mark.parametrize("extra_parts", [0, 8, 40])
def test_office_documents_are_known_from_the_head(kind: str, extra_parts: int) -> None:
    document = ooxml(kind, media=600 * 1024, extra_parts=extra_parts)
    assert len(document) > 8 * sniffing.HEAD_SIZE
    check = check_upload(upload(document, f"report.{kind}"), allowed_categories=ALL)
    assert check.info is not None, check.error
    assert check.info.mime_type == magic.from_buffer(document, mime=True)
    assert check.info.mime_type in EXTENSION_TYPES[kind]


def test_the_stream_is_rewound_and_the_file_is_read_only_at_both_ends() -> None:
    with tempfile.TemporaryFile() as raw:
        raw.write(png())
        raw.truncate(50 * 1024 * 1024)  # sparse: 50 MB without writing them
        stream = CountingStream(raw)
        file = FileStorage(io.BufferedReader(stream, 4096), filename="huge.png")
        check = check_upload(file, allowed_categories=["images"], max_size="64MB")
        assert check.info is not None, check.error
        assert check.info.size == 50 * 1024 * 1024
        assert stream.bytes_read <= 2 * sniffing.HEAD_SIZE + 8192
        assert file.stream.tell() == 0


def test_checksum_reads_the_whole_file_and_rewinds() -> None:
    data = png() + bytes(3 * 1024 * 1024)
    file = upload(data, "big.png")
    check = check_upload(file, allowed_categories=["images"], checksum=True)
    assert check.info is not None
    assert check.info.sha256 == hashlib.sha256(data).hexdigest()
    assert file.stream.read() == data


def test_an_unseekable_stream_is_spooled_within_the_limit() -> None:
    file = FileStorage(io.BufferedReader(Unseekable(png())), filename="a.png")
    check = check_upload(file, allowed_categories=["images"])
    assert check.info is not None
    assert check.info.size == len(png())
    assert file.stream.read() == png()
    file.stream.close()

    big = FileStorage(io.BufferedReader(Unseekable(png() + bytes(5000))), filename="a.png")
    check = check_upload(big, allowed_categories=["images"], max_size=1000)
    assert check.error is not None
    assert (check.error.code, check.error.status) == ("too_large", 413)
    big.stream.close()


def test_a_closed_stream_is_unreadable_not_an_exception() -> None:
    file = upload(png(), "a.png")
    file.stream.close()
    check = check_upload(file, allowed_categories=["images"])
    assert check.error is not None
    assert (check.error.code, check.error.status) == ("unreadable", 400)


def test_no_file_at_all() -> None:
    check = check_upload(None)
    assert check.error is not None
    assert (check.error.code, check.error.status) == ("missing", 400)
    assert not check.ok


def test_min_size() -> None:
    check = check_upload(upload(png(), "a.png"), allowed_categories=["images"], min_size=1000)
    assert check.error is not None
    assert (check.error.code, check.error.status) == ("too_small", 400)
    check = check_upload(upload(b"", "a.png"), allowed_categories=["images"], min_size=0)
    assert check.error is not None
    assert check.error.code == "type_not_allowed"  # libmagic: application/x-empty


def test_active_content_can_be_allowed_explicitly() -> None:
    policy = UploadPolicy(allowed_extensions=["svg", "png"], allow_active_content=True)
    for data in (SVG, SVG_PROLOG):
        check = check_upload(upload(data, "logo.svg"), policy=policy)
        assert check.info is not None, check.error
        assert (check.info.mime_type, check.info.category) == ("image/svg+xml", "active")
    check = check_upload(upload(png() + b"<script>", "logo.png"), policy=policy)
    assert check.ok
    check = check_upload(upload(HTML, "logo.svg"), policy=policy)
    assert check.error is not None
    assert check.error.code == "type_not_allowed"


def test_a_type_of_an_allowed_category_under_another_extension_is_a_mismatch() -> None:
    check = check_upload(upload(gif(), "a.png"), allowed_categories=["images"])
    assert check.error is not None
    assert check.error.code == "content_mismatch"
    assert ".png" in check.error.message


def test_libmagic_failing_on_a_buffer_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    class Failing:
        def from_buffer(self, data: bytes) -> str:
            raise magic.MagicException("no match")

    monkeypatch.setattr(sniffing._local, "magic", Failing(), raising=False)
    check = check_upload(upload(png(), "a.png"), allowed_categories=["images"])
    assert check.error is not None
    assert check.error.code == "type_not_allowed"


# ----------------------------------------------------------------------- policies


def test_policy_options() -> None:
    policy = UploadPolicy(allowed_extensions=[".JPG", "png"], max_size="2MB", checksum=True)
    assert policy.extensions == frozenset({"jpg", "png"})
    assert policy.max_size == 2 * 1024 * 1024
    assert "max_size=2097152" in repr(policy)
    assert UploadPolicy(allowed_categories="images").extensions == frozenset(CATEGORIES["images"])
    assert UploadPolicy(allowed_extensions="pdf").extensions == frozenset({"pdf"})
    both = UploadPolicy(allowed_extensions=["jpg"], allowed_categories=["images", "text"])
    assert both.extensions == frozenset({"jpg"})
    assert UploadPolicy().extensions is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"allowed_categories": ["pictures"]}, "Unknown upload category 'pictures'"),
        ({"allowed_extensions": ["exe"]}, "No content check is known for .exe"),
        ({"allowed_extensions": ["svg"]}, "allow_active_content=True"),
        ({"allowed_extensions": ["pdf"], "allowed_categories": ["images"]}, "none of the"),
        ({"max_size": "ten megabytes"}, "is not a size"),
        ({"max_size": 10, "min_size": 20}, "below min_size"),
        ({"min_size": -1}, "is not a size"),
        ({"max_filename_length": 5}, "max_filename_length"),
    ],
)
def test_wrong_policies_fail_loudly(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        UploadPolicy(**options)


def test_a_policy_or_its_options_not_both() -> None:
    policy = UploadPolicy(allowed_categories=["images"])
    for options in ({"max_size": 10}, {"checksum": True}, {"allow_active_content": True}):
        with pytest.raises(TypeError, match="either a policy"):
            check_upload(upload(png(), "a.png"), policy=policy, **options)


def test_defaults_come_from_the_app_config(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config.update(RESILIENCE_UPLOAD_CATEGORIES=["text"], RESILIENCE_UPLOAD_MAX_SIZE="1KB")
    Resilience(app)
    with app.app_context():
        assert check_upload(upload(TEXT, "notes.txt")).ok
        check = check_upload(upload(png(), "a.png"))
        assert check.error is not None
        assert check.error.code == "extension_not_allowed"
        check = check_upload(upload(TEXT * 100, "notes.txt"))
        assert check.error is not None
        assert (check.error.code, check.error.message) == (
            "too_large",
            "The file is larger than 1.0 KB.",
        )
    # Outside an app, or in an app without the extension: the documented defaults.
    assert check_upload(upload(pdf(), "a.pdf")).ok
    assert not check_upload(upload(TEXT, "notes.txt")).ok
    with Flask(__name__).app_context():
        assert check_upload(upload(png() + bytes(9 * 1024 * 1024), "a.png")).ok


def test_format_size() -> None:
    assert [format_size(size) for size in (0, 1023, 1024, 10 * 1024**2, 3 * 1024**4)] == [
        "0 bytes",
        "1023 bytes",
        "1.0 KB",
        "10.0 MB",
        "3072.0 GB",
    ]


# ---------------------------------------------------------------- the seed's call


def test_the_seed_call_keeps_working() -> None:
    is_valid, error_message, file_info = validate_uploaded_file_comprehensive(
        file=upload(png(), "holiday photo.png"),
        allowed_extensions=["jpg", "png"],
        max_size=10 * 1024 * 1024,
        allowed_categories=["images"],
    )
    assert (is_valid, error_message) == (True, None)
    assert file_info is not None
    assert file_info["filename"] == "holiday_photo.png"
    assert file_info["original_filename"] == "holiday photo.png"
    assert file_info["storage_name"].endswith(".png")
    assert file_info["storage_name"] != file_info["filename"]
    assert (file_info["extension"], file_info["mime_type"]) == ("png", "image/png")
    assert (file_info["category"], file_info["size"]) == ("images", len(png()))
    assert file_info["size_formatted"] == f"{len(png())} bytes"

    is_valid, error_message, file_info = validate_uploaded_file_comprehensive(
        file=upload(HTML, "photo.jpg"),
        allowed_extensions=["jpg", "png"],
        max_size=10 * 1024 * 1024,
        allowed_categories=["images"],
    )
    assert (is_valid, file_info) == (False, None)
    assert error_message == "The content is text/html, which a browser or server would run."


# -------------------------------------------------------------------- libmagic


def test_init_app_checks_libmagic_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "magic", None)  # what a missing libmagic looks like
    with pytest.raises(ConfigurationError, match=r"needs libmagic.*apt-get install libmagic1"):
        Resilience(Flask(__name__))


def test_init_app_fails_closed_without_a_magic_database(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MAGIC", str(tmp_path / "missing.mgc"))
    with pytest.raises(ConfigurationError, match="does not work"):
        Resilience(Flask(__name__))


def test_init_app_fails_closed_with_a_database_that_does_not_know_png(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    database = tmp_path / "tiny.magic"
    database.write_text("0\tstring\t\\x89PNG\tnot really\n!:mime\timage/x-odd\n")
    monkeypatch.setenv("MAGIC", str(database))
    with pytest.raises(ConfigurationError, match="reports 'image/x-odd' for a PNG header"):
        Resilience(Flask(__name__))


@pytest.mark.parametrize("categories", [[], ["images", "pictures"]])
def test_init_app_refuses_unknown_categories(categories: list[str]) -> None:
    app = Flask(__name__)
    app.config["RESILIENCE_UPLOAD_CATEGORIES"] = categories
    with pytest.raises(ConfigurationError, match="RESILIENCE_UPLOAD_CATEGORIES is"):
        Resilience(app)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("RESILIENCE_UPLOAD_MAX_SIZE", "5MB", 5 * 1024 * 1024),
        ("RESILIENCE_UPLOAD_MAX_SIZE", 1000, 1000),
        ("RESILIENCE_UPLOAD_FOLDER", Path("/srv/uploads"), "/srv/uploads"),
        ("RESILIENCE_UPLOAD_CATEGORIES", ["audio"], ("audio",)),
    ],
)
def test_upload_settings_are_read_once(key: str, value: Any, expected: Any) -> None:
    app = Flask(__name__)
    app.config[key] = value
    Resilience(app)
    assert (
        getattr(app.extensions["resilience"].settings, key.removeprefix("RESILIENCE_").lower())
        == expected
    )


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("RESILIENCE_UPLOAD_MAX_SIZE", "lots"),
        ("RESILIENCE_UPLOAD_MAX_SIZE", -1),
        ("RESILIENCE_UPLOAD_MAX_SIZE", True),
        ("RESILIENCE_UPLOAD_FOLDER", ""),
        ("RESILIENCE_UPLOAD_FOLDER", 42),
        ("RESILIENCE_UPLOAD_CATEGORIES", "images"),
    ],
)
def test_wrong_upload_settings_are_refused(key: str, value: Any) -> None:
    app = Flask(__name__)
    app.config[key] = value
    with pytest.raises(ConfigurationError, match=key):
        Resilience(app)


def test_threads_validating_different_types_at_once_all_get_the_right_answer() -> None:
    cases = [
        ("a.png", png(), "image/png"),
        ("a.jpg", jpeg(), "image/jpeg"),
        ("a.gif", gif(), "image/gif"),
        ("a.pdf", pdf(), "application/pdf"),
        ("a.docx", ooxml("docx"), EXTENSION_TYPES["docx"]),
        ("a.zip", zip_archive(), "application/zip"),
        ("a.txt", TEXT, "text/plain"),
        ("a.jpg", HTML, "active_content"),
    ]
    barrier = threading.Barrier(len(cases))
    wrong: list[str] = []
    magics: list[object] = []

    def work(name: str, data: bytes, expected: Any) -> None:
        barrier.wait()
        for _ in range(100):
            check = check_upload(upload(data, name), allowed_categories=ALL)
            answer = check.info.mime_type if check.info else check.error and check.error.code
            if answer != expected and answer not in expected:
                wrong.append(f"{name}: {answer}")
        magics.append(sniffing._local.magic)  # kept alive, so no id is reused

    threads = [threading.Thread(target=work, args=case) for case in cases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
    assert len({id(handle) for handle in magics}) == len(cases)  # one handle per thread


def test_the_categories_table_of_the_docs_is_the_code() -> None:
    docs = (DOCS / "uploads.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| ([a-z0-9, ]+) \|$", docs, re.MULTILINE))
    assert {name: tuple(rows[name].split(", ")) for name in CATEGORIES} == dict(CATEGORIES)
