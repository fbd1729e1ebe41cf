"""What both results tables, the command line's CSV and the app's download, do to a cell before writing it; and
how a name is made fit for one line of a warning or a list."""

# A spreadsheet runs a cell that starts with one of these as a formula: a file named `=HYPERLINK(…).png` would
# become a link, or worse, in whoever opens the table.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """The text, with a leading apostrophe where a spreadsheet would take it for a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def printable(name: str) -> str:
    """A name as one line can show it: a newline or other control character in it is escaped (`\\n`)."""
    return "".join(character if character.isprintable() else repr(character)[1:-1] for character in name)
