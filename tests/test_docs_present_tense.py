"""The user-facing docs and config comments speak in the present tense.

README.md, docs/*.md and conf/**/*.yaml describe what the package does now: no ISO dates, no
git commit hashes and no diary of past runs ("this session", "first round", ...). Dated
history belongs in git and CHANGELOG.md, which is not scanned.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

ISO_DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")
# A lowercase hex word of 7-40 characters, as `git log` abbreviates or spells a commit. It
# must hold a digit and a letter a-f (so plain numbers and words such as "deadbeef" pass),
# and may not follow a word character (the "x" of a 0x literal, an identifier) or "#" (a
# colour such as #1f77b4ff).
HEX_WORD = re.compile(r"(?<![\w#])[0-9a-f]{7,40}(?![\w])")
DIARY = re.compile(
    r"this session|today's|re-run on the code of|first round|earlier session", re.IGNORECASE
)


def offences(line: str) -> list[str]:
    """The dates, commit-hash-like words and diary phrases in one line of text."""
    found = ISO_DATE.findall(line) + DIARY.findall(line)
    found += [
        word
        for word in HEX_WORD.findall(line)
        if re.search(r"\d", word) and re.search(r"[a-f]", word)
    ]
    return found


def scanned_files() -> list[Path]:
    """README.md, every docs/*.md and every conf/**/*.yaml (CHANGELOG.md is exempt)."""
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return files + sorted((ROOT / "conf").rglob("*.yaml"))


@pytest.mark.parametrize("path", scanned_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_no_dates_hashes_or_diary(path: Path) -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{number}: {', '.join(found)}"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if (found := offences(line))
    ]
    assert not bad, "past-tense history in user docs (move it to CHANGELOG.md):\n" + "\n".join(bad)


def test_the_scan_covers_readme_docs_and_conf() -> None:
    names = {str(path.relative_to(ROOT)) for path in scanned_files()}
    assert {"README.md", "docs/results.md", "conf/model/asl.yaml"} <= names
    assert "CHANGELOG.md" not in names


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("ran on commit 62f1e16 of the repo", ["62f1e16"]),
        ("the defaults since 2026-12-06", ["2026-12-06"]),
        ("HEAD (89591d4) against now", ["89591d4"]),
        (
            "a full hash 9509657c1726509627d0de679b28f06ebdf23867.",
            ["9509657c1726509627d0de679b28f06ebdf23867"],
        ),
        ("in this session and the first round", ["this session", "first round"]),
        ("Today's defaults, an Earlier Session", ["Today's", "Earlier Session"]),
        ("re-run on the code of the day", ["re-run on the code of"]),
    ],
)
def test_history_is_found(line: str, expected: list[str]) -> None:
    assert sorted(offences(line)) == sorted(expected)


@pytest.mark.parametrize(
    "line",
    [
        "an address 0x7f3a2b1c in a traceback",  # hex literal
        "colour #1f77b4ff for the baseline",  # hex colour with alpha
        "1234567 steps and 2048-d features",  # digits only
        "deadbeef and facade are words",  # letters only
        "lr 1.0e-4, 5e-05, decay 0.999",  # floats
        "d 512, 8 heads, 2,304 steps, T 1024",
        "asl_tal.objective_1a2b3c4d",  # part of an identifier
        "a 40-step window from 2026 onwards",  # a year alone is no date
        "2026-12 and 12-06",  # neither is a full ISO date
        "ABCDEF1234",  # git prints hashes in lowercase
    ],
)
def test_present_tense_text_passes(line: str) -> None:
    assert offences(line) == []
