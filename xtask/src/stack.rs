//! The stack of PRs: `patches/stack` lists, in order, the directories of the PRs, each one a
//! `git format-patch` series of its own (`series`, `0000-cover-letter.patch`, the patches) that
//! applies on top of the base and the PRs before it. An optional `tests` file in a PR's directory
//! names existing tests the PR fixes (one path under `tests/` per line); the tests its patches
//! add or change count without being listed.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::paths::ENZYME_PATCHES;
use crate::series::{self, Patch};

/// The file in `patches/` that lists the PRs in order.
pub const STACK_FILE: &str = "stack";
/// The file in a PR's directory that names existing tests it fixes.
pub const TESTS_FILE: &str = "tests";

/// One PR of the stack.
#[derive(Debug, Clone)]
pub struct Pr {
    /// The directory name, `NN-short-name`.
    pub name: String,
    pub patches: Vec<Patch>,
    /// Tests named in the `tests` file.
    pub listed_tests: Vec<String>,
}

impl Pr {
    /// The tests that judge this PR: those its patches add or change (a run-make test is its
    /// directory, `tests/run-make/autodiff/NAME`; other suites, the file, auxiliary files and
    /// `.stderr` files aside), then those of its `tests` file.
    pub fn tests(&self) -> Vec<String> {
        let mut out = BTreeSet::new();
        for file in self.patches.iter().flat_map(|p| &p.files) {
            if let Some(test) = test_of_file(file) {
                out.insert(test);
            }
        }
        let mut tests: Vec<String> = out.into_iter().collect();
        for t in &self.listed_tests {
            if !tests.contains(t) {
                tests.push(t.clone());
            }
        }
        tests
    }

    /// The files under `tests/` that the PR's patches touch.
    pub fn test_files(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self
            .patches
            .iter()
            .flat_map(|p| &p.files)
            .filter(|f| f.starts_with("tests/"))
            .collect();
        set.into_iter().cloned().collect()
    }
}

/// The test a file belongs to: `tests/run-make/SUITE/NAME/...` is the run-make test
/// `tests/run-make/SUITE/NAME`, `tests/{codegen-llvm,ui,...}/.../NAME.rs` is that file; anything
/// else (a `.stderr`, an `auxiliary/` file, a file outside `tests/`) is none.
pub fn test_of_file(file: &str) -> Option<String> {
    let rest = file.strip_prefix("tests/")?;
    if let Some(run_make) = rest.strip_prefix("run-make/") {
        // The directory that holds `rmake.rs`: two levels below run-make/ in the autodiff
        // suite (`autodiff/NAME/`), one level elsewhere.
        let parts: Vec<&str> = run_make.split('/').collect();
        let depth = if parts.first() == Some(&"autodiff") { 2 } else { 1 };
        if parts.len() <= depth {
            return None;
        }
        return Some(format!("tests/run-make/{}", parts[..depth].join("/")));
    }
    if file.ends_with(".rs") && !file.contains("/auxiliary/") {
        return Some(file.to_string());
    }
    None
}

/// The PR directory names listed in `patches/stack` (blank lines and `#` comments skipped).
fn read_stack_file(root: &Path) -> Result<Vec<String>> {
    let file = root.join(STACK_FILE);
    let text = fs::read_to_string(&file).with_context(|| {
        format!("cannot read {}; it must list the PR directories in order", file.display())
    })?;
    Ok(series::list_lines(&text))
}

/// The `tests` file of a PR directory, if any.
fn read_tests_file(dir: &Path) -> Result<Vec<String>> {
    let file = dir.join(TESTS_FILE);
    match fs::read_to_string(&file) {
        Ok(text) => Ok(series::list_lines(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", file.display())),
    }
}

/// Read the stack without linting it.
pub fn load(root: &Path) -> Result<Vec<Pr>> {
    read_stack_file(root)?
        .into_iter()
        .map(|name| {
            let dir = root.join(&name);
            let patches = series::load(&dir).with_context(|| format!("PR {name}"))?;
            let listed_tests = read_tests_file(&dir)?;
            Ok(Pr { name, patches, listed_tests })
        })
        .collect()
}

/// Every patch of the stack, in order.
pub fn flatten(prs: &[Pr]) -> Vec<Patch> {
    prs.iter().flat_map(|pr| pr.patches.iter().cloned()).collect()
}

/// The patches of the PRs before the one at `index`, then its own: what applies on the base to
/// give the tree with that PR.
pub fn through(prs: &[Pr], index: usize) -> Vec<Patch> {
    flatten(&prs[..=index])
}

/// Find a PR by its directory name, the name without its `NN-` prefix, or its number (1-based).
pub fn find(prs: &[Pr], wanted: &str) -> Result<usize> {
    let wanted = wanted.trim().trim_end_matches('/');
    let found = prs.iter().position(|pr| {
        pr.name == wanted
            || pr.name.split_once('-').is_some_and(|(n, rest)| {
                rest == wanted || n.parse::<usize>().ok() == wanted.parse::<usize>().ok()
            })
    });
    found.with_context(|| {
        let names: Vec<&str> = prs.iter().map(|p| p.name.as_str()).collect();
        format!("no PR {wanted:?} in the stack; it has {}", names.join(", "))
    })
}

/// Static checks of the whole stack: the stack file, each PR directory as a series (see
/// `series::lint`), its `tests` file, and no stray entries in `patches/` (the Enzyme series in
/// `enzyme/` aside). All problems are reported at once.
pub fn lint(root: &Path) -> Result<Vec<Pr>> {
    let names = read_stack_file(root)?;
    let mut problems = Vec::new();
    let mut prs = Vec::new();
    let mut seen = BTreeSet::new();
    if names.is_empty() {
        problems.push(format!("{STACK_FILE} lists no PR"));
    }
    for (i, name) in names.iter().enumerate() {
        if !seen.insert(name.as_str()) {
            problems.push(format!("{name} is listed twice in {STACK_FILE}"));
            continue;
        }
        let number = name.split_once('-').and_then(|(n, _)| n.parse::<usize>().ok());
        if number != Some(i + 1) {
            problems.push(format!(
                "{name}: the directory of PR {} must be named `{:02}-short-name`",
                i + 1,
                i + 1
            ));
        }
        let dir = root.join(name);
        if !dir.join(crate::paths::COVER_LETTER).is_file() {
            problems.push(format!(
                "{name} has no {}: write the PR description there",
                crate::paths::COVER_LETTER
            ));
        }
        match series::lint_with_extra(&dir, &[TESTS_FILE]) {
            Ok(patches) => {
                let listed_tests = read_tests_file(&dir).unwrap_or_default();
                for t in &listed_tests {
                    if !t.starts_with("tests/") {
                        problems
                            .push(format!("{name}/{TESTS_FILE}: {t} is not a path under tests/"));
                    }
                }
                prs.push(Pr { name: name.clone(), patches, listed_tests });
            }
            Err(e) => problems.push(format!("{name}: {e:#}")),
        }
    }
    let entries = fs::read_dir(root).with_context(|| format!("cannot list {}", root.display()))?;
    let mut stray: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f != STACK_FILE && f != ENZYME_PATCHES && !seen.contains(f.as_str()))
        .collect();
    stray.sort();
    for f in stray {
        problems.push(format!("{f} is in {} but not listed in {STACK_FILE}", root.display()));
    }
    for pr in &prs {
        if pr.tests().is_empty() {
            problems.push(format!(
                "{}: no test; a PR carries the regression test of its fix (or names the existing \
                 tests it fixes in {TESTS_FILE})",
                pr.name
            ));
        }
    }
    if !problems.is_empty() {
        bail!("stack lint failed:\n  - {}", problems.join("\n  - "));
    }
    Ok(prs)
}

#[cfg(test)]
pub mod tests {
    use std::path::PathBuf;

    use super::*;

    /// The series fixture's two commits as a stack of two PRs of one patch each, made the way
    /// `refresh` makes them (`git format-patch` of each PR's range).
    pub fn fixture() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let (tmp, repo, _) = series::tests::fixture();
        let root = tmp.path().join("stack");
        for (dir, range) in [("01-lib-b", "base..dev~1"), ("02-tests-b", "dev~1..dev")] {
            let dir = root.join(dir);
            crate::git::git(&repo)
                .args(["format-patch", "-q", "--no-signature", "--zero-commit", range, "-o"])
                .arg(&dir)
                .quiet()
                .run()
                .unwrap();
            let names: Vec<String> = fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            fs::write(dir.join("series"), format!("{}\n", names[0])).unwrap();
            fs::write(dir.join(crate::paths::COVER_LETTER), "cover\n").unwrap();
        }
        fs::write(root.join(STACK_FILE), "01-lib-b\n02-tests-b\n").unwrap();
        // The first PR fixes an existing test.
        fs::write(root.join("01-lib-b").join(TESTS_FILE), "tests/ui/old.rs\n").unwrap();
        (tmp, repo, root)
    }

    #[test]
    fn loads_and_lints_a_stack() {
        let (_tmp, _repo, root) = fixture();
        let prs = lint(&root).unwrap();
        assert_eq!(prs.len(), 2);
        assert_eq!(prs[0].tests(), ["tests/ui/old.rs"]);
        assert_eq!(prs[1].tests(), ["tests/t.rs"]);
        assert_eq!(flatten(&prs).len(), 2);
        assert_eq!(through(&prs, 0).len(), 1);
        assert_eq!(find(&prs, "02-tests-b").unwrap(), 1);
        assert_eq!(find(&prs, "lib-b").unwrap(), 0);
        assert_eq!(find(&prs, "2").unwrap(), 1);
        assert!(find(&prs, "nope").unwrap_err().to_string().contains("01-lib-b, 02-tests-b"));
    }

    #[test]
    fn lint_reports_every_problem() {
        let (_tmp, _repo, root) = fixture();
        fs::write(root.join(STACK_FILE), "01-lib-b\n03-tests-b\n").unwrap();
        fs::rename(root.join("02-tests-b"), root.join("03-tests-b")).unwrap();
        fs::remove_file(root.join("01-lib-b").join(TESTS_FILE)).unwrap();
        fs::create_dir_all(root.join("99-stray")).unwrap();
        fs::create_dir_all(root.join(ENZYME_PATCHES)).unwrap();
        let err = lint(&root).unwrap_err().to_string();
        assert!(!err.contains("enzyme is in"), "the Enzyme series is not a stray PR: {err}");
        assert!(err.contains("03-tests-b: the directory of PR 2 must be named `02-"), "{err}");
        assert!(err.contains("99-stray is in"), "{err}");
        assert!(err.contains("01-lib-b: no test"), "{err}");
    }

    #[test]
    fn tests_of_files() {
        let t = |f: &str| test_of_file(f);
        assert_eq!(t("tests/run-make/autodiff/x/rmake.rs").unwrap(), "tests/run-make/autodiff/x");
        assert_eq!(t("tests/run-make/autodiff/x/sub/a.rs").unwrap(), "tests/run-make/autodiff/x");
        assert_eq!(t("tests/run-make/rlib/rmake.rs").unwrap(), "tests/run-make/rlib");
        assert_eq!(t("tests/ui/autodiff/a.rs").unwrap(), "tests/ui/autodiff/a.rs");
        assert_eq!(t("tests/ui/autodiff/a.stderr"), None);
        assert_eq!(t("tests/ui/autodiff/auxiliary/l.rs"), None);
        assert_eq!(t("library/core/src/lib.rs"), None);
    }
}
