"""Diagnose X-ray files from the command line: one CSV or JSON row per input file on stdout.

    python -m fracture_app.predict [--format csv|json] [--models DIR] [--gradcam OUT_DIR] PATH...

Exit status: 0 when every input was diagnosed (and its overlays written), 1 when some were not or the output
could not be written, 2 for usage errors and a fracture model that does not load.
"""

import argparse
import csv
import json
import os
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path

from fracture_app import config, import_tensorflow_quietly
from fracture_app.diagnosis import models_failed  # no TensorFlow at import: the usage errors stay quick
from fracture_app.errors import FractureAppError
from fracture_app.file_search import expand
from fracture_app.tables import spreadsheet_safe

# New columns go last, so that scripts reading older output by position keep working.
COLUMNS = ("path", "fractured", "fracture_probability", "reading", "fracture_type", "fracture_type_probability",
           "warnings", "heatmaps", "error", "turned_back", "fracture_probability_as_uploaded")
BATCH_SIZE = 16
DECODE_WORKERS = 2
DECODE_AHEAD = 2 * BATCH_SIZE  # images read ahead of the models, so the CPU never waits for the disk
PROGRESS_MIN_FILES = 20


def read(path: Path):
    from fracture_app.imaging import read_image

    try:
        return read_image(path), None
    except FractureAppError as error:
        return None, str(error)


def row_for(path: Path, diagnosis=None, error: str | None = None, heatmaps: list[Path] = ()) -> dict:
    """Typed values (JSON keeps them); `csv_cell` turns them into text for CSV."""
    if diagnosis is not None and diagnosis.verdict_withheld:  # the reason is the error, as for a file not read
        error, diagnosis = f"no verdict: {'; '.join(diagnosis.notes)}", None
    if diagnosis is None:
        empty = dict.fromkeys(COLUMNS[1:])
        return {"path": str(path), **empty, "error": " ".join((error or "unknown error").split())}
    stated = diagnosis.stated()
    return {
        "path": str(path),
        "fractured": stated["fractured"],
        "fracture_probability": _rounded(stated["fracture_probability"]),
        "reading": stated["reading"],
        "fracture_type": stated["fracture_type"],
        "fracture_type_probability": _rounded(stated["fracture_type_probability"]),
        # Absent is null in JSON, as in the rows of files not read; CSV writes it as an empty cell either way.
        "warnings": "; ".join(stated["notes"]) or None,
        "heatmaps": "; ".join(map(str, heatmaps)) or None,
        "error": " ".join((error or "").split()) or None,
        # Where the fracture model read the picture turned back (its way up): which turn, and the score as given.
        "turned_back": stated["turned_back"],
        "fracture_probability_as_uploaded": _rounded(stated["fracture_probability_as_uploaded"]),
    }


def _rounded(value):
    return None if value is None else round(float(value), 4)


def csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return spreadsheet_safe(str(value))


def decoded_ahead(files: list[Path]):
    """Yield (path, (xray, error)) in order while up to DECODE_AHEAD later files decode on worker threads."""
    with ThreadPoolExecutor(DECODE_WORKERS) as pool:
        upcoming = iter(files)
        pending = deque((path, pool.submit(read, path)) for path in islice(upcoming, DECODE_AHEAD))
        while pending:
            path, future = pending.popleft()
            following = next(upcoming, None)
            if following is not None:
                pending.append((following, pool.submit(read, following)))
            yield path, future.result()


def diagnose_files(diagnoser, files: list[Path], gradcam_dir: Path | None, progress: bool):
    """Yield (path, diagnosis or None, error, heat-map files written) in input order, in batches."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(files), unit="img", file=sys.stderr, desc="diagnosing")
    stream = decoded_ahead(files)
    names_taken = set() if gradcam_dir is None else stems_in_use(gradcam_dir)
    while chunk := list(islice(stream, BATCH_SIZE)):
        readable = [(path, xray) for path, (xray, _) in chunk if xray is not None]
        diagnoses = dict(zip([p for p, _ in readable], diagnosed(diagnoser, [x for _, x in readable])))
        for path, (_, error) in chunk:
            diagnosis, written = diagnoses.get(path), []
            if isinstance(diagnosis, str):
                diagnosis, error = None, diagnosis
            # (a withheld verdict has no heat map, so it takes no overlay name from the files after it)
            if diagnosis is not None and gradcam_dir is not None and not diagnosis.verdict_withheld:
                written, error = _write_gradcam(diagnoser, diagnosis, gradcam_dir, unique_stem(path, names_taken))
            yield path, diagnosis, error, written
        if bar:
            bar.update(len(chunk))
    if bar:
        bar.close()


def diagnosed(diagnoser, xrays: list) -> list:
    """Each picture's Diagnosis, or what went wrong in the models on it: a batch that fails is taken again one
    picture at a time, so that the others in it are still read."""
    try:
        return diagnoser.diagnose_batch(xrays)
    except Exception:
        answers = []
        for xray in xrays:
            try:
                answers.extend(diagnoser.diagnose_batch([xray]))
            except Exception as error:
                answers.append(models_failed(error))
        return answers


def unique_stem(path: Path, taken: set[str]) -> str:
    """The file's stem, numbered when an earlier input (a same-named file in another folder) or an earlier run's
    overlay took it."""
    stem, number = path.stem, 1
    while stem.casefold() in taken:
        number += 1
        stem = f"{path.stem}_{number}"
    taken.add(stem.casefold())
    return stem


def overlay_name(stem: str, task: str) -> str:
    return f"{stem}_{task}_gradcam.png"


def stems_in_use(folder: Path) -> set[str]:
    """The stems of overlays an earlier run left in the folder, so that a second run numbers its own instead of
    writing over them."""
    taken = set()
    for task in config.TASKS:
        ending = overlay_name("", task)
        taken |= {path.name[:-len(ending)].casefold() for path in folder.glob(f"*{ending}")}
    return taken


def _write_gradcam(diagnoser, diagnosis, out_dir: Path, stem: str) -> tuple[list[Path], str | None]:
    """The overlays written, and what went wrong when one could not be (a name too long, a full disk)."""
    import cv2

    from fracture_app.gradcam import overlay

    try:
        heatmaps = diagnoser.heatmaps(diagnosis)
    except Exception as error:
        return [], f"could not make the heat map: {models_failed(error)}"
    written = []
    for task, heat in heatmaps.items():
        picture = overlay(diagnosis.xray.pixels, heat)
        target = out_dir / overlay_name(stem, task)
        # Encoded here and written by Python, not by cv2.imwrite: OpenCV crashes the process on a file name that
        # is not valid UTF-8 (an old archive's Latin-1 names), which Python writes as it found it.
        encoded, png = cv2.imencode(".png", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        try:
            if not encoded:
                raise OSError("the overlay could not be encoded")
            with target.open("xb") as file:  # never over a file that appeared since the folder was read
                file.write(png.tobytes())
        except FileExistsError:
            return written, f"could not write the heat map {target}: a file of that name appeared meanwhile"
        except OSError:
            return written, f"could not write the heat map {target}"
        written.append(target)
    return written, None


def prepare_gradcam_dir(folder: Path) -> str | None:
    """Make the heat-map folder before any model loads; what is wrong with it, or None."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        return f"--gradcam {folder} is a file, not a folder"
    except OSError as error:
        return f"cannot make the --gradcam folder {folder}: {error.strerror or error}"
    if not os.access(folder, os.W_OK):
        return f"cannot write into the --gradcam folder {folder}"
    return None


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fracture_app.predict", description=__doc__.split("\n\n")[0],
                                     epilog=config.NOTICE)
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image files or folders (searched recursively)")
    parser.add_argument("--format", choices=("csv", "json"), default="csv",
                        help="csv (default): one row per file, streamed; json: one list, written at the end")
    parser.add_argument("--models", type=Path, default=config.MODELS_DIR, help="folder with the .keras models and cards")
    parser.add_argument("--gradcam", type=Path, metavar="OUT_DIR", help="also write Grad-CAM overlays (PNG) here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        # A file name that is not valid UTF-8 is written with its odd bytes escaped (\udce9 for the byte e9),
        # not as a traceback.
        sys.stdout.reconfigure(errors="backslashreplace")
    files, warnings = expand(args.paths)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not files:
        print("error: no image files found in the given paths", file=sys.stderr)
        return 2
    if args.gradcam is not None and (problem := prepare_gradcam_dir(args.gradcam)):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    import_tensorflow_quietly()
    from fracture_app.diagnosis import Diagnoser

    try:
        diagnoser = Diagnoser.from_dir(args.models)
    except FractureAppError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if config.BINARY_TASK not in diagnoser.models:
        # A type guess alone would read as an answer, and the type model assumes a fracture is there.
        print(f"error: the fracture model did not load, so no verdict can be given: {'; '.join(diagnoser.problems.values())}",
              file=sys.stderr)
        return 2
    for problem in diagnoser.problems.values():
        print(f"warning: {problem}", file=sys.stderr)
    progress = not args.no_progress and len(files) >= PROGRESS_MIN_FILES and sys.stderr.isatty()
    rows = (row_for(path, diagnosis, error, heatmaps) for path, diagnosis, error, heatmaps in
            diagnose_files(diagnoser, files, args.gradcam, progress))
    try:
        failures = write_rows(rows, args.format, sys.stdout)
    except OSError as error:
        # The reader stopped early (`| head`: nothing more to say) or the disk is full. What is still buffered
        # goes nowhere, so that the flush at exit cannot fail again with a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        if not isinstance(error, BrokenPipeError):
            print(f"error: cannot write the output: {error.strerror or error}", file=sys.stderr)
        return 1
    if failures:
        print(f"warning: {failures} of {len(files)} files not diagnosed in full: the error column says why",
              file=sys.stderr)
    return 1 if failures else 0


def write_rows(rows, output_format: str, stream) -> int:
    """Stream rows as they come (CSV) or as one JSON list; returns how many rows carry an error."""
    failures = 0
    if output_format == "csv":
        writer = csv.DictWriter(stream, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            failures += bool(row["error"])
            writer.writerow({key: csv_cell(value) for key, value in row.items()})
            stream.flush()
        return failures
    collected = list(rows)
    failures = sum(bool(row["error"]) for row in collected)
    json.dump(collected, stream, indent=2, ensure_ascii=False)
    stream.write("\n")
    stream.flush()  # here, not at exit: a full disk or a closed pipe is then caught and said in one line
    return failures


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
