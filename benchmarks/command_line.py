"""The benchmarks' shared command line: the data folders they read, checked before anything slow is imported."""

import argparse
from pathlib import Path


def data_folders(doc: str, default: list[str], many: bool = False) -> list[Path]:
    """The folders named on the command line (one, or several where `many`), else `default`; a usage message and
    exit status 2 where one is not a folder. `doc`: the script's docstring, whose first paragraph is its help."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0], epilog="Prints figures, asserts nothing.")
    parser.add_argument("folders", nargs="*" if many else "?", type=Path, metavar="FOLDER",
                        help=f"data folder{'s' if many else ''} (default: {' '.join(default)})")
    folders = parser.parse_args().folders
    folders = [Path(folder) for folder in default] if folders in (None, []) else folders
    folders = folders if isinstance(folders, list) else [folders]
    for folder in folders:
        if not folder.is_dir():
            parser.error(f"not a folder: {folder}")
    return folders
