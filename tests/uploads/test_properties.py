"""Properties over random names and bytes: the validator never raises, and whatever it
accepts is stored inside the target folder."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from flask_resilience.uploads import UploadPolicy, check_upload, save_upload
from flask_resilience.uploads.categories import CATEGORIES, SERVER_SIDE_EXTENSIONS
from flask_resilience.uploads.filenames import CleanName, clean_filename
from tests.uploads.helpers import CSV, HTML, PHP, SVG, TEXT, gif, jpeg, ooxml, pdf, png, upload

HEADERS = [b"", png(), jpeg(), gif(), pdf(), ooxml("docx"), TEXT, CSV, HTML, SVG, PHP]
POLICY = UploadPolicy(allowed_categories=list(CATEGORIES), max_size=64 * 1024)

name_parts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            *("..", ".", "/", "\\", ";", ":", "%00", "%2e", "%25", "\x00", "\u202e", "ｐｈｐ"),  # noqa: RUF001
            *("php", "asp", "jpg", "png", "pdf", "docx", "txt", "CON", "-", " ", "文件", "\n"),
        ]
    ),
)
names = st.lists(name_parts, max_size=8).map("".join)
extensions = st.sampled_from(["png", "jpg", "gif", "pdf", "docx", "txt", "csv", "svg", "php"])
contents = st.tuples(st.sampled_from(HEADERS), st.binary(max_size=2048)).map(lambda p: p[0] + p[1])
ruled = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


MATCHING = [
    ("png", png()),
    ("jpg", jpeg()),
    ("gif", gif()),
    ("pdf", pdf()),
    ("docx", ooxml("docx")),
]
stems = st.one_of(names, st.text(st.characters(codec="utf-8", categories=["L", "N", "Zs"])))
matching = st.tuples(stems, st.sampled_from(MATCHING), st.binary(max_size=2048)).map(
    lambda p: (f"{p[0]}.{p[1][0]}", p[1][1] + p[2])
)
anything = st.tuples(st.one_of(names, st.tuples(names, extensions).map(".".join)), contents)


@ruled
@given(sent=st.one_of(matching, anything))
def test_the_validator_never_raises_and_stores_inside_the_folder(sent: tuple[str, bytes]) -> None:
    name, content = sent
    check = check_upload(upload(content, name), policy=POLICY)
    assert check.ok == (check.info is not None) == (check.error is None)
    if check.error is not None:
        assert check.error.status in {400, 413, 415}
        event(f"refused: {check.error.code}")
        return
    event("accepted")
    assert check.info is not None
    with tempfile.TemporaryDirectory() as folder:
        path = save_upload(check, folder)
        assert path.parent == Path(folder).resolve()
        assert path.name == check.info.storage_name
        assert path.read_bytes() == content


@ruled
@given(raw=st.one_of(names, st.text()), max_length=st.integers(32, 255))
@example(raw="0.PHP<.:", max_length=32)  # the "<" dropped, no extension left: "0.PHP"
def test_clean_names_are_plain_short_and_never_server_side(raw: str, max_length: int) -> None:
    result = clean_filename(raw, max_length=max_length)
    if not isinstance(result, CleanName):
        return
    name = result.name
    assert name and len(name) <= max_length
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert not name.startswith(("-", "."))
    assert name.isascii()
    parts = name.lower().replace(";", ".").split(".")[1:]
    assert not set(parts) & SERVER_SIDE_EXTENSIONS
    if result.extension:
        assert name.endswith("." + result.extension)
