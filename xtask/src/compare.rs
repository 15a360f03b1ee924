//! `compare`: the mutation check for new tests. Round 1 applies only the series' test-only
//! patches on `fixups`, in the unpatched slot (the compiler `bench` and `wide` build), and
//! expects the named tests to FAIL (they catch the bug); round 2 applies the full series in the
//! series slot and expects them to PASS (the fix works). Each slot keeps its own build
//! directory, so neither round rebuilds the other's compiler.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::compiletest::{self, Outcome};
use crate::env::Chroot;
use crate::full::{self, SUITES};
use crate::paths::{Paths, Slot};
use crate::summary::{self, Row};
use crate::{apply, series};

#[derive(clap::Args)]
pub struct Args {
    /// Prebuilt Enzyme built against LLVM 22; it is installed as libEnzyme-22.so
    #[arg(long, value_name = "PATH")]
    pub enzyme_lib: PathBuf,
    /// The new tests, comma-separated: run-make dir names, file names or paths under tests/,
    /// with `#REVISION` to judge one revision of a test on its own
    #[arg(long, value_name = "A,B,C", value_delimiter = ',', required = true)]
    pub tests: Vec<String>,
}

pub fn run(paths: &Paths, args: &Args) -> Result<()> {
    let all = series::load(&paths.patches)?;
    let test_only: Vec<_> = all.iter().filter(|p| p.is_test_only()).cloned().collect();
    if test_only.is_empty() {
        bail!(
            "no patch in the series touches only tests/; split the new tests into their own commits"
        );
    }
    println!(
        "compare: test-only patches: {}",
        test_only.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
    );
    crate::cmd::require_root("cargo xtask compare")?;
    crate::env::verify(paths)?;
    full::prepare_enzyme(paths, &args.enzyme_lib)?;

    let mut rows = Vec::new();
    let result = rounds(paths, args, &all, &test_only, &mut rows);
    summary::print(&rows);
    let (before, after) = result?;

    println!(
        "{:<40}  {:<20}  {:<20}  verdict",
        "test", "round 1: tests only", "round 2: full series"
    );
    let mut bad = Vec::new();
    for (name, b, a) in args.tests.iter().zip(&before).zip(&after).map(|((n, b), a)| (n, b, a)) {
        let show = |o: &Option<Outcome>| o.map_or("did not run".to_string(), |o| o.to_string());
        let verdict = verdict(*b, *a);
        if verdict != "ok" {
            bad.push(name.as_str());
        }
        println!("{name:<40}  {:<20}  {:<20}  {verdict}", show(b), show(a));
    }
    if !bad.is_empty() {
        bail!("mutation check failed for: {}", bad.join(", "));
    }
    Ok(())
}

/// "ok" when the test fails without the fix and passes with it; otherwise what is wrong.
fn verdict(before: Option<Outcome>, after: Option<Outcome>) -> &'static str {
    match (before, after) {
        (Some(Outcome::Failed), Some(Outcome::Passed)) => "ok",
        (Some(Outcome::Failed), _) => "the fix does not make it pass",
        (Some(Outcome::Passed), _) => "passes without the fix: does not catch the bug",
        _ => "ignored or did not run without the fix",
    }
}

type Outcomes = Vec<Option<Outcome>>;

fn rounds(
    paths: &Paths,
    args: &Args,
    all: &[series::Patch],
    test_only: &[series::Patch],
    rows: &mut Vec<Row>,
) -> Result<(Outcomes, Outcomes)> {
    apply::apply_patches(paths, Slot::Unpatched, test_only)?;
    let mut targets = resolve_tests(&paths.tree(Slot::Unpatched), &args.tests)?;
    let mut seen = std::collections::HashSet::new();
    targets.retain(|t| seen.insert(t.clone()));
    full::write_shim(paths, Slot::Unpatched)?;
    apply::apply_patches(paths, Slot::Series, all)?;
    full::write_shim(paths, Slot::Series)?;
    let chroot = Chroot::enter(paths)?;
    let result = (|| {
        let before = round(&chroot, args, Slot::Unpatched, &targets, "round1", rows)?;
        let after = round(&chroot, args, Slot::Series, &targets, "round2", rows)?;
        Ok((before, after))
    })();
    chroot.leave()?;
    result
}

fn round(
    chroot: &Chroot,
    args: &Args,
    slot: Slot,
    targets: &[String],
    name: &str,
    rows: &mut Vec<Row>,
) -> Result<Outcomes> {
    let build = format!("{name}-build-stage1");
    summary::step(rows, &build, || {
        chroot.x(slot, &["build", "--stage", "1", "library"], &build).run()
    })?;
    let outcomes = full::run_tests(chroot, slot, targets, &format!("{name}-tests"), rows)?;
    Ok(args.tests.iter().map(|t| compiletest::lookup(&outcomes, t)).collect())
}

/// Map test names to paths x.py accepts (`tests/...`), looking in the work tree: a path
/// from the tree's root or from `tests/`, or a bare name searched in the autodiff suites.
fn resolve_tests(tree: &Path, names: &[String]) -> Result<Vec<String>> {
    names
        .iter()
        .map(|name| {
            // x.py runs every revision of a test; `compiletest::lookup` picks one out.
            let (name, _revision) = compiletest::split_revision(name.trim().trim_end_matches('/'));
            let found: Vec<String> = if name.contains('/') {
                [name.to_string(), format!("tests/{name}")].into_iter().collect()
            } else {
                SUITES
                    .iter()
                    .flat_map(|s| [format!("{s}/{name}"), format!("{s}/{name}.rs")])
                    .collect()
            };
            let found: Vec<String> = found.into_iter().filter(|p| tree.join(p).exists()).collect();
            match &found[..] {
                [one] => Ok(one.clone()),
                [] => bail!("no test {name} in {} after the test patches", tree.display()),
                _ => bail!("test name {name} is ambiguous ({}); pass a path", found.join(", ")),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_test_names() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("tests/run-make/autodiff/fat-lto")).unwrap();
        std::fs::create_dir_all(tmp.path().join("tests/codegen-llvm/autodiff")).unwrap();
        std::fs::write(tmp.path().join("tests/codegen-llvm/autodiff/markers.rs"), "").unwrap();
        let names = [
            "fat-lto",
            "markers",
            "run-make/autodiff/fat-lto",
            "tests/codegen-llvm/autodiff/markers.rs",
            "markers.rs#lto",
        ];
        let got = resolve_tests(tmp.path(), &names.map(String::from)).unwrap();
        assert_eq!(got[0], "tests/run-make/autodiff/fat-lto");
        assert_eq!(got[1], "tests/codegen-llvm/autodiff/markers.rs");
        assert_eq!(got[2], "tests/run-make/autodiff/fat-lto");
        assert_eq!(got[3], "tests/codegen-llvm/autodiff/markers.rs");
        assert_eq!(got[4], "tests/codegen-llvm/autodiff/markers.rs");
        assert!(resolve_tests(tmp.path(), &["nope".into()]).is_err());
    }

    #[test]
    fn verdicts() {
        use Outcome::*;
        assert_eq!(verdict(Some(Failed), Some(Passed)), "ok");
        assert!(verdict(Some(Passed), Some(Passed)).contains("does not catch the bug"));
        assert!(verdict(Some(Failed), Some(Failed)).contains("fix does not"));
        assert!(verdict(Some(Ignored), Some(Passed)).contains("ignored"));
        assert!(verdict(None, None).contains("did not run"));
    }
}
