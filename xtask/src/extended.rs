//! The extended check: the exhaustive matrices behind the stack's run-make tests (every shape x
//! opt-level x module order x codegen units x incremental), which rustc's suite keeps to a few
//! representative builds. `xtask/extended/NAME/` holds what differs from the test
//! `tests/run-make/autodiff/NAME` of the work tree (its `rmake.rs`, programs of its own); the
//! harness lays the two out together, untracked, as `tests/run-make/autodiff/extended-NAME`, so
//! that compiletest runs them like any run-make test of the stack.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::paths::project_root;

/// The directory of the extended tests in this repository.
pub fn source() -> PathBuf {
    project_root().join("xtask").join("extended")
}

/// The run-make directory of the autodiff suite in `tree`.
fn suite(tree: &Path) -> PathBuf {
    tree.join("tests").join("run-make").join("autodiff")
}

/// Remove the extended tests from `tree`, so that a run of the whole autodiff suite without
/// `--extended` does not pick up those of an earlier run.
pub fn clear(tree: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(suite(tree)) else { return Ok(()) };
    for entry in entries.filter_map(|e| e.ok()) {
        if entry.file_name().to_string_lossy().starts_with("extended-") {
            fs::remove_dir_all(entry.path())
                .with_context(|| format!("cannot remove {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Lay out every extended test in `tree` and return their paths for x.py, sorted.
pub fn lay_out(source: &Path, tree: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = fs::read_dir(source)
        .with_context(|| format!("cannot list the extended tests in {}", source.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let base = suite(tree).join(&name);
        if !base.join("rmake.rs").is_file() {
            bail!(
                "extended test {name}: the work tree has no tests/run-make/autodiff/{name}; is the \
                 whole stack applied?"
            );
        }
        let dest = suite(tree).join(format!("extended-{name}"));
        if dest.exists() {
            fs::remove_dir_all(&dest)
                .with_context(|| format!("cannot clear {}", dest.display()))?;
        }
        fs::create_dir_all(&dest).with_context(|| format!("cannot create {}", dest.display()))?;
        for dir in [base, source.join(&name)] {
            for entry in fs::read_dir(&dir)? {
                let path = entry?.path();
                if path.is_file() {
                    let to = dest.join(path.file_name().expect("a file has a name"));
                    fs::copy(&path, &to).with_context(|| {
                        format!("cannot copy {} to {}", path.display(), to.display())
                    })?;
                }
            }
        }
        out.push(format!("tests/run-make/autodiff/extended-{name}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlays_the_extended_files_on_the_tests() {
        let tmp = tempfile::tempdir().unwrap();
        let (source, tree) = (tmp.path().join("extended"), tmp.path().join("tree"));
        let t = suite(&tree).join("nested");
        fs::create_dir_all(&t).unwrap();
        fs::write(t.join("rmake.rs"), "few").unwrap();
        fs::write(t.join("prog.rs"), "prog").unwrap();
        fs::create_dir_all(source.join("nested")).unwrap();
        fs::write(source.join("nested").join("rmake.rs"), "all").unwrap();
        let got = lay_out(&source, &tree).unwrap();
        assert_eq!(got, ["tests/run-make/autodiff/extended-nested"]);
        let dest = suite(&tree).join("extended-nested");
        assert_eq!(fs::read_to_string(dest.join("rmake.rs")).unwrap(), "all");
        assert_eq!(fs::read_to_string(dest.join("prog.rs")).unwrap(), "prog");
        // Again, after the test changed: nothing stale stays.
        fs::remove_file(t.join("prog.rs")).unwrap();
        lay_out(&source, &tree).unwrap();
        assert!(!dest.join("prog.rs").exists());

        clear(&tree).unwrap();
        assert!(!dest.exists() && t.exists());

        fs::create_dir_all(source.join("gone")).unwrap();
        let err = lay_out(&source, &tree).unwrap_err().to_string();
        assert!(err.contains("extended test gone"), "{err}");
    }
}
