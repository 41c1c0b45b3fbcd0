"""Numbers measured by the chapters, saved so that the conclusion can gather them.

Each chapter calls :func:`record` for its headline numbers; chapter 6 calls
:func:`load_results` and :func:`summary_rows` to build its table. Nothing is
typed by hand: if a chapter has not run, its rows are missing and the
conclusion says so.

Results live in one JSON file per chapter in :func:`results_dir`
(``$AEBOOK_RESULTS``, else ``_results`` next to the running notebook, i.e.
``book/_results``). Each file records whether it came from quick mode, so
quick-mode numbers are never mixed silently with the book's.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from aebook.runtime import quick_mode

RESULTS_ENV = "AEBOOK_RESULTS"


def results_dir() -> Path:
    """Folder holding the per-chapter result files (``$AEBOOK_RESULTS`` or ``./_results``)."""
    return Path(os.environ.get(RESULTS_ENV) or Path.cwd() / "_results")


def _check_name(kind: str, name: str) -> None:
    if not name or not all(ch.isalnum() or ch in "._-" for ch in name):
        raise ValueError(f"bad {kind} {name!r}: use letters, digits, '.', '_' or '-'")


def record(chapter: str, key: str, value: float, *, unit: str = "", description: str = "",
           higher_is_better: bool | None = None, directory: Path | None = None) -> dict[str, Any]:
    """Save one measured number of ``chapter`` (e.g. ``"4.3"``) under ``key``; returns the stored entry.

    The chapter's file is rewritten atomically, keeping its other keys. A
    file written in the other mode (quick vs full) is replaced, not merged.
    """
    _check_name("chapter", chapter)
    _check_name("key", key)
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"result {chapter}/{key} is not a finite number: {value}")
    folder = directory or results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{chapter}.json"
    quick = quick_mode()
    data: dict[str, Any] = {"chapter": chapter, "quick": quick, "results": {}}
    if path.exists():
        try:
            old = json.loads(path.read_text())
            if old.get("quick") == quick and isinstance(old.get("results"), dict):
                data["results"] = old["results"]
        except (json.JSONDecodeError, AttributeError):
            pass  # a broken file is replaced
    entry = {"value": value, "unit": unit, "description": description, "higher_is_better": higher_is_better}
    data["results"][key] = entry
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)
    return entry


def load_results(directory: Path | None = None) -> dict[str, dict[str, Any]]:
    """All saved chapter files as ``{chapter: {"quick": bool, "results": {key: entry}}}``, sorted by chapter."""
    folder = directory or results_dir()
    out: dict[str, dict[str, Any]] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
            out[str(data["chapter"])] = {"quick": bool(data["quick"]), "results": dict(data["results"])}
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path} is not a results file ({type(err).__name__}: {err})") from None
    return dict(sorted(out.items(), key=lambda kv: [int(p) if p.isdigit() else p for p in kv[0].split(".")]))


def summary_rows(directory: Path | None = None) -> list[dict[str, Any]]:
    """One row per saved number: chapter, key, value, unit, description, quick."""
    rows = []
    for chapter, data in load_results(directory).items():
        for key, entry in data["results"].items():
            rows.append({"chapter": chapter, "key": key, "quick": data["quick"], **entry})
    return rows


def compare(results: dict[str, dict[str, Any]], chapter: str, key: str, other_key: str | float,
            other_chapter: str | None = None) -> dict[str, Any]:
    """Compare two saved numbers: ``{"a", "b", "difference", "a_better"}``.

    ``a`` is ``chapter/key``, ``b`` is ``other_chapter/other_key`` (same chapter by
    default) or, when ``other_key`` is a number, that fixed reference (e.g. a ratio of 1
    or a published figure). "Better" follows the ``higher_is_better`` flag saved with
    ``a``; a ``KeyError`` names any number that is missing (its chapter has not run).
    """
    other_chapter = other_chapter or chapter
    try:
        a = results[chapter]["results"][key]
        b = ({"value": float(other_key)} if isinstance(other_key, (int, float))
             else results[other_chapter]["results"][other_key])
    except KeyError:
        raise KeyError(f"result {chapter}/{key} or {other_chapter}/{other_key} is missing: "
                       "run those chapters first") from None
    if a.get("higher_is_better") is None:
        raise ValueError(f"result {chapter}/{key} does not say whether higher is better")
    diff = a["value"] - b["value"]
    return {"a": a["value"], "b": b["value"], "difference": diff,
            "a_better": diff > 0 if a["higher_is_better"] else diff < 0, "unit": a.get("unit", "")}
