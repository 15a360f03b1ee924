//! `apply`: (re)create the work tree `CACHE/work/tree` on branch `build` at `fixups`, then
//! `git am --3way` the series (or its first N patches). A patch that fails is reported with
//! the hunk `git apply --check -v` rejects, and the tree is put back at `fixups`.

use anyhow::{Result, bail};

use crate::git::{abort_stale_am, git, git_commit, require_branch, tracked_changes};
use crate::paths::*;
use crate::series::{self, Patch};

#[derive(clap::Args)]
pub struct Args {
    /// Apply only the first N patches of the series (default: all)
    #[arg(long, value_name = "N")]
    pub upto: Option<usize>,
}

pub fn run(paths: &Paths, args: &Args) -> Result<()> {
    let all = series::load(&paths.patches)?;
    let n = args.upto.unwrap_or(all.len());
    if n > all.len() {
        bail!("--upto {n}, but the series has only {} patches", all.len());
    }
    apply_patches(paths, &all[..n])
}

/// Put the work tree at `fixups` (creating it if needed). Refuses to throw away changes to
/// tracked files; untracked files (the Enzyme shim) survive.
pub fn reset_tree(paths: &Paths) -> Result<()> {
    let (repo, tree) = (paths.repo(), paths.tree());
    require_branch(&repo, FIXUPS_BRANCH, "run `cargo xtask base` first")?;
    if !tree.exists() {
        git(&repo).args(["worktree", "prune"]).run()?;
        git(&repo)
            .args(["worktree", "add", "-B", BUILD_BRANCH])
            .arg(&tree)
            .arg(FIXUPS_BRANCH)
            .run()?;
        return Ok(());
    }
    if !tree.join(".git").exists() {
        bail!("{} exists but is not a git worktree; move it away and rerun", tree.display());
    }
    abort_stale_am(&tree)?;
    let changes = tracked_changes(&tree)?;
    let (rewritten, edits) = split_changes(&changes);
    if !edits.is_empty() {
        bail!(
            "{} has uncommitted changes to tracked files; commit them elsewhere or discard them \
             (`git -C {} reset --hard`) before applying:\n{}",
            tree.display(),
            tree.display(),
            edits.join("\n")
        );
    }
    if !rewritten.is_empty() {
        println!("apply: discarding the build's rewrite of {}", rewritten.join(", "));
    }
    git(&tree).args(["checkout", "-q", "-B", BUILD_BRANCH, FIXUPS_BRANCH]).run()?;
    git(&tree).args(["reset", "-q", "--hard", FIXUPS_BRANCH]).run()?;
    Ok(())
}

/// Split `git status --porcelain` lines into lock files that the build itself rewrites
/// (cargo prunes the entries of the workspace members `fixups` removes from Cargo.lock) and
/// real edits.
fn split_changes(porcelain: &str) -> (Vec<&str>, Vec<&str>) {
    let mut rewritten = Vec::new();
    let mut edits = Vec::new();
    for line in porcelain.lines().filter(|l| !l.trim().is_empty()) {
        match line.strip_prefix(" M ") {
            Some(path) if path == "Cargo.lock" || path.ends_with("/Cargo.lock") => {
                rewritten.push(path)
            }
            _ => edits.push(line),
        }
    }
    (rewritten, edits)
}

/// Reset the tree to `fixups`, then apply `patches` one `git am --3way` at a time.
pub fn apply_patches(paths: &Paths, patches: &[Patch]) -> Result<()> {
    reset_tree(paths)?;
    let tree = paths.tree();
    for (i, p) in patches.iter().enumerate() {
        println!("apply: [{}/{}] {} ({})", i + 1, patches.len(), p.name, p.subject);
        let am = git_commit(&tree)
            .args(["am", "-q", "--3way"])
            .arg(&p.path)
            .step("apply")
            .run_unchecked()?;
        if am.success {
            continue;
        }
        git_commit(&tree).args(["am", "--abort"]).run()?;
        let check =
            git(&tree).args(["apply", "--check", "-v"]).arg(&p.path).quiet().run_unchecked()?;
        git(&tree).args(["reset", "-q", "--hard", FIXUPS_BRANCH]).run()?;
        bail!(
            "{} does not apply on top of `{FIXUPS_BRANCH}` and the {i} patch(es) before it; the tree is back at \
             `{FIXUPS_BRANCH}`. `git apply --check -v` says:\n{}",
            p.name,
            check.text.trim_end()
        );
    }
    println!("apply: {} patch(es) applied in {}", patches.len(), tree.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn applies_and_recovers_from_a_bad_patch() {
        let (tmp, repo, patches) = series::tests::fixture();
        // Lay the fixture out as a cache: repo at base/rustc-1.95.0-src with a fixups branch.
        let paths = Paths::new(tmp.path().join("cache"), patches.clone());
        fs::create_dir_all(paths.base_parent()).unwrap();
        fs::rename(&repo, paths.repo()).unwrap();
        let g = |args: &[&str]| git_commit(&paths.repo()).args(args).quiet().run().unwrap();
        g(&["checkout", "-q", BASE_BRANCH]);
        fs::write(paths.repo().join("Cargo.lock"), "lock\n").unwrap();
        g(&["add", "Cargo.lock"]);
        g(&["commit", "-q", "-m", "lock"]);
        g(&["branch", FIXUPS_BRANCH, BASE_BRANCH]);
        fs::create_dir_all(paths.work()).unwrap();

        run(&paths, &Args { upto: None }).unwrap();
        assert!(fs::read_to_string(paths.tree().join("tests/t.rs")).is_ok());
        assert!(run(&paths, &Args { upto: Some(3) }).is_err());
        run(&paths, &Args { upto: Some(1) }).unwrap();
        assert!(!paths.tree().join("tests/t.rs").exists());

        // The build's rewrite of Cargo.lock is discarded; other edits are never thrown away.
        fs::write(paths.tree().join("Cargo.lock"), "rewritten\n").unwrap();
        run(&paths, &Args { upto: Some(1) }).unwrap();
        assert_eq!(fs::read_to_string(paths.tree().join("Cargo.lock")).unwrap(), "lock\n");
        fs::write(paths.tree().join("lib.rs"), "edited\n").unwrap();
        assert!(
            run(&paths, &Args { upto: None })
                .unwrap_err()
                .to_string()
                .contains("uncommitted changes")
        );
        git(&paths.tree()).args(["checkout", "lib.rs"]).quiet().run().unwrap();

        // An untracked file in the way of patch 2 makes `git am` fail.
        fs::create_dir_all(paths.tree().join("tests")).unwrap();
        fs::write(paths.tree().join("tests/t.rs"), "untracked\n").unwrap();
        let err = run(&paths, &Args { upto: None }).unwrap_err().to_string();
        assert!(err.contains("0002-tests-cover-b.patch does not apply"), "{err}");
        let head = git(&paths.tree()).args(["rev-parse", "HEAD"]).read().unwrap();
        assert_eq!(head, git(&paths.repo()).args(["rev-parse", FIXUPS_BRANCH]).read().unwrap());
    }
}
