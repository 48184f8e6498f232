"""Every Python snippet of README.md, docs/ and adapters/README.md runs as written, in an empty
folder and a fresh namespace. A snippet whose first line is ``# needs the Hub`` is skipped here
(no network); it must still compile."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "adapters" / "README.md"]
HUB = "# needs the Hub"


def _snippets() -> list:
    """One ``pytest.param`` per Python block of :data:`FILES`, named by its file and number."""
    found = []
    for path in FILES:
        blocks = re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.S | re.M)
        found += [pytest.param(code, id=f"{path.relative_to(ROOT)}#{number}")
                  for number, code in enumerate(blocks, start=1)]
    return found


@pytest.mark.parametrize("code", _snippets())
def test_snippet_runs_as_written(code, tmp_path, monkeypatch):
    compiled = compile(code, "<snippet>", "exec")
    if code.startswith(HUB):
        pytest.skip("needs the Hub")
    monkeypatch.chdir(tmp_path)
    exec(compiled, {"__name__": "__snippet__"})


def test_every_file_was_read():
    assert sum(1 for _ in _snippets()) >= 10
