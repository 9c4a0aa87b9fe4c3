"""Which extensions each category holds, and the MIME types libmagic reports for each.

An extension's MIME types are the ones libmagic (5.44, and older spellings where they
differ) reports for real files of that format: an upload passes only when the type
detected from its content is one of its extension's types. Generic answers such as
``application/octet-stream`` or ``application/zip`` never stand for a specific format.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

_OLE = ("application/x-ole-storage", "application/CDFV2")
"""Legacy Office files are OLE2 compound files; from the head alone libmagic often
cannot tell a Word file from an Excel one and reports the container."""

_OOXML = "application/vnd.openxmlformats-officedocument."
_ODF = "application/vnd.oasis.opendocument."

EXTENSION_TYPES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        extension: frozenset(types)
        for extension, types in {
            # images
            "jpg": ("image/jpeg",),
            "jpeg": ("image/jpeg",),
            "png": ("image/png",),
            "gif": ("image/gif",),
            "webp": ("image/webp",),
            "bmp": ("image/bmp", "image/x-ms-bmp"),
            "tif": ("image/tiff",),
            "tiff": ("image/tiff",),
            "ico": ("image/vnd.microsoft.icon", "image/x-icon"),
            "heic": ("image/heic", "image/heif"),
            "heif": ("image/heif", "image/heic"),
            "avif": ("image/avif",),
            # documents
            "pdf": ("application/pdf",),
            "doc": ("application/msword", *_OLE),
            "docx": (_OOXML + "wordprocessingml.document",),
            "odt": (_ODF + "text",),
            "rtf": ("text/rtf", "application/rtf"),
            # spreadsheets
            "xls": ("application/vnd.ms-excel", *_OLE),
            "xlsx": (_OOXML + "spreadsheetml.sheet",),
            "ods": (_ODF + "spreadsheet",),
            "csv": ("text/csv", "text/plain", "application/csv"),
            "tsv": ("text/tab-separated-values", "text/plain"),
            # presentations
            "ppt": ("application/vnd.ms-powerpoint", *_OLE),
            "pptx": (_OOXML + "presentationml.presentation",),
            "odp": (_ODF + "presentation",),
            # archives
            "zip": ("application/zip",),
            "tar": ("application/x-tar",),
            "gz": ("application/gzip", "application/x-gzip"),
            "tgz": ("application/gzip", "application/x-gzip"),
            "bz2": ("application/x-bzip2",),
            "xz": ("application/x-xz",),
            "7z": ("application/x-7z-compressed",),
            "rar": ("application/x-rar", "application/vnd.rar", "application/x-rar-compressed"),
            # text
            "txt": ("text/plain",),
            "md": ("text/plain", "text/markdown", "text/x-markdown"),
            "log": ("text/plain",),
            "json": ("application/json", "text/plain"),
            # audio
            "mp3": ("audio/mpeg",),
            "wav": ("audio/x-wav", "audio/wav", "audio/vnd.wave"),
            "ogg": ("audio/ogg", "application/ogg"),
            "oga": ("audio/ogg", "application/ogg"),
            "opus": ("audio/ogg", "application/ogg"),
            "flac": ("audio/flac", "audio/x-flac"),
            "m4a": ("audio/x-m4a", "audio/mp4"),
            "aac": ("audio/aac", "audio/x-hx-aac-adts"),
            # video
            "mp4": ("video/mp4",),
            "m4v": ("video/x-m4v", "video/mp4"),
            "mov": ("video/quicktime",),
            "webm": ("video/webm",),
            "mkv": ("video/x-matroska",),
            "avi": ("video/x-msvideo", "video/avi"),
            "mpeg": ("video/mpeg",),
            "mpg": ("video/mpeg",),
            "ogv": ("video/ogg", "application/ogg"),
            # active content: only with an UploadPolicy(allow_active_content=True)
            "svg": ("image/svg+xml",),
            "html": ("text/html",),
            "htm": ("text/html",),
            "xml": ("text/xml", "application/xml"),
        }.items()
    }
)

CATEGORIES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "images": (
            *("jpg", "jpeg", "png", "gif", "webp", "bmp"),
            *("tif", "tiff", "ico", "heic", "heif", "avif"),
        ),
        "documents": ("pdf", "doc", "docx", "odt", "rtf"),
        "spreadsheets": ("xls", "xlsx", "ods", "csv", "tsv"),
        "presentations": ("ppt", "pptx", "odp"),
        "archives": ("zip", "tar", "gz", "tgz", "bz2", "xz", "7z", "rar"),
        "text": ("txt", "md", "log", "csv", "tsv", "json"),
        "audio": ("mp3", "wav", "ogg", "oga", "opus", "flac", "m4a", "aac"),
        "video": ("mp4", "m4v", "mov", "webm", "mkv", "avi", "mpeg", "mpg", "ogv"),
    }
)

ACTIVE_EXTENSIONS = frozenset({"svg", "html", "htm", "xml"})
"""Extensions in EXTENSION_TYPES that no category holds: markup a browser runs."""

SERVER_SIDE_EXTENSIONS = frozenset(
    {
        *("php", "php2", "php3", "php4", "php5", "php6", "php7", "php8", "phtml", "pht"),
        *("phar", "phps", "pgif", "shtml", "shtm", "stm"),
        *("asp", "aspx", "asa", "asax", "ascx", "ashx", "asmx", "axd", "cer", "cdx", "soap"),
        *("jsp", "jspx", "jsw", "jsv", "jspf"),
        *("cfm", "cfml", "cfc", "cgi", "fcgi", "pl", "pm", "py", "pyc", "rb", "sh", "bash"),
        *("htaccess", "htpasswd"),
    }
)
"""Extensions a web server may hand to an interpreter, wherever they sit in a name:
Apache's mod_mime runs ``shell.php.jpg`` as PHP, IIS runs ``x.asp;.jpg`` as ASP."""

DANGEROUS_EXTENSIONS = SERVER_SIDE_EXTENSIONS | {
    *("html", "htm", "xhtml", "xht", "svg", "svgz", "xml", "xsl", "xslt", "hta", "mht"),
    *("js", "mjs", "jse", "vbs", "vbe", "wsf", "wsh", "ps1", "psm1", "bat", "cmd", "com"),
    *("exe", "dll", "scr", "msi", "msp", "cpl", "jar", "class", "swf", "lnk", "reg", "inf"),
    *("app", "apk", "elf", "so", "dylib", "bin", "run", "deb", "rpm", "dmg", "pkg", "wasm"),
}
"""Extensions refused as the last extension unless active content is allowed."""

ACTIVE_TYPES = frozenset(
    {
        *("text/html", "application/xhtml+xml", "image/svg+xml", "text/xml", "application/xml"),
        *("text/javascript", "application/javascript", "application/x-javascript"),
        *("text/x-php", "application/x-php", "text/x-shellscript", "text/x-perl"),
        *("text/x-python", "text/x-ruby", "text/x-tcl", "text/x-lua", "text/x-msdos-batch"),
        *("text/x-asm", "application/x-executable", "application/x-pie-executable"),
        *("application/x-sharedlib", "application/x-mach-binary", "application/x-dosexec"),
        *("application/vnd.microsoft.portable-executable", "application/x-msdownload"),
        *("application/x-msi", "application/java-archive", "application/x-java-applet"),
        *("application/x-shockwave-flash", "application/wasm", "application/x-ms-shortcut"),
        *("application/hta", "application/x-elc", "application/x-bytecode.python"),
    }
)
"""Types refused unless active content is allowed: markup, scripts, executables."""

ACTIVE_TYPE_PREFIXES = ("text/x-script.",)
"""libmagic names scripts found by their ``#!`` line ``text/x-script.<interpreter>``."""


def is_active_type(mime_type: str) -> bool:
    return mime_type in ACTIVE_TYPES or mime_type.startswith(ACTIVE_TYPE_PREFIXES)


def category_of(extension: str) -> str | None:
    """The first category that holds ``extension`` (csv and tsv are in two)."""
    for name, extensions in CATEGORIES.items():
        if extension in extensions:
            return name
    return None
