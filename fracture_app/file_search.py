"""Which files the command line reads from the paths it is given, and what it says about those it leaves out.

A folder is searched through its subfolders, and through linked folders that lead outside it (each once, so that a
link back up the tree cannot loop, and a link to a folder inside it does not read that folder twice). Hidden files and folders are left out (a checkout's .git holds many extension-less files),
and so are files that cannot be images; every folder where something was left out is named in one warning line,
so that a file a user expected to be read never vanishes without a word.
"""

import os
from collections import defaultdict
from pathlib import Path

from fracture_app import config
from fracture_app.imaging import SNIFF_BYTES, sniff_format
from fracture_app.tables import printable

NAMES_SHOWN = 3  # of each kind of entry left out, so that a warning stays one line


def expand(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """Files as given (a file that cannot be read gets its error row later), and the files found in folders; also
    a warning for each folder given where nothing was found or something was left out."""
    files, warnings = [], []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        found, left_out = search_folder(path)
        files.extend(found)
        if not found:
            warnings.append(f"no image files found in the folder {path}")
        if left_out:
            warnings.append(f"in the folder {path}, not read: {describe(left_out)}")
    return files, warnings


def search_folder(folder: Path) -> tuple[list[Path], dict[str, list[str]]]:
    """The files below `folder` that may be images, sorted; and what was left out, by kind, as relative names."""
    found, left_out = [], defaultdict(list)
    top = os.path.realpath(folder)
    searched = {top}

    def relative(path: str) -> str:
        name = os.path.relpath(path, folder)
        return str(folder) if name == "." else name

    def unopened(error: OSError) -> None:
        left_out["folders that could not be opened"].append(f"{relative(error.filename)} ({error.strerror})")

    for root, subfolders, names in os.walk(folder, onerror=unopened, followlinks=True):
        subfolders.sort()  # so that which of two links to one folder is searched does not depend on the disk
        for name in list(subfolders):
            path = os.path.join(root, name)
            real = os.path.realpath(path)
            if name.startswith("."):
                left_out["hidden folders"].append(relative(path))
            elif os.path.islink(path) and (real in searched or real.startswith(top + os.sep)):
                # Its files are read through the folder itself (inside the one given) or the first link to it.
                left_out["links to a folder read another way"].append(relative(path))
            else:
                searched.add(real)
                continue
            subfolders.remove(name)
        for name in names:
            path = Path(root, name)
            if name.startswith("."):
                left_out["hidden files"].append(relative(path))
            elif not path.is_file():
                left_out["broken links and special files"].append(relative(path))
            elif may_be_an_image(path):
                found.append(path)
            else:
                left_out["files that are not images by their ending"].append(relative(path))
    return sorted(found), dict(left_out)


def may_be_an_image(path: Path) -> bool:
    """An image ending, or none; or any other ending on a file that opens with the DICOM marker, as DICOM files
    are often named by their UID (1.2.840.113619.2.55…) or a number (IM00001.1)."""
    if path.suffix.lower() in config.IMAGE_SUFFIXES or not path.suffix:
        return True
    try:
        with path.open("rb") as file:
            return sniff_format(file.read(SNIFF_BYTES)) == "DICOM"
    except OSError:
        return False


def describe(left_out: dict[str, list[str]]) -> str:
    """`hidden files: 2 (.DS_Store, .notes.jpg); …`: a count of each kind with its first few names."""
    parts = []
    for kind, names in left_out.items():
        shown = ", ".join(map(printable, sorted(names)[:NAMES_SHOWN])) + (", …" if len(names) > NAMES_SHOWN else "")
        parts.append(f"{kind}: {len(names)} ({shown})")
    return "; ".join(parts)

