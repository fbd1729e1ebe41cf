"""Which files the command line finds in a folder, and the warning that names what it leaves out."""

import os
import shutil

import pytest

from fracture_app.file_search import NAMES_SHOWN, expand

from conftest import FRACATLAS_FIXTURES, xray_as_dicom

XRAYS = sorted((FRACATLAS_FIXTURES / "images").rglob("*.jpg"))


@pytest.fixture()
def inbox(tmp_path):
    """Two X-rays, one of them in a subfolder."""
    folder = tmp_path / "inbox"
    (folder / "nested").mkdir(parents=True)
    shutil.copy(XRAYS[0], folder / "first.jpg")
    shutil.copy(XRAYS[1], folder / "nested" / "accentué et espace.jpg")
    return folder


def test_a_plain_folder_of_x_rays_is_read_whole_without_a_warning(inbox):
    found, warnings = expand([inbox])
    assert found == [inbox / "first.jpg", inbox / "nested" / "accentué et espace.jpg"]
    assert warnings == []


def test_hidden_entries_are_left_out_and_named_in_one_warning(inbox):
    git_objects = inbox / ".git" / "objects" / "ab"
    git_objects.mkdir(parents=True)
    (git_objects / "cdef0123").write_bytes(b"x")
    shutil.copy(XRAYS[2], inbox / ".hidden.jpg")
    found, warnings = expand([inbox])
    assert not any(".git" in path.parts or path.name == ".hidden.jpg" for path in found)
    assert len(found) == 2
    assert warnings == [f"in the folder {inbox}, not read: hidden folders: 1 (.git); hidden files: 1 (.hidden.jpg)"]


def test_files_that_are_not_images_by_their_ending_are_counted_with_their_first_names(inbox):
    names = [f"report{number}.pdf" for number in range(NAMES_SHOWN + 2)]
    for name in names:
        (inbox / name).write_bytes(b"%PDF-1.4")
    _, warnings = expand([inbox])
    assert warnings == [f"in the folder {inbox}, not read: files that are not images by their ending: "
                        f"{len(names)} ({', '.join(names[:NAMES_SHOWN])}, …)"]


def test_a_linked_folder_is_searched_and_a_link_back_up_the_tree_does_not_loop(inbox, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(XRAYS[2], elsewhere / "linked.jpg")
    os.symlink(elsewhere, inbox / "from_elsewhere")
    os.symlink(inbox, inbox / "nested" / "back_up")
    found, warnings = expand([inbox])
    assert [path.name for path in found] == ["first.jpg", "linked.jpg", "accentué et espace.jpg"]
    assert warnings == [f"in the folder {inbox}, not read: links to a folder read another way: 1 "
                        f"({os.path.join('nested', 'back_up')})"]


def test_a_link_to_a_folder_inside_the_one_given_is_left_for_the_folder_itself(inbox):
    os.symlink(inbox / "nested", inbox / "a_shortcut")  # listed before the folder it leads to
    found, warnings = expand([inbox])
    assert found == [inbox / "first.jpg", inbox / "nested" / "accentué et espace.jpg"]
    assert warnings == [f"in the folder {inbox}, not read: links to a folder read another way: 1 (a_shortcut)"]


def test_of_two_links_to_one_folder_outside_the_first_by_name_is_searched(inbox, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(XRAYS[2], elsewhere / "linked.jpg")
    for name in ("z_link", "a_link"):
        os.symlink(elsewhere, inbox / name)
    found, warnings = expand([inbox])
    assert inbox / "a_link" / "linked.jpg" in found and inbox / "z_link" / "linked.jpg" not in found
    assert warnings == [f"in the folder {inbox}, not read: links to a folder read another way: 1 (z_link)"]


def test_a_name_with_a_newline_stays_on_the_warnings_one_line(inbox):
    (inbox / "notes\nwarning: all fine.pdf").write_bytes(b"%PDF-1.4")
    _, warnings = expand([inbox])
    assert warnings == [f"in the folder {inbox}, not read: files that are not images by their ending: 1 "
                        "(notes\\nwarning: all fine.pdf)"]


def test_a_broken_link_is_named_and_a_linked_file_is_read(inbox, tmp_path):
    os.symlink(tmp_path / "gone.jpg", inbox / "broken.jpg")
    os.symlink(XRAYS[2], inbox / "linked.jpg")
    found, warnings = expand([inbox])
    assert inbox / "linked.jpg" in found and inbox / "broken.jpg" not in found
    assert warnings == [f"in the folder {inbox}, not read: broken links and special files: 1 (broken.jpg)"]


def test_a_folder_that_cannot_be_opened_is_named(inbox, monkeypatch):
    """Made unreadable by refusing to list it, as chmod 000 is no bar to root (which CI runs as)."""
    locked = inbox / "locked"
    locked.mkdir()
    shutil.copy(XRAYS[2], locked / "inside.jpg")
    listing = os.scandir

    def refusing_locked(path="."):
        if os.fspath(path) == os.fspath(locked):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return listing(path)

    monkeypatch.setattr(os, "scandir", refusing_locked)
    found, warnings = expand([inbox])
    assert len(found) == 2
    assert warnings == [f"in the folder {inbox}, not read: folders that could not be opened: 1 "
                        "(locked (Permission denied))"]


def test_a_folder_with_nothing_to_read_gets_its_own_warning(tmp_path):
    (tmp_path / "notes.txt").write_text("no images")
    found, warnings = expand([tmp_path])
    assert found == []
    assert warnings[0] == f"no image files found in the folder {tmp_path}"


def test_a_file_given_by_name_is_kept_whatever_its_ending_so_that_its_row_says_why_it_is_not_read(tmp_path):
    paper = tmp_path / "scan.pdf"
    paper.write_bytes(b"%PDF-1.4")
    assert expand([paper, tmp_path / "missing.jpg"]) == ([paper, tmp_path / "missing.jpg"], [])


def test_dicom_files_named_by_their_uid_or_a_number_are_found_in_a_folder(tmp_path, fractured_xray_path):
    export = tmp_path / "pacs_export"
    export.mkdir()
    for name in ("1.2.840.113619.2.55.3.2831164355.320", "IM00001.1"):
        (export / name).write_bytes(xray_as_dicom(fractured_xray_path))
    (export / "viewer.log.1").write_text("a rotated log, not an image")
    found, warnings = expand([export])
    assert sorted(path.name for path in found) == ["1.2.840.113619.2.55.3.2831164355.320", "IM00001.1"]
    assert warnings == [f"in the folder {export}, not read: files that are not images by their ending: 1 "
                        "(viewer.log.1)"]


def test_webp_and_jpeg_2000_files_in_a_folder_are_found_and_read(tmp_path):
    from PIL import Image

    from fracture_app.imaging import read_image

    picture = Image.open(XRAYS[0]).convert("L")
    for name, kind in (("scan.webp", "WEBP"), ("scan.jp2", "JPEG2000")):
        picture.save(tmp_path / name, kind)
    found, _ = expand([tmp_path])
    assert sorted(path.name for path in found) == ["scan.jp2", "scan.webp"]
    assert [read_image(path).format for path in sorted(found)] == ["JPEG2000", "WEBP"]
