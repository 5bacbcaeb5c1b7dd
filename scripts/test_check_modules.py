"""Tests of scripts/check_modules.py on small crates made in a temp dir."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("check_modules.py")


def make_crate(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "src" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "src" / "lib.rs").touch()
    return root


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True, text=True)


def test_acyclic_crate_passes(tmp_path):
    crate = make_crate(tmp_path, {"a.rs": "//! A.\nuse crate::b::X;\n", "b.rs": "//! B.\npub struct X;\n"})
    out = run(crate)
    assert out.returncode == 0, out.stdout
    assert "no import circle" in out.stdout


def test_circle_through_grouped_use_and_super_is_found(tmp_path):
    crate = make_crate(
        tmp_path,
        {
            "a/mod.rs": "mod inner;\n",
            "a/inner.rs": "use super::super::b::Y;\n",
            "b.rs": "use crate::{c::Z, std_like};\n",
            "c.rs": "fn f() { crate::a::g(); }\n",
        },
    )
    out = run(crate)
    assert out.returncode == 1
    assert "import circle: a -> b -> c -> a" in out.stdout


def test_comments_do_not_count(tmp_path):
    crate = make_crate(tmp_path, {"a.rs": "//! A.\nuse crate::b;\n", "b.rs": "//! see crate::a\n/* crate::a */\n"})
    assert run(crate).returncode == 0


def test_long_file_fails(tmp_path):
    crate = make_crate(tmp_path, {"a.rs": "//! A.\n" + "\n" * 11})
    out = run("--max-lines", "10", crate)
    assert out.returncode == 1
    assert "12 lines (limit 10)" in out.stdout


def test_an_exported_macro_belongs_to_its_module_and_dollar_crate_is_no_edge(tmp_path):
    crate = make_crate(
        tmp_path,
        {
            "t.rs": "//! T.\n#[macro_export]\nmacro_rules! each { () => { $crate::u::f() }; }\n",
            "u.rs": "//! U.\nfn g() { crate::each!(); }\n",
        },
    )
    out = run("--graph", crate)
    assert "u -> t" in out.stdout
    assert "t -> u" not in out.stdout


def test_a_module_without_a_doc_fails(tmp_path):
    crate = make_crate(tmp_path, {"a/mod.rs": "mod b;\n", "a/b.rs": "//! B.\n"})
    out = run(crate)
    assert out.returncode == 1
    assert "top-level module 'a' has no //! doc" in out.stdout
