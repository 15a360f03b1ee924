//! Small git helpers on top of `cmd`: `git -C DIR` builders (plain, and with the harness
//! identity for commits), branch queries, and a temporary worktree that removes itself when
//! dropped.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cmd::Cmd;

/// `git -C dir`. `--no-optional-locks` keeps read-only commands (`status`) from rewriting
/// the index of a tree that someone else may be using.
pub fn git(dir: &Path) -> Cmd {
    Cmd::new("git").args(["--no-optional-locks", "-C"]).arg(dir)
}

/// `git -C dir` with the harness's identity, for commands that commit (`commit`, `am`), so
/// they work where no identity is configured.
pub fn git_commit(dir: &Path) -> Cmd {
    Cmd::new("git").args(["-c", "user.name=admk", "-c", "user.email=admk@localhost", "-C"]).arg(dir)
}

pub fn branch_exists(repo: &Path, branch: &str) -> bool {
    git(repo)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("refs/heads/{branch}"))
        .quiet()
        .run_unchecked()
        .is_ok_and(|o| o.success)
}

/// Fail with advice unless `branch` exists in `repo`.
pub fn require_branch(repo: &Path, branch: &str, advice: &str) -> Result<()> {
    if !repo.join(".git").exists() || !branch_exists(repo, branch) {
        anyhow::bail!("no branch `{branch}` in {}; {advice}", repo.display());
    }
    Ok(())
}

/// Tracked files with uncommitted changes (`git status --porcelain --untracked-files=no`).
/// (Not trimmed: the leading status column is significant.)
pub fn tracked_changes(dir: &Path) -> Result<String> {
    let out = git(dir).args(["status", "--porcelain", "--untracked-files=no"]).quiet().run()?;
    Ok(out.text.trim_end().to_string())
}

/// If a `git am` stopped half-way in `dir`, abort it. (`--git-path` prints a path relative
/// to `dir`, or an absolute one in a linked worktree; `join` handles both.)
pub fn abort_stale_am(dir: &Path) -> Result<()> {
    let rebase_apply = git(dir).args(["rev-parse", "--git-path", "rebase-apply"]).read()?;
    if dir.join(&rebase_apply).exists() {
        git(dir).args(["am", "--abort"]).run()?;
    }
    Ok(())
}

/// A detached worktree of `repo` at `rev` inside a temp dir; removed (and pruned) on drop.
pub struct TempWorktree {
    repo: PathBuf,
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TempWorktree {
    /// The temp dir is made inside `parent` so the checkout stays on the cache's filesystem.
    /// `only` limits the checkout to these repository paths (a sparse checkout: the whole
    /// rustc tree takes far longer to write than the few files a patch series touches);
    /// `None` checks out everything.
    pub fn new(
        repo: &Path,
        rev: &str,
        parent: &Path,
        only: Option<&[String]>,
    ) -> Result<TempWorktree> {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        let dir = tempfile::Builder::new()
            .prefix(".tmp-worktree-")
            .tempdir_in(parent)
            .with_context(|| format!("cannot create a temp dir in {}", parent.display()))?;
        let path = dir.path().join("wt");
        let wt = TempWorktree { repo: repo.to_path_buf(), path, _dir: dir };
        let mut add = git(repo).args(["worktree", "add", "-q", "--detach"]);
        if only.is_some() {
            add = add.arg("--no-checkout");
        }
        add.arg(&wt.path).arg(rev).quiet().run()?;
        if let Some(files) = only {
            // Anchored non-cone patterns match exactly these paths; `reset --hard` then
            // fills the index and writes only the matching files.
            git(&wt.path)
                .args(["sparse-checkout", "set", "--no-cone"])
                .args(files.iter().map(|f| sparse_pattern(f)))
                .quiet()
                .run()?;
            git(&wt.path).args(["reset", "-q", "--hard", "HEAD"]).quiet().run()?;
        }
        Ok(wt)
    }
}

/// An anchored sparse-checkout pattern that matches exactly `path` (glob characters
/// escaped).
fn sparse_pattern(path: &str) -> String {
    let mut out = String::from("/");
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Drop for TempWorktree {
    fn drop(&mut self) {
        // Deleting the checkout ourselves is much faster than `git worktree remove`; `prune`
        // then drops the admin entry of the now missing worktree.
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("warning: cannot delete temporary worktree {}: {e}", self.path.display());
        }
        let _ = git(&self.repo).args(["worktree", "prune"]).quiet().cleanup().run();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_patterns_are_anchored_and_literal() {
        assert_eq!(sparse_pattern("library/core/src/lib.rs"), "/library/core/src/lib.rs");
        assert_eq!(sparse_pattern("a/[x]*?.rs"), "/a/\\[x]\\*\\?.rs");
    }
}
