"""Names other roles chose, read as the server holds them, and sent back as the same bytes.

pg_database is shared by every database, and a role that made a SQL_ASCII database of its own may, from
there, name databases with bytes that are not UTF-8 (the server checks no identifier there): psycopg2's UTF-8
decoder raised on reading the list, and `workshop init`, `remove` and `drop` stopped on a traceback. With
`CLIENT_ENCODING` the server sends names as they are, and psycopg2 decodes them with `BYTES_KEPT`: UTF-8, the
bytes that are not kept as surrogates (shown escaped, never equal to a name the kit uses; a statement naming one
goes back as the same bytes, which the server then refuses or accepts as it does any other). Registered with
psycopg2 on import, for SQL_ASCII sessions only (its own codec for them is strict ASCII).
"""

import codecs

import psycopg2.extensions

CLIENT_ENCODING = "SQL_ASCII"
BYTES_KEPT = "mlab_utf8_bytes_kept"


def utf8(name: str) -> bool:
    """`name`, as the server holds it, is UTF-8: not bytes a SQL_ASCII database let a role use."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _utf8_bytes_kept(name: str) -> codecs.CodecInfo | None:
    if name != BYTES_KEPT:
        return None
    return codecs.CodecInfo(
        encode=lambda text, errors="strict": codecs.utf_8_encode(text, "surrogateescape"),
        decode=lambda data, errors="strict": codecs.utf_8_decode(data, "surrogateescape", True),
        name=BYTES_KEPT,
    )


codecs.register(_utf8_bytes_kept)
for spelled in (CLIENT_ENCODING, CLIENT_ENCODING.replace("_", "")):  # psycopg2 looks up both spellings
    psycopg2.extensions.encodings[spelled] = BYTES_KEPT
