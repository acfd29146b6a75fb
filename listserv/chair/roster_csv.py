"""Reading a roster CSV for `members import` (SPEC §4): as spreadsheets in any language save it.

The separator is a comma, semicolon (Excel's default where the decimal mark is a comma: es, fr,
de, pt, ...) or tab: the one that makes the header row name an email column. Header names are
matched loosely (case, accents, spaces and dashes ignored) against common spellings in English,
Spanish, French, German, Portuguese and a few more. A name may come as one column or as first
and last name columns. Each row is numbered by the line it starts on in the file, counting the
header, blank lines and quoted cells that span lines, so that an error points where the chair
looks in her editor.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable
from typing import Final, TextIO

from listserv.errors import ListservError

SEPARATORS: Final = (",", ";", "\t")

# Normalised header names (see `_normal`) of each column the import reads.
EMAIL_HEADERS: Final = frozenset({
    "email", "emailaddress", "mail", "primaryemail", "emailadres", "epost", "epostadresse",
    "correo", "correoelectronico", "direcciondecorreo", "direcciondecorreoelectronico",
    "courriel", "adressecourriel", "adresseemail", "adressemail", "adresseelectronique",
    "emailadresse", "mailadresse",
    "enderecodeemail", "enderecoeletronico", "enderecodecorreioeletronico",
    "indirizzoemail",
})
NAME_HEADERS: Final = frozenset({
    "name", "fullname", "displayname", "nombre", "nombrecompleto", "nom", "nomcomplet",
    "nome", "nomecompleto", "vollstandigername", "naam",
})
FIRST_NAME_HEADERS: Final = frozenset({
    "firstname", "givenname", "vorname", "prenom", "primeironome",
})
LAST_NAME_HEADERS: Final = frozenset({
    "lastname", "surname", "familyname", "nachname", "apellido", "apellidos", "sobrenome",
    "ultimonome",
})
DELIVERY_HEADERS: Final = frozenset({
    "delivery", "deliverymode", "entrega", "envio", "livraison", "zustellung", "versand",
})

LANGUAGE_HEADERS: Final = frozenset({
    "language", "lang", "idioma", "langue", "sprache", "lingua", "taal",
})

Row = tuple[int, dict[str, str]]


def read_roster(handle: TextIO, name: str) -> list[Row]:
    """The rows of a roster CSV as (line it starts on, {"email", "name", "delivery",
    "language"}).

    Raises `ListservError` naming the file (and the line, for a CSV error) when the file is not
    UTF-8, or its first row names no email column under any separator.
    """
    try:
        text = handle.read()
    except UnicodeDecodeError:
        raise ListservError(f"{name}: not UTF-8 text; save the file as CSV UTF-8") from None
    separator, columns = _layout(text, name)
    reader = csv.reader(io.StringIO(text), delimiter=separator)
    rows: list[Row] = []
    header_seen = False
    try:
        while True:
            # The line after the last one read is where the next row starts.
            start = reader.line_num + 1
            cells = next(reader, None)
            if cells is None:
                return rows
            if not any(cell.strip() for cell in cells):
                continue
            if header_seen:
                rows.append((start, _fields(cells, columns)))
            header_seen = True
    except csv.Error as exc:
        raise ListservError(f"{name}, line {reader.line_num}: {exc}") from None


def _layout(text: str, name: str) -> tuple[str, dict[str, int]]:
    """The separator, and which column (by index) holds each field, from the header row."""
    best: tuple[str, dict[str, int], int] | None = None
    for separator in SEPARATORS:
        try:
            header = next((r for r in csv.reader(io.StringIO(text), delimiter=separator)
                           if any(c.strip() for c in r)), [])
        except csv.Error:
            continue
        columns = _columns(header)
        # The separator that splits the header into the most columns wins: "email;name"
        # names an email column under "," too, as one column.
        if "email" in columns and (best is None or len(header) > best[2]):
            best = (separator, columns, len(header))
    if best is None:
        raise ListservError(
            f"{name}: the first row must name the columns, including 'email' (or E-mail, "
            "Email address, Correo, Courriel, ...), separated by commas, semicolons or tabs")
    return best[0], best[1]


def _columns(header: Iterable[str]) -> dict[str, int]:
    """Field -> column index; the leftmost column of each kind counts."""
    kinds = (("email", EMAIL_HEADERS), ("name", NAME_HEADERS), ("first", FIRST_NAME_HEADERS),
             ("last", LAST_NAME_HEADERS), ("delivery", DELIVERY_HEADERS),
             ("language", LANGUAGE_HEADERS))
    columns: dict[str, int] = {}
    for index, cell in enumerate(header):
        normal = _normal(cell)
        for field, names in kinds:
            if normal in names:
                columns.setdefault(field, index)
    # "Prénom; Nom": with a first-name column, "Nom" is the family name; "Nombre; Apellidos":
    # with a last-name column, "Nombre" is the given name.
    if "name" in columns and ("first" in columns) != ("last" in columns):
        columns["last" if "first" in columns else "first"] = columns.pop("name")
    return columns


def _fields(cells: list[str], columns: dict[str, int]) -> dict[str, str]:
    def cell(field: str) -> str:
        index = columns.get(field)
        return cells[index] if index is not None and index < len(cells) else ""

    name = cell("name") or " ".join(p for p in (cell("first"), cell("last")) if p.strip())
    return {"email": cell("email"), "name": name, "delivery": cell("delivery"),
            "language": cell("language")}


def _normal(header: str) -> str:
    """A header name without case, accents, spaces or punctuation: "E-Mail-Adresse" ->
    "emailadresse", "Correo electrónico" -> "correoelectronico"."""
    decomposed = unicodedata.normalize("NFKD", header.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return re.sub(r"[^a-z0-9]", "", plain)
