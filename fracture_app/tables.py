"""What both results tables, the command line's CSV and the app's download, do to a cell before writing it."""

# A spreadsheet runs a cell that starts with one of these as a formula: a file named `=HYPERLINK(…).png` would
# become a link, or worse, in whoever opens the table.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """The text, with a leading apostrophe where a spreadsheet would take it for a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text
