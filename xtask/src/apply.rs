//! `apply`: commit the series (or its first N patches) on top of `fixups` with
//! `git am --3way` in a sparse temporary worktree, then check the result out in a slot's work
//! tree. Only files that differ from the tree's current commit are written, so re-applying an
//! unchanged series touches nothing and cargo (which compares modification times) rebuilds
//! only what a changed patch affects. A patch that fails is reported with the hunk
//! `git apply --check -v` rejects, and the work tree is left as it was.

use anyhow::{Context, Result, bail};

use crate::git::{TempWorktree, abort_stale_am, git, git_commit, require_branch, tracked_changes};
use crate::paths::*;
use crate::series::{self, Patch};
use crate::stack;

#[derive(clap::Args)]
pub struct Args {
    /// Apply only the first N patches of the stack (default: all)
    #[arg(long, value_name = "N", conflicts_with = "through")]
    pub upto: Option<usize>,
    /// Apply the stack up to and including this PR (directory name, name without its number,
    /// or number; 0 applies none)
    #[arg(long, value_name = "PR")]
    pub through: Option<String>,
}

pub fn run(paths: &Paths, args: &Args) -> Result<()> {
    let prs = stack::load(&paths.patches)?;
    let all = stack::flatten(&prs);
    let n = match (&args.through, args.upto) {
        (Some(pr), _) if pr.trim() == "0" => 0,
        (Some(pr), _) => stack::through(&prs, stack::find(&prs, pr)?).len(),
        (None, Some(n)) => n,
        (None, None) => all.len(),
    };
    if n > all.len() {
        bail!("--upto {n}, but the stack has only {} patches", all.len());
    }
    apply_patches(paths, Slot::Series, &all[..n])
}

/// Commit `patches` on top of `fixups` and check the result out in `slot`'s work tree.
pub fn apply_patches(paths: &Paths, slot: Slot, patches: &[Patch]) -> Result<()> {
    let rev = commit_series(paths, patches)?;
    sync_tree(paths, slot, &rev)?;
    println!(
        "apply: {} patch(es) applied in {} (branch `{}` at {})",
        patches.len(),
        paths.tree(slot).display(),
        slot.branch(),
        &rev[..rev.len().min(12)]
    );
    Ok(())
}

/// `git am --3way` each patch on top of `fixups` in a temporary worktree that checks out only
/// the files the series touches, and return the last commit. No work tree is touched.
pub fn commit_series(paths: &Paths, patches: &[Patch]) -> Result<String> {
    let repo = paths.repo();
    require_branch(&repo, FIXUPS_BRANCH, "run `cargo xtask base` first")?;
    if patches.is_empty() {
        return git(&repo).args(["rev-parse", FIXUPS_BRANCH]).read();
    }
    am_in_worktree(&repo, FIXUPS_BRANCH, &paths.work(), patches, "apply", |p, i, check| {
        format!(
            "{} does not apply on top of `{FIXUPS_BRANCH}` and the {i} patch(es) before it; no \
             work tree was changed. `git apply --check -v` says:\n{check}",
            p.name
        )
    })
}

/// `git am --3way` each of `patches` on top of `base` of `repo`, in a temporary worktree (under
/// `scratch`) that checks out only the files they touch, and return the last commit. The
/// patch's date is the committer date too, so that the same series always gives the same
/// commits. A patch that does not apply is an error, `failure(patch, index, git apply's
/// verdict)`; no work tree is touched either way.
pub fn am_in_worktree(
    repo: &std::path::Path,
    base: &str,
    scratch: &std::path::Path,
    patches: &[Patch],
    step: &str,
    failure: impl Fn(&Patch, usize, &str) -> String,
) -> Result<String> {
    let wt = TempWorktree::new(repo, base, scratch, Some(&series::touched_files(patches)))?;
    for (i, p) in patches.iter().enumerate() {
        println!("{step}: [{}/{}] {} ({})", i + 1, patches.len(), p.name, p.subject);
        let am = git_commit(&wt.path)
            .args(["am", "-q", "--3way", "--committer-date-is-author-date"])
            .arg(&p.path)
            .step(step)
            .run_unchecked()?;
        if am.success {
            continue;
        }
        git_commit(&wt.path).args(["am", "--abort"]).quiet().run()?;
        let check =
            git(&wt.path).args(["apply", "--check", "-v"]).arg(&p.path).quiet().run_unchecked()?;
        bail!("{}", failure(p, i, check.text.trim_end()));
    }
    git(&wt.path).args(["rev-parse", "HEAD"]).read()
}

/// Put `slot`'s work tree on its branch at `rev`, creating the worktree if needed. Refuses to
/// throw away changes to tracked files; untracked files (the Enzyme shim) survive.
pub fn sync_tree(paths: &Paths, slot: Slot, rev: &str) -> Result<()> {
    let (repo, tree, branch) = (paths.repo(), paths.tree(slot), slot.branch());
    if !tree.exists() {
        git(&repo).args(["worktree", "prune"]).run()?;
        git(&repo).args(["worktree", "add", "-q", "-B", branch]).arg(&tree).arg(rev).run()?;
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
        git(&tree).args(["checkout", "-q", "--"]).args(&rewritten).run()?;
    }
    // `checkout` (unlike `reset --hard`) refuses to overwrite untracked files in the way.
    git(&tree).args(["checkout", "-q", "-B", branch, rev]).run().with_context(|| {
        format!(
            "cannot check out the applied series in {}; is an untracked file in the way?",
            tree.display()
        )
    })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn applies_and_recovers_from_a_bad_patch() {
        let (tmp, repo, patches) = stack::tests::fixture();
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
        let tree = paths.tree(Slot::Series);
        let head = || git(&tree).args(["rev-parse", "HEAD"]).read().unwrap();

        run(&paths, &Args { upto: None, through: None }).unwrap();
        assert!(fs::read_to_string(tree.join("tests/t.rs")).is_ok());
        // Re-applying the same series rewrites nothing.
        let mtime = || fs::metadata(tree.join("lib.rs")).unwrap().mtime_nsec();
        let before = (head(), mtime());
        std::thread::sleep(std::time::Duration::from_millis(20));
        run(&paths, &Args { upto: None, through: None }).unwrap();
        assert_eq!((head(), mtime()), before, "an unchanged series must not touch the tree");

        assert!(run(&paths, &Args { upto: Some(3), through: None }).is_err());
        run(&paths, &Args { upto: Some(1), through: None }).unwrap();
        assert!(!tree.join("tests/t.rs").exists());
        run(&paths, &Args { upto: None, through: Some("tests-b".into()) }).unwrap();
        assert!(tree.join("tests/t.rs").exists());
        run(&paths, &Args { upto: None, through: Some("0".into()) }).unwrap();
        assert!(!tree.join("tests/t.rs").exists(), "--through 0 applies no PR");
        run(&paths, &Args { upto: None, through: Some("1".into()) }).unwrap();

        // The build's rewrite of Cargo.lock is discarded; other edits are never thrown away.
        fs::write(tree.join("Cargo.lock"), "rewritten\n").unwrap();
        run(&paths, &Args { upto: Some(1), through: None }).unwrap();
        assert_eq!(fs::read_to_string(tree.join("Cargo.lock")).unwrap(), "lock\n");
        fs::write(tree.join("lib.rs"), "edited\n").unwrap();
        assert!(
            run(&paths, &Args { upto: None, through: None })
                .unwrap_err()
                .to_string()
                .contains("uncommitted changes")
        );
        git(&tree).args(["checkout", "lib.rs"]).quiet().run().unwrap();

        // An untracked file in the way of patch 2: the tree stays where it was.
        let at_one = head();
        fs::create_dir_all(tree.join("tests")).unwrap();
        fs::write(tree.join("tests/t.rs"), "untracked\n").unwrap();
        let err = format!("{:#}", run(&paths, &Args { upto: None, through: None }).unwrap_err());
        assert!(err.contains("untracked file in the way"), "{err}");
        assert_eq!(head(), at_one);
        assert_eq!(fs::read_to_string(tree.join("tests/t.rs")).unwrap(), "untracked\n");
        fs::remove_file(tree.join("tests/t.rs")).unwrap();

        // A patch whose context does not match is named, with the rejected hunk.
        let p1 = patches.join("01-lib-b").join("0001-lib-add-b.patch");
        let text = fs::read_to_string(&p1).unwrap().replace(" fn a() {}", " fn z() {}");
        fs::write(&p1, text).unwrap();
        let err = run(&paths, &Args { upto: None, through: None }).unwrap_err().to_string();
        assert!(err.contains("0001-lib-add-b.patch does not apply"), "{err}");
        assert!(err.contains("lib.rs"), "{err}");
        assert_eq!(head(), at_one, "a failed apply must not move the tree");
    }
}
