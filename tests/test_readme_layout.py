"""The README's Layout section is what tools/readme_layout.py generates from the tree."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_tool():
    spec = importlib.util.spec_from_file_location("readme_layout", ROOT / "tools" / "readme_layout.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


readme_layout = _load_tool()


def test_readme_layout_section_is_current(capsys):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    a, b = readme_layout.find_section(readme)
    assert readme[a:b].rstrip("\n") == readme_layout.render_section(ROOT).rstrip("\n"), (
        "README.md's Layout section is stale: run `python tools/readme_layout.py`")
    assert readme_layout.main(["--check"], root=ROOT) == 0


def _tree(tmp_path):
    pkg = tmp_path / "src" / "selfprm"
    (pkg / "sub" / "inner").mkdir(parents=True)
    (pkg / "sub" / "__pycache__").mkdir()
    (pkg / "bare").mkdir()  # no __init__.py
    (pkg / "__init__.py").write_text('"""The package."""\n')
    (pkg / "sub" / "__init__.py").write_text('"""Sub: what it holds, told on one line\nand continued here."""\n')
    (pkg / "sub" / "inner" / "__init__.py").write_text("x = 1\n")  # no docstring
    (pkg / "sub" / "deep.py").write_text('"""Not listed: only top-level modules are."""\n')
    (pkg / "types.py").write_text('"""\n  The data model.\n\n  More.\n"""\n')
    (pkg / "cli.py").write_text("import os\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / ".ci").mkdir()
    return tmp_path


README = """# proj

## Before

text

## Layout

```
old layout
## not a heading: inside a code block
```

## After

```
kept
```
"""


def test_generated_section_lists_folders_modules_and_gaps(tmp_path):
    root = _tree(tmp_path)
    lines = readme_layout.render_section(root).splitlines()
    block = lines[lines.index("```") + 1:-1]
    block = block[:block.index("```")]
    assert [line.split()[0] for line in block] == [
        "src/selfprm/", "bare/", "cli.py", "sub/", "inner/", "types.py", "tests/", ".ci/"]
    text = dict((line.split(maxsplit=1) + [""])[:2] for line in block)
    assert text["src/selfprm/"] == "The package."
    assert text["bare/"] == "(no docstring)" and text["inner/"] == "(no docstring)" and text["cli.py"] == "(no docstring)"
    assert text["sub/"] == "Sub: what it holds, told on one line …"  # cut mid-sentence: marked
    assert text["types.py"] == "The data model."
    assert "__pycache__/" not in text and "deep.py" not in text and "benchmarks/" not in text
    assert "    inner/" in block[4]  # nested folders are indented under their parent


def test_rewrite_touches_only_the_layout_section_and_check_reports_staleness(tmp_path, capsys):
    root = _tree(tmp_path)
    readme = root / "README.md"
    readme.write_text(README)
    assert readme_layout.main(["--check"], root=root) == 1
    out = capsys.readouterr().out
    assert "-old layout" in out and "+src/selfprm/" in out

    assert readme_layout.main([], root=root) == 0
    new = readme.read_text()
    assert new.startswith("# proj\n\n## Before\n\ntext\n\n## Layout\n")
    assert new.endswith("```\n\n## After\n\n```\nkept\n```\n")
    assert "old layout" not in new and "## not a heading" not in new
    assert readme_layout.main(["--check"], root=root) == 0
    assert readme_layout.main([], root=root) == 0 and readme.read_text() == new  # idempotent


def test_layout_as_the_last_section_and_a_missing_heading(tmp_path):
    root = _tree(tmp_path)
    new = readme_layout.updated_readme("# proj\n\n## Layout\n\nold\n", root)
    assert new.endswith("```\n") and new.count("## Layout") == 1
    with pytest.raises(ValueError, match="Layout"):
        readme_layout.updated_readme("# proj\n\n## Other\n", root)
