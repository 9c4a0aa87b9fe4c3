"""From a client's file name to a safe one, or a refusal."""

from __future__ import annotations

import re

import pytest

from flask_resilience.uploads.filenames import (
    CleanName,
    NameRefused,
    clean_filename,
    generated_name,
)


def clean(raw: str | None, **options: object) -> str:
    result = clean_filename(raw, **options)  # type: ignore[arg-type]
    assert isinstance(result, CleanName), result
    return result.name


def refused(raw: str | None, **options: object) -> str:
    result = clean_filename(raw, **options)  # type: ignore[arg-type]
    assert isinstance(result, NameRefused), result
    return result.code


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("photo.png", "photo.png"),
        ("Holiday Photo.JPG", "Holiday_Photo.jpg"),
        ("naïve café.png", "naive_cafe.png"),
        ("C:\\Users\\ada\\photo.png", "photo.png"),  # old browsers sent the whole path
        ("../../photo.png", "photo.png"),
        ("%2e%2e%2fphoto.png", "photo.png"),
        ("my%20file.png", "my_file.png"),
        ("100%.png", "100.png"),
        ("photo.png. . ", "photo.png"),  # Windows drops trailing dots and spaces
        ("archive.tar.gz", "archive.tar.gz"),
        ("-rf.png", "rf.png"),
        ("--help.png", "help.png"),
        ("CON.png", "_CON.png"),
        ("con.tar.gz", "_con.tar.gz"),
        ("LPT9.txt", "_LPT9.txt"),
        ("COM¹.txt", "_COM1.txt"),  # NFKC turns the superscript into a digit
        ("CONSOLE.png", "CONSOLE.png"),
        ("README", "README"),
    ],
)
def test_safe_names(raw: str, safe: str) -> None:
    assert clean(raw) == safe


@pytest.mark.parametrize("raw", ["文件.png", "..png", "___.png", "%FF.png", "%252e%252e.png"])
def test_names_that_sanitize_to_nothing_get_a_generated_one(raw: str) -> None:
    name = clean(raw)
    assert re.fullmatch(r"upload-[0-9a-f]{8}\.png", name), name


def test_a_name_without_extension_keeps_none() -> None:
    result = clean_filename("..")
    assert isinstance(result, CleanName)
    assert result.extension == ""
    assert re.fullmatch(r"upload-[0-9a-f]{8}", result.name)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (None, "missing_filename"),
        ("", "missing_filename"),
        ("  ", "missing_filename"),
        ("a\x00.png", "unsafe_filename"),
        ("a\n.png", "unsafe_filename"),
        ("a\x7f.png", "unsafe_filename"),
        ("a%0d%0a.png", "unsafe_filename"),
        ("photo\u202egnp.exe", "unsafe_filename"),
        ("%25" * 5 + "00.png", "unsafe_filename"),  # %00 encoded again
        ("%" + "25" * 5 + "2e.png", "unsafe_filename"),  # encoded again and again
        ("shell.php.jpg", "dangerous_extension"),
        ("shell.pHp5.png", "dangerous_extension"),
        ("shell.phtml", "dangerous_extension"),
        ("x.asp;.jpg", "dangerous_extension"),
        ("x.aspx:.jpg", "dangerous_extension"),
        ("shell.php::$DATA", "dangerous_extension"),
        ("shell.php .jpg", "dangerous_extension"),
        ("shell.php.", "dangerous_extension"),
        ("shell.p\u00adhp.jpg", "dangerous_extension"),  # soft hyphen dropped later
        ("run.jsp.png", "dangerous_extension"),
        ("cgi.pl.txt", "dangerous_extension"),
        (".htaccess", "dangerous_extension"),
        ("setup.exe", "dangerous_extension"),
        ("page.html", "dangerous_extension"),
        ("logo.svg", "dangerous_extension"),
        ("run.bat", "dangerous_extension"),
    ],
)
def test_refused_names(raw: str | None, code: str) -> None:
    assert refused(raw) == code


def test_active_last_extensions_can_be_allowed_but_server_side_ones_cannot() -> None:
    assert clean("logo.svg", allow_active=True) == "logo.svg"
    assert refused("shell.php", allow_active=True) == "dangerous_extension"


def test_the_stem_is_shortened_and_the_extension_kept() -> None:
    assert clean("a" * 300 + ".jpeg", max_length=32) == "a" * 27 + ".jpeg"
    assert clean("CON" + "x" * 40, max_length=32) == "CON" + "x" * 29
    assert clean("b" * 300, max_length=32) == "b" * 32
    assert clean("nul.png", max_length=32) == "_nul.png"
    assert re.fullmatch(
        r"upload-[0-9a-f]{8}\.0123456789abcdef", clean(".0123456789abcdef", max_length=32)
    )


def test_an_extension_that_is_not_one_is_dropped() -> None:
    result = clean_filename("photo.p-n-g")
    assert result == CleanName("photo", "")
    result = clean_filename("photo." + "x" * 17)
    assert isinstance(result, CleanName)
    assert result.extension == ""


def test_generated_names_say_nothing_but_the_extension() -> None:
    assert re.fullmatch(r"[0-9a-f]{32}\.pdf", generated_name("pdf"))
    assert re.fullmatch(r"[0-9a-f]{32}", generated_name(""))
    assert generated_name("pdf") != generated_name("pdf")
