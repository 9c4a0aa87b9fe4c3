"""Files with real headers, built here, and the views of the upload tests' app."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flask import Flask, request
from flask.testing import FlaskClient
from werkzeug.datastructures import FileStorage

from flask_resilience import validate_uploads
from flask_resilience.uploads import save_upload, send_upload

# --------------------------------------------------------------------------- files


def png(width: int = 1, height: int = 1) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + b"\x10\x20\x30" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def jpeg(comment: bytes = b"") -> bytes:
    jfif = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    com = b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment if comment else b""
    quantisation = b"\xff\xdb\x00\x43\x00" + bytes(range(1, 65))
    return b"\xff\xd8" + jfif + com + quantisation + b"\xff\xd9"


def gif() -> bytes:
    return (
        b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
        b"!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
    )


def pdf() -> bytes:
    return (
        b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
        b"2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n"
        b"trailer\n<< /Root 1 0 R >>\n%%EOF\n"
    )


_OOXML_MAIN = {
    "docx": ("word/document.xml", "wordprocessingml.document.main+xml"),
    "xlsx": ("xl/workbook.xml", "spreadsheetml.sheet.main+xml"),
    "pptx": ("ppt/presentation.xml", "presentationml.presentation.main+xml"),
}


def ooxml(kind: str, *, media: int = 0, extra_parts: int = 0) -> bytes:
    """A DOCX, XLSX or PPTX laid out as Office writes one: [Content_Types].xml first.

    :param media: bytes of incompressible image data stored at the end (a photo).
    :param extra_parts: further XML parts (styles, settings...) before the main one.
    """
    main, content_type = _OOXML_MAIN[kind]
    types = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/'
        'vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        f'<Override PartName="/{main}" ContentType="application/'
        f'vnd.openxmlformats-officedocument.{content_type}"/></Types>'
    )
    rels = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        f'relationships/officeDocument" Target="{main}"/></Relationships>'
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(_member("[Content_Types].xml"), types)
        archive.writestr(_member("_rels/.rels"), rels)
        folder = main.split("/")[0]
        for index in range(extra_parts):
            archive.writestr(_member(f"{folder}/part{index}.xml"), f"<part n='{index}'/>" * 200)
        archive.writestr(_member(main), '<?xml version="1.0"?><document>Hello</document>')
        if media:
            archive.writestr(
                _member(f"{folder}/media/image1.png", zipfile.ZIP_STORED), png() + _noise(media)
            )
    return buffer.getvalue()


def zip_archive(names: Iterable[str] = ("notes.txt",)) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(_member(name), "hello")
    return buffer.getvalue()


def _member(name: str, compression: int = zipfile.ZIP_DEFLATED) -> zipfile.ZipInfo:
    # A fixed time, not the clock's: the same archive is the same bytes in every
    # process, so test ids built from it match across pytest-xdist's workers.
    member = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
    member.compress_type = compression
    return member


def elf() -> bytes:
    header = b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x02\x00\x3e\x00\x01\x00\x00\x00"
    return header + bytes(40)


def windows_exe() -> bytes:
    dos = b"MZ\x90\x00" + bytes(56) + struct.pack("<I", 64)
    return dos + b"PE\x00\x00\x4c\x01" + bytes(200)


def wav() -> bytes:
    data = bytes(160)
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data"
    body += struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def mp4() -> bytes:
    ftyp = struct.pack(">I", 24) + b"ftypisom\x00\x00\x02\x00isommp41"
    return ftyp + struct.pack(">I", 8) + b"free"


HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
PHP = b"<?php system($_GET['cmd']); ?>\n"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
SVG_PROLOG = b'<?xml version="1.0" encoding="UTF-8"?>\n' + SVG
SHELL = b"#!/bin/sh\nrm -rf /\n"
TEXT = b"Meeting notes\n- ship the release\n- write the docs\n"
CSV = b"name,city\nZoe,Malaga\nAda,London\n"


def _noise(size: int) -> bytes:
    """Incompressible bytes without markup in them, the same on every run."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += zlib.crc32(counter.to_bytes(8, "little")).to_bytes(4, "little") * 8
        out += bytes(((counter * 2654435761) >> shift) & 0xFF for shift in range(0, 32, 8))
        counter += 1
    return bytes(out[:size])


def upload(data: bytes, filename: str | None = "file.bin", **kwargs: Any) -> FileStorage:
    return FileStorage(io.BytesIO(data), filename=filename, name="file", **kwargs)


# ----------------------------------------------------------------------- requests

BOUNDARY = "resilience-test-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def multipart(parts: Iterable[tuple[str, str | None, bytes]], content_type: str = "") -> bytes:
    """A multipart body, byte for byte: (field, filename or None for a text field, data).

    Names go out as a browser sends them: UTF-8, with ``"`` as ``%22``.
    """
    body = b""
    for field, filename, data in parts:
        disposition = f'form-data; name="{field}"'
        if filename is not None:
            disposition += f'; filename="{filename.replace(chr(34), "%22")}"'
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            body += f"Content-Type: {content_type or 'application/octet-stream'}\r\n".encode()
        body += b"\r\n" + data + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


# ---------------------------------------------------------------------------- app


def upload_config(tmp_path: Path) -> dict[str, Any]:
    """The configuration of the upload tests' apps: files land in ``tmp_path / "uploads"``."""
    return {
        "TESTING": True,
        "MAX_CONTENT_LENGTH": 4 * 1024 * 1024,
        "RESILIENCE_UPLOAD_FOLDER": str(tmp_path / "uploads"),
    }


def add_upload_views(app: Flask) -> None:
    """Upload routes with the checks of each category, and a download route."""

    def stored(field: str) -> tuple[dict[str, Any], int]:
        paths = [save_upload(file) for file in request.files.getlist(field) if file.filename]
        return {"stored": [str(path) for path in paths]}, 201

    @app.post("/api/images")
    @validate_uploads("file", categories=["images"], max_size="1MB")
    def images() -> tuple[dict[str, Any], int]:
        return stored("file")

    @app.post("/api/documents")
    @validate_uploads("file", categories=["documents"], max_size="10MB", required=True, max_files=1)
    def documents() -> tuple[dict[str, Any], int]:
        return stored("file")

    @app.post("/api/notes")
    @validate_uploads("file", categories=["text"], max_size="1MB")
    def notes() -> tuple[dict[str, Any], int]:
        return stored("file")

    @app.post("/api/gallery")
    @validate_uploads("photos", categories=["images"], max_size="1MB")
    def gallery() -> tuple[dict[str, Any], int]:
        return stored("photos")

    @app.post("/api/optional")
    @validate_uploads("file", categories=["images"], required=False)
    def optional() -> tuple[dict[str, Any], int]:
        return stored("file")

    @app.get("/api/files/<path:name>")
    def download(name: str) -> Any:
        return send_upload(name, download_name="download.png")


def post(client: FlaskClient, route: str, body: bytes, content_type: str = MULTIPART) -> Any:
    """POST a raw body, as a client that builds its own multipart would."""
    return client.post(route, data=body, headers={"Content-Type": content_type})
