"""The reader: every format built in memory from a real X-ray must give the same picture; bad input a clear refusal."""

from __future__ import annotations

import io
import resource
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageFile
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless

from fracture_app import imaging, pixels
from fracture_app.errors import ImageReadError
from fracture_app.imaging import XRay, read_image

from conftest import make_dicom

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
XRAY = FIXTURES / "fracatlas/images/Fractured/IMG0000044.jpg"  # grayscale, 256×205
TRUNCATED = FIXTURES / "fracatlas/images/Non_fractured/IMG0004028.jpg"
ALL_FIXTURES = sorted(FIXTURES.rglob("*.jpg"))
STEP = 1 / 255  # one 8-bit grey level


@pytest.fixture(scope="module")
def grey8() -> np.ndarray:
    with Image.open(XRAY) as im:
        return np.asarray(im.convert("L"))


@pytest.fixture(scope="module")
def expected(grey8) -> np.ndarray:
    return grey8.astype(np.float32) / 255


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 linear window, to [0, 1]."""
    return np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0, 1)


# --- real files -------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ALL_FIXTURES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_every_fixture_reads_as_grey_float(path):
    xray = read_image(path)
    with Image.open(path) as im:
        w, h = im.size
    assert isinstance(xray, XRay) and xray.format == "JPEG" and xray.source == path.name
    assert xray.pixels.dtype == np.float32 and xray.pixels.shape == xray.metadata["original_size"]
    if "missing_fraction" in xray.metadata:  # the truncated fixture: its grey fill is cut (tested below)
        assert xray.pixels.shape[0] < h and xray.pixels.shape[1] == w
    else:
        assert xray.pixels.shape == (h, w)
    assert 0.0 <= xray.pixels.min() < xray.pixels.max() <= 1.0
    assert 0.0 <= xray.colour_fraction <= 1.0


def test_jpeg_matches_pillow_decoding(expected):
    xray = read_image(XRAY)
    np.testing.assert_allclose(xray.pixels, expected, atol=1e-6)
    assert xray.colour_fraction == 0.0 and xray.metadata == {"original_size": expected.shape}


def test_truncated_fracatlas_jpeg_is_read():
    data = TRUNCATED.read_bytes()
    assert not data.endswith(b"\xff\xd9")
    with pytest.raises(OSError, match="truncated"):  # the quirk: a strict decoder refuses it
        Image.open(io.BytesIO(data)).load()
    xray = read_image(data, name=TRUNCATED.name)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # tolerance stays scoped to this one read
    filled = np.asarray(Image.open(io.BytesIO(data + b"\xff\xd9")).convert("L"))
    assert filled.shape == (454, 373)
    kept = xray.pixels.shape[0]
    assert xray.pixels.shape[1] == 373 and 400 < kept < 454
    np.testing.assert_allclose(xray.pixels, filled[:kept] / 255, atol=1e-6)
    assert np.all(filled[kept:, -8:] == 128), "every row cut off ends in the decoder's grey fill"
    assert np.all(filled[-1] == 128) and not np.all(filled[kept - 1, -8:] == 128), "and only those rows"
    assert xray.metadata["missing_fraction"] == pytest.approx(1 - kept / 454, abs=0.001)


@pytest.mark.parametrize("kept", [0.25, 0.6])
def test_cut_jpeg_is_read_if_enough_is_there_and_refused_otherwise(grey8, kept):
    data = encode(Image.fromarray(grey8), "JPEG", quality=90)
    try:
        xray = read_image(data[: int(len(data) * kept)])
    except ImageReadError as exc:
        assert kept == 0.25 and "incomplete image file" in str(exc)
    else:
        filled = np.asarray(Image.open(io.BytesIO(data[: int(len(data) * kept)] + b"\xff\xd9")).convert("L"))
        rows = xray.pixels.shape[0]
        assert xray.pixels.shape[1] == grey8.shape[1] and 0.2 < 1 - rows / grey8.shape[0] < 0.6
        assert np.all(filled[rows:, -8:] == 128) and not np.all(filled[rows - 1, -8:] == 128)
        assert xray.metadata["missing_fraction"] == pytest.approx(1 - rows / grey8.shape[0], abs=0.001)


def test_bytes_after_the_jpeg_end_marker_are_no_missing_picture(grey8, expected):
    """Phones append data after the end marker; the picture is whole and nothing should say otherwise."""
    whole = encode(Image.fromarray(grey8), "JPEG", quality=90)
    xray = read_image(whole + b"\x00trailer from a phone camera")
    np.testing.assert_array_equal(xray.pixels, read_image(whole).pixels)
    assert "missing_fraction" not in xray.metadata


# --- formats built from a real X-ray ---------------------------------------------------------------

def test_png_8_and_16_bit_give_the_same_picture(grey8, expected):
    png8 = read_image(encode(Image.fromarray(grey8), "PNG"))
    png16 = read_image(encode(Image.fromarray(grey8.astype(np.uint16) * 257), "PNG"))
    assert png16.format == png8.format == "PNG"
    np.testing.assert_allclose(png8.pixels, expected, atol=1e-6)
    np.testing.assert_allclose(png16.pixels, png8.pixels, atol=1e-4)
    assert "brightness_bits" not in png16.metadata  # the values fill the container: nothing was guessed


def test_12_bit_values_in_16_bit_png_are_scaled_by_their_depth(grey8, expected):
    xray = read_image(encode(Image.fromarray(grey8.astype(np.uint16) * 16), "PNG"))
    np.testing.assert_allclose(xray.pixels, expected, atol=2 * STEP)  # not near-black, not all white
    assert xray.metadata["brightness_bits"] == 12  # a guess, so the reader records it for the app to say


def test_rgb_grey_png_has_no_colour(grey8, expected):
    xray = read_image(encode(Image.fromarray(np.dstack([grey8] * 3)), "PNG"))
    np.testing.assert_allclose(xray.pixels, expected, atol=1e-6)
    assert xray.colour_fraction == pytest.approx(0.0, abs=1e-6)


def test_coloured_png_uses_bt601_luma_and_scores_coloured(grey8):
    rgb = np.dstack([grey8, np.roll(grey8, 40, axis=1), np.full_like(grey8, 40)])
    xray = read_image(encode(Image.fromarray(rgb), "PNG"))
    luma = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255
    np.testing.assert_allclose(xray.pixels, luma, atol=1e-5)
    assert xray.colour_fraction > 0.5


def test_a_tinted_radiograph_is_not_coloured(grey8):
    """A sepia or monitor-tinted X-ray is still grey in substance: each channel a function of brightness."""
    tinted = np.dstack([grey8, (grey8 * 0.8).astype(np.uint8), (grey8 * 0.6).astype(np.uint8)])
    assert read_image(encode(Image.fromarray(tinted), "PNG")).colour_fraction < 0.05


@pytest.mark.parametrize("blank", [
    np.zeros((300, 200), np.uint8),
    np.full((300, 200), 180, np.uint8),
    np.dstack([np.full((300, 200, 3), 200, np.uint8), np.zeros((300, 200), np.uint8)]),  # fully transparent
    np.where(np.random.default_rng(0).random((300, 200)) < 0.005, 255, 90).astype(np.uint8),  # a few specks
])
def test_a_blank_picture_is_refused_rather_than_answered(blank):
    with pytest.raises(ImageReadError, match="blank"):
        read_image(encode(Image.fromarray(blank), "PNG"))


def test_a_16_bit_picture_in_a_narrow_band_is_read_and_flagged_not_refused():
    ramp = np.tile(np.linspace(40_000, 41_000, 200), (300, 1)).astype(np.uint16)  # 1000 shades, 1.5% of the range
    xray = read_image(encode(Image.fromarray(ramp), "PNG"))
    assert 0 < xray.metadata["narrow_band"] < pixels.BLANK_SPREAD
    from fracture_app.cautions import cautions_for

    assert [caution.kind for caution in cautions_for(xray)] == ["narrow_band"]


def test_a_faint_but_real_picture_is_read():
    faint = np.tile(np.linspace(100, 130, 200), (300, 1)).astype(np.uint8)  # about 0.1 of the range, dim
    assert read_image(encode(Image.fromarray(faint), "PNG")).pixels.std() > 0


def test_rgba_is_composited_over_black(grey8, expected):
    opaque = np.dstack([grey8] * 3 + [np.full_like(grey8, 255)])
    half = opaque.copy()
    half[..., 3] = 128
    np.testing.assert_allclose(read_image(encode(Image.fromarray(opaque), "PNG")).pixels, expected, atol=1e-6)
    np.testing.assert_allclose(read_image(encode(Image.fromarray(half), "PNG")).pixels, expected * 128 / 255,
                               atol=1e-5)


def test_palette_png_and_gif(grey8, expected):
    palette = Image.fromarray(grey8).convert("P")
    for fmt in ("PNG", "GIF"):
        xray = read_image(encode(palette, fmt))
        assert xray.format == fmt
        np.testing.assert_allclose(xray.pixels, expected, atol=STEP + 1e-6)


def test_gif_takes_the_first_frame(grey8, expected):
    frames = [Image.fromarray(grey8), Image.fromarray(255 - grey8)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    xray = read_image(data)
    np.testing.assert_allclose(xray.pixels, expected, atol=STEP + 1e-6)
    assert xray.metadata["frames"] == 2


@pytest.mark.parametrize("fmt", ["TIFF", "BMP"])
def test_tiff_and_bmp(fmt, grey8, expected):
    xray = read_image(encode(Image.fromarray(grey8), fmt))
    assert xray.format == fmt
    np.testing.assert_allclose(xray.pixels, expected, atol=1e-6)


def test_16_bit_tiff(grey8, expected):
    xray = read_image(encode(Image.fromarray(grey8.astype(np.uint16) * 257), "TIFF"))
    np.testing.assert_allclose(xray.pixels, expected, atol=1e-4)


def test_cmyk_jpeg(grey8, expected):
    cmyk = Image.fromarray(np.dstack([grey8] * 3)).convert("CMYK")
    xray = read_image(encode(cmyk, "JPEG", quality=95))
    assert xray.format == "JPEG"
    assert np.abs(xray.pixels - expected).mean() < 0.02


def test_exif_orientation_is_applied(grey8):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    data = encode(Image.fromarray(grey8), "JPEG", quality=95, exif=exif)
    as_stored = np.asarray(Image.open(io.BytesIO(data))).astype(np.float32) / 255
    xray = read_image(data)
    assert xray.pixels.shape == grey8.shape[::-1] == xray.metadata["original_size"]
    np.testing.assert_allclose(xray.pixels, np.rot90(as_stored, k=-1), atol=1e-6)


def test_format_comes_from_content_not_name(tmp_path, expected):
    data = XRAY.read_bytes()
    assert read_image(data, name="scan.png").format == "JPEG"
    misnamed = tmp_path / "scan.png"
    misnamed.write_bytes(data)
    xray = read_image(misnamed)
    assert xray.format == "JPEG" and xray.source == "scan.png"


def test_path_with_spaces_and_accents(tmp_path, expected):
    folder = tmp_path / "Röntgen Bilder é"
    folder.mkdir()
    path = folder / "main gauche ü.jpg"
    path.write_bytes(XRAY.read_bytes())
    for source in (path, str(path)):
        xray = read_image(source)
        assert xray.source == "main gauche ü.jpg"
        np.testing.assert_allclose(xray.pixels, expected, atol=1e-6)


def test_bytes_are_named_upload_unless_named():
    assert read_image(XRAY.read_bytes()).source == "upload"
    assert read_image(XRAY.read_bytes(), name="hand.jpg").source == "hand.jpg"


# --- DICOM ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stored(grey8) -> np.ndarray:
    return grey8.astype(np.uint16) * 16 + 7  # 12-bit values, not starting at zero


def test_dicom_monochrome2_min_max(stored):
    xray = read_image(make_dicom(stored, BodyPartExamined="HAND", ViewPosition="PA"), name="hand.dcm")
    assert xray.format == "DICOM" and xray.source == "hand.dcm" and xray.colour_fraction == 0.0
    lo, hi = stored.min(), stored.max()
    np.testing.assert_allclose(xray.pixels, (stored - lo) / (hi - lo), atol=1e-6)
    meta = xray.metadata
    assert meta["Modality"] == "DX" and meta["BodyPartExamined"] == "HAND" and meta["ViewPosition"] == "PA"
    assert meta["PhotometricInterpretation"] == "MONOCHROME2" and meta["original_size"] == stored.shape
    assert all(isinstance(v, str) for k, v in meta.items() if k not in ("original_size", "no_display_window"))
    assert meta["no_display_window"] is True  # its contrast is spread from its values: the app says so
    assert not any("Doe" in v or "SECRET" in v for v in map(str, meta.values()))  # no identifiers


def test_dicom_monochrome1_inverted_gives_the_same_picture(stored):
    mono2 = read_image(make_dicom(stored))
    mono1 = read_image(make_dicom(4095 - stored, photometric="MONOCHROME1"))
    np.testing.assert_allclose(mono1.pixels, mono2.pixels, atol=1e-6)


def test_dicom_window(stored):
    xray = read_image(make_dicom(stored, WindowCenter=2000, WindowWidth=1500))
    np.testing.assert_allclose(xray.pixels, window(stored.astype(float), 2000, 1500), atol=1e-6)
    assert "no_display_window" not in xray.metadata


def test_dicom_monochrome1_is_inverted_after_the_window(stored):
    xray = read_image(make_dicom(stored, photometric="MONOCHROME1", WindowCenter=2000, WindowWidth=1500))
    np.testing.assert_allclose(xray.pixels, 1 - window(stored.astype(float), 2000, 1500), atol=1e-6)


def test_dicom_rescale_slope_and_intercept_before_the_window(stored):
    data = make_dicom(stored, RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=2000, WindowWidth=3000)
    xray = read_image(data)
    np.testing.assert_allclose(xray.pixels, window(stored * 2.0 - 1024, 2000, 3000), atol=1e-6)


def test_dicom_voi_lut_sequence(stored):
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    lut = np.minimum(65535, np.arange(4096) * 20)  # steeper than identity, clipping at the top
    item.LUTData = lut.astype("<u2").tobytes()
    xray = read_image(make_dicom(stored, VOILUTSequence=[item]))
    np.testing.assert_allclose(xray.pixels, np.minimum(65535, stored * 20.0) / 65535, atol=1e-6)


@pytest.mark.parametrize("layout", ["listed as numbers", "16-bit words", "16-bit words, implicit VR"])
def test_dicom_voi_lut_of_8_bit_entries(stored, layout):
    """pydicom 3.0 wraps such a table's indices at 256 (a saw-tooth); the reader looks them up itself."""
    item = Dataset()
    first = 100
    item.LUTDescriptor = [4096, first, 8]
    table = np.arange(4096) // 16
    if layout == "listed as numbers":
        item.LUTData = table.tolist()
        item["LUTData"].VR = "US"
    else:
        item.LUTData = table.astype("<u2").tobytes()
        item["LUTData"].VR = "OW"
    syntax = ImplicitVRLittleEndian if "implicit" in layout else ExplicitVRLittleEndian
    xray = read_image(make_dicom(stored, syntax=syntax, VOILUTSequence=[item]))
    expected = np.clip(stored.astype(int) - first, 0, 4095) // 16 / 255
    np.testing.assert_allclose(xray.pixels, expected, atol=1e-6)


def test_float_dicom_with_nan_rows_is_read_with_them_dark(stored):
    data = make_dicom(stored, pixels=False)
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.BitsAllocated = 32
    for key in ("BitsStored", "HighBit", "PixelRepresentation"):
        del ds[key]
    floats = stored.astype(np.float32) / 4095
    floats[:10] = np.nan
    ds.FloatPixelData = floats.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    xray = read_image(buffer.getvalue())
    assert np.all(xray.pixels[:10] == 0)
    expected = (floats[10:] - floats[10:].min()) / (floats[10:].max() - floats[10:].min())
    np.testing.assert_allclose(xray.pixels[10:], expected, atol=1e-5)


def test_dicom_window_that_misses_the_data_falls_back_to_min_max(stored):
    xray = read_image(make_dicom(stored, WindowCenter=40000, WindowWidth=10))
    assert xray.pixels.min() == 0.0 and xray.pixels.max() == 1.0
    assert xray.metadata["no_display_window"] is True


def test_dicom_multiframe_takes_the_first_frame(stored):
    xray = read_image(make_dicom(np.stack([stored, 4095 - stored])))
    np.testing.assert_allclose(xray.pixels, read_image(make_dicom(stored)).pixels, atol=1e-6)
    assert xray.metadata["frames"] == 2 and "frames" not in read_image(make_dicom(stored)).metadata


def test_dicom_rgb_becomes_grey(grey8, expected):
    xray = read_image(make_dicom(np.dstack([grey8] * 3), photometric="RGB", bits=8))
    np.testing.assert_allclose(xray.pixels, expected, atol=1e-5)
    assert xray.colour_fraction == pytest.approx(0.0, abs=1e-6)


def test_dicom_without_preamble(stored):
    data = make_dicom(stored, preamble=False)
    assert data[128:132] != b"DICM"
    xray = read_image(data)
    assert xray.format == "DICOM" and xray.pixels.shape == stored.shape


def test_dicom_without_pixel_data(stored):
    with pytest.raises(ImageReadError, match="DICOM without pixel data"):
        read_image(make_dicom(stored, pixels=False))


def test_compressed_dicom_without_a_decoder_names_what_to_install(stored):
    # Uncompressed bytes labelled JPEG 2000: no installed decoder can read them, as on a bare install.
    with pytest.raises(ImageReadError, match=r"install pylibjpeg and pylibjpeg-openjpeg \(or GDCM\)"):
        read_image(make_dicom(stored, syntax=JPEG2000Lossless))


def test_dicom_with_cut_pixel_data(stored):
    data = make_dicom(stored)
    with pytest.raises(ImageReadError, match="DICOM"):
        read_image(data[: len(data) - 5000])


# --- refusals ---------------------------------------------------------------------------------------

SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"></svg>'


@pytest.mark.parametrize("data, words", [
    (b"", "empty file"),
    (np.random.default_rng(0).bytes(5000), "unrecognised or corrupt image file"),
    (b"Patient history: fall on outstretched hand.\nPain over the snuffbox.\n" * 20, "not an image (text file)"),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", "looks like a PDF document"),
    (SVG, "looks like an SVG drawing; export it as PNG"),
    (b"<!DOCTYPE html><html><body><img src='x.jpg'></body></html>", "web page"),
    (b"PK\x03\x04" + bytes(100), "ZIP"),
    (b"\x89PNG\r\n\x1a\n" + bytes(40), "corrupt"),
    (b"\xff\xd8\xff\xe0" + bytes(40), "corrupt"),
], ids=["empty", "random", "text", "pdf", "svg", "html", "zip", "png-header-only", "jpeg-header-only"])
def test_bad_input_is_refused_in_words(data, words):
    with pytest.raises(ImageReadError, match=words.replace("(", r"\(").replace(")", r"\)")):
        read_image(data)


def png_header(width: int, height: int, idat: bytes = b"") -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def zeros_deflated(row_bytes: int, rows: int, rows_per_block: int = 100) -> bytes:
    """A valid zlib stream of rows×row_bytes zeros, built without ever holding them all (~0.4 s)."""
    block = bytes(row_bytes * rows_per_block)
    comp = zlib.compressobj(9)
    first = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    again = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)  # identical after a full flush
    adler = 1
    for _ in range(rows // rows_per_block):
        adler = zlib.adler32(block, adler)
    return first + again * (rows // rows_per_block - 1) + b"\x03\x00" + struct.pack(">I", adler)


def test_png_bomb_is_refused_quickly_without_allocating():
    bomb = png_header(30000, 30000, zeros_deflated(30001, 30000))  # decodes to 900 megapixels
    assert len(bomb) < 2_000_000
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ImageReadError, match="image too large: 30000×30000 pixels, 900 megapixels \\(limit 60 megapixels\\)"):
        read_image(bomb)
    assert time.perf_counter() - start < 2.0
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert grown_kib < 200 * 1024


def test_just_over_the_pixel_limit_is_refused_before_decoding():
    with pytest.raises(ImageReadError, match="image too large: 8000×8000 pixels"):
        read_image(png_header(8000, 8000, b"not even deflate"))


def test_one_pixel_image():
    with pytest.raises(ImageReadError, match="too small to read: 1×1 pixels"):
        read_image(encode(Image.new("L", (1, 1)), "PNG"))


@pytest.mark.parametrize("size", [(8000, 12), (12, 8000), (2000, 64)])
def test_slivers_are_refused_clearly(size):
    with pytest.raises(ImageReadError, match="too small to read|unusual shape"):
        read_image(encode(Image.new("L", size, 100), "PNG"))


def test_missing_file_folder_and_wrong_type(tmp_path):
    with pytest.raises(ImageReadError, match="file not found: nope.jpg"):
        read_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)
    with pytest.raises(ImageReadError):
        read_image(12345)


def test_file_too_large(monkeypatch, tmp_path):
    monkeypatch.setattr(imaging, "MAX_FILE_BYTES", 1000)
    data = XRAY.read_bytes()
    with pytest.raises(ImageReadError, match="file too large"):
        read_image(data)
    path = tmp_path / "big.jpg"
    path.write_bytes(data)
    with pytest.raises(ImageReadError, match="file too large"):
        read_image(path)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_device_with_no_size_is_read_only_up_to_the_limit(monkeypatch):
    monkeypatch.setattr(imaging, "MAX_FILE_BYTES", 1000)
    with pytest.raises(ImageReadError, match="file too large: more than the limit of"):
        read_image("/dev/zero")


def test_a_picture_over_the_pixel_limit_is_refused_without_a_python_warning(tmp_path):
    """Pillow only warns between its limit and twice that; the reader refuses such a file in its own words. In a
    fresh process, as the command line runs: pytest resets warning filters around each test."""
    big = tmp_path / "big.jpg"
    Image.new("L", (8000, 8000), 128).save(big, quality=50)
    script = f"from fracture_app.imaging import read_image\ntry:\n    read_image({str(big)!r})\nexcept Exception as e:\n    print(e)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert result.stdout.strip() == "image too large: 8000×8000 pixels, 64 megapixels (limit 60 megapixels)"
    assert "Warning" not in result.stderr, result.stderr


@pytest.mark.parametrize("error", [MemoryError, ValueError, RuntimeError, IndexError])
def test_unexpected_errors_become_image_read_errors(monkeypatch, error):
    def boom(*args):
        raise error("inside a decoder")
    monkeypatch.setattr(imaging, "_to_grey", boom)
    with pytest.raises(ImageReadError) as info:
        read_image(XRAY)
    assert isinstance(info.value.__cause__, error)
    assert ("memory" if error is MemoryError else "corrupt") in str(info.value)


def cautions_on(pixels: np.ndarray) -> list[str]:
    from fracture_app.cautions import cautions_for

    return [caution.kind for caution in cautions_for(read_image(encode(Image.fromarray(pixels), "PNG")))]


def test_every_fixture_xray_reads_without_an_image_caution():
    from fracture_app.cautions import cautions_for

    flagged = {path.name: kinds for path in ALL_FIXTURES
               if (kinds := [c.kind for c in cautions_for(read_image(path)) if c.kind in ("negative", "low_contrast")])}
    assert not flagged


def test_a_darkened_or_washed_out_xray_is_read_with_a_low_contrast_caution():
    pixels = np.asarray(Image.open(XRAY).convert("L"))
    assert "low_contrast" not in cautions_on(pixels)
    for dull in (pixels // 12, pixels // 8, 64 + pixels // 5, 160 + pixels // 6):  # dark; grey; pale
        assert cautions_on(dull.astype(np.uint8)) == ["low_contrast"], "and not a negative: flat says no polarity"
    # Darker still, 16 shades are left: no more than a posterised copy has, so no verdict at all.
    assert cautions_on((pixels // 16).astype(np.uint8)) == ["not_xray", "low_contrast"]


def test_a_negative_xray_is_read_with_a_caution():
    pixels = np.asarray(Image.open(XRAY).convert("L"))
    assert "negative" not in cautions_on(pixels)
    assert cautions_on(255 - pixels) == ["negative"]
    # A negative with one dark edge (a label strip, the film's end) along its whole length is still one: the
    # mean of the whole border, as the reader once took it, missed this one.
    strip = (255 - pixels).copy()
    strip[:, : pixels.shape[1] // 12] = 0
    assert cautions_on(strip) == ["negative"]
    stored_strip = pixels.copy()  # and an X-ray as stored with a bright strip down one side is not
    stored_strip[:, : pixels.shape[1] // 12] = 255
    assert "negative" not in cautions_on(stored_strip)


def test_a_picture_half_transparent_says_so_and_gets_no_negative_verdict():
    from fracture_app.cautions import TOO_INCOMPLETE, TRANSPARENT
    from fracture_app.diagnosis import Diagnosis

    pixels = np.asarray(Image.open(XRAY).convert("L"))
    alpha = np.full_like(pixels, 255)
    alpha[:, : pixels.shape[1] // 2] = 0  # the left half shows black
    xray = read_image(encode(Image.fromarray(np.stack([pixels, alpha], axis=-1), "LA"), "PNG"))
    assert xray.metadata["transparent_fraction"] == pytest.approx(0.5, abs=0.02)
    assert np.all(xray.pixels[:, : pixels.shape[1] // 2] == 0)
    low = Diagnosis(xray, 0.1, 0.5, None, {})
    assert low.verdict == "No verdict" and low.withheld_because.kind == TOO_INCOMPLETE
    assert [caution.kind for caution in low.cautions_before_the_answer] == [TRANSPARENT]
    assert Diagnosis(xray, 0.9, 0.5, None, {}).verdict == "Fractured"
    alpha[:, pixels.shape[1] // 10:] = 255  # a tenth: said, and the verdict given
    tenth = Diagnosis(read_image(encode(Image.fromarray(np.stack([pixels, alpha], axis=-1), "LA"), "PNG")), 0.1, 0.5,
                      None, {})
    assert tenth.verdict == "Not fractured" and "transparent: about 10% of the picture shown black" in tenth.notes


def test_a_picture_blank_only_through_its_transparency_says_so():
    pixels = np.asarray(Image.open(XRAY).convert("L"))
    in_the_alpha = Image.fromarray(np.stack([np.zeros_like(pixels), pixels], axis=-1), "LA")
    with pytest.raises(ImageReadError, match="blank once its transparency is applied"):
        read_image(encode(in_the_alpha, "PNG"))
    for colour_key in (None, 90):  # a colour key on a grey picture is not blended in, so it is not the reason
        with pytest.raises(ImageReadError, match=r"blank \(almost every pixel"):
            read_image(encode(Image.new("L", (300, 300), 90), "PNG", **({"transparency": colour_key} if colour_key else {})))
    opaque = Image.fromarray(np.stack([pixels, np.full_like(pixels, 255)], axis=-1), "LA")
    assert np.allclose(read_image(encode(opaque, "PNG")).pixels, pixels / 255, atol=1e-6)


def test_a_progressive_jpeg_cut_short_is_read_and_said_to_lack_detail():
    whole = encode(Image.open(XRAY).convert("L"), "JPEG", progressive=True, quality=95)
    cut = read_image(whole[: len(whole) // 2])
    assert cut.metadata.get("missing_detail") and "missing_fraction" not in cut.metadata
    assert "missing_detail" not in read_image(whole).metadata
    assert "missing_detail" not in read_image(whole + b"phone metadata after the end marker").metadata
