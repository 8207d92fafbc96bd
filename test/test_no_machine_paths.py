"""No tracked file names a path of one machine: home folders, cache folders, temporary folders or checkouts.

Bundles record provenance by run name, command and checksum; documents name files relative to the
repository. The patterns below are assembled from pieces so that this file does not match itself.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
BINARY_SUFFIXES = (".onnx", ".data", ".npz", ".npy", ".png", ".jpg", ".jpeg", ".pt", ".mcap", ".db3")
SNIFF_BYTES = 8192  # a NUL byte in the first 8 kB marks a binary file, as git itself decides

# A path starts at a slash that does not continue a word, URL, relative path or `~` (so that
# `https://host/home/...`, `a/tmp/b` and `~/markers` are not absolute paths).
_START = r"(?<![\w.~:/$-])"
_SLASH = "/"
_NAME = r"[\w.@+-]+"
ABSOLUTE_PATTERNS = {
    "home folder": _START + _SLASH + "home" + _SLASH + _NAME,
    "root's home": _START + _SLASH + "root" + _SLASH,
    "macOS home folder": _START + _SLASH + "Users" + _SLASH + _NAME,
    "Windows home folder": r"\b[A-Za-z]:\\" + "Users" + r"\\" + _NAME,
    "cache folder": _START + _SLASH + r"(?:[\w.@+-]+/)*\." + "cache" + _SLASH,
    "temporary folder": _START + _SLASH + "tmp" + _SLASH + r"(?:pytest-|pip-|tmp[\w-]{5,}|bash_jobs)",
    "mounted volume": _START + _SLASH + "mnt" + _SLASH + _NAME,
    "checkout": _START + _SLASH + "work" + _SLASH + _NAME,
}
# Records (manifests, JSON data) must not hold even a home-relative path: it is where one machine kept a file.
HOME_RELATIVE = r"(?<![\w/])~" + _SLASH + r"[\w.][\w./-]*"


def _patterns(root: Path, record: bool) -> list[tuple[str, re.Pattern]]:
    patterns = [(reason, re.compile(pattern)) for reason, pattern in ABSOLUTE_PATTERNS.items()]
    root_text = root.as_posix()
    if len(root_text.strip("/")) >= 4:  # the checkout's own path, wherever the test runs; "/" or "/src" would be noise
        patterns.append(("this checkout", re.compile(_START + re.escape(root_text) + r"(?![\w.-])")))
    if record:
        patterns.append(("home-relative path in a record", re.compile(HOME_RELATIVE)))
    return patterns


def machine_paths(text: str, root: Path, record: bool = False) -> list[tuple[int, str, str]]:
    """(line number, reason, matched text) for every machine path in `text`."""
    found = []
    patterns = _patterns(root, record)
    for number, line in enumerate(text.splitlines(), start=1):
        for reason, pattern in patterns:
            for match in pattern.finditer(line):
                found.append((number, reason, match.group(0)))
    return found


def _tracked_text_files(root: Path) -> list[Path]:
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout (no git or no .git): nothing to list tracked files with")
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=False)
    if listing.returncode != 0:
        pytest.skip(f"git ls-files failed: {listing.stderr.decode(errors='replace').strip()}")
    files = []
    for name in listing.stdout.decode().split("\0"):
        path = root / name
        if not name or name.lower().endswith(BINARY_SUFFIXES) or not path.is_file():
            continue
        with open(path, "rb") as stream:
            if b"\0" in stream.read(SNIFF_BYTES):
                continue
        files.append(path)
    return files


def test_no_tracked_text_file_names_a_home_cache_temporary_or_checkout_path():
    findings = []
    for path in _tracked_text_files(REPOSITORY):
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, reason, matched in machine_paths(text, REPOSITORY, record=path.suffix == ".json"):
            findings.append(f"{path.relative_to(REPOSITORY)}:{number}: {reason}: {matched}")
    assert not findings, ("machine paths in tracked files (record run names, commands and checksums; name files "
                          "relative to the repository):\n" + "\n".join(findings))


@pytest.mark.parametrize("line", [
    "run: " + "/" + "root/.cache/fasthmr/decoder/runs/s4",
    '"data": "' + "/" + "home/alice/.cache/fasthmr/world/train" + '"',
    "see " + "/" + "Users/bob/src/fasthmr",
    "cached in " + "/" + "var/lib/x/" + ".cache/fasthmr",
    "pytest wrote " + "/" + "tmp/pytest-of-ci/pytest-3/test0",
    "mkdtemp gave " + "/" + "tmp/tmpa8x_2kq9/bundle",
    "checkout " + "/" + "work/main/fasthmr_model/default_bundle",
    "data on " + "/" + "mnt/datasets/emdb",
    "C:" + "\\" + "Users" + "\\" + "carol" + "\\" + "bundle",
])
def test_machine_paths_are_found(line):
    assert machine_paths(line, Path("/" + "nowhere-checkout"))


@pytest.mark.parametrize("line", [
    "ros2 launch fasthmr_ros fasthmr.launch.py image:=/camera/color/image_raw",
    "publishes ~/markers, ~/bodies and /diagnostics; frames come from /tf",
    "shared memory in /dev/shm; source /opt/ros/kilted/setup.bash",
    "https://github.com/home/user and https://example.org/tmp/tmpabcdef",
    "relative: docs/work/notes.md and data/tmp/pytest-x and a/root/b",
    "the cache: $XDG_CACHE_HOME/fasthmr/world (by default ~/.cache/fasthmr/world)",
])
def test_legitimate_text_is_not_flagged(line):
    assert not machine_paths(line, Path("/" + "nowhere-checkout"))


def test_records_may_not_hold_home_relative_paths():
    line = '"data": "~' + "/" + '.cache/fasthmr/world/train"'
    assert not machine_paths(line, Path("/" + "nowhere-checkout"))
    assert machine_paths(line, Path("/" + "nowhere-checkout"), record=True)


def test_the_checkout_path_is_found_wherever_the_repository_lives():
    root = Path("/" + "srv/builds/fasthmr-ros")
    assert machine_paths(f"bundle: {root}/fasthmr_model/default_bundle", root)
    assert not machine_paths(f"bundle: {root}-other/x", root)
