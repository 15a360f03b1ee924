//! `refresh`: regenerate patches/ from the commits `fixups..HEAD` of a development worktree
//! with `git format-patch`, rewrite `series`, and touch only the files whose content changed
//! (the cover letter is never touched; patches no longer in the series are deleted).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::git::{git, tracked_changes};
use crate::paths::*;

#[derive(clap::Args)]
pub struct Args {
    /// The development worktree whose branch is `fixups` plus the series commits
    #[arg(long, value_name = "DIR")]
    pub dev: Option<PathBuf>,
}

pub fn run(paths: &Paths, args: &Args) -> Result<()> {
    let dev = args.dev.clone().unwrap_or_else(|| paths.dev());
    if !dev.join(".git").exists() {
        bail!("{} is not a git worktree; pass --dev DIR", dev.display());
    }
    if !tracked_changes(&dev)?.is_empty() {
        eprintln!("warning: {} has uncommitted changes; they are not exported", dev.display());
    }
    let tmp = tempfile::tempdir()?;
    git(&dev)
        .args(["format-patch", "--no-signature", "--zero-commit"])
        .arg(format!("{FIXUPS_BRANCH}..HEAD"))
        .arg("-o")
        .arg(tmp.path())
        .quiet()
        .run()?;
    let changes = sync(tmp.path(), &paths.patches)?;
    println!("refresh: {changes}");
    Ok(())
}

/// Make `patches` hold exactly the `*.patch` files of `fresh` (plus the cover letter), with a
/// matching `series`. Returns a one-line account of what changed.
pub fn sync(fresh: &Path, patches: &Path) -> Result<String> {
    let mut names: Vec<String> = fs::read_dir(fresh)?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".patch"))
        .collect();
    names.sort();
    if names.is_empty() {
        bail!("no commits in {FIXUPS_BRANCH}..HEAD; nothing to export");
    }
    fs::create_dir_all(patches).with_context(|| format!("cannot create {}", patches.display()))?;
    let (mut added, mut updated, mut same, mut deleted) = (0, 0, 0, 0);
    for name in &names {
        let new = fs::read(fresh.join(name))?;
        let dest = patches.join(name);
        match fs::read(&dest) {
            Ok(old) if old == new => same += 1,
            old => {
                if old.is_ok() {
                    updated += 1
                } else {
                    added += 1
                }
                fs::write(&dest, new)
                    .with_context(|| format!("cannot write {}", dest.display()))?;
            }
        }
    }
    for entry in fs::read_dir(patches)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".patch") && name != COVER_LETTER && !names.contains(&name) {
            fs::remove_file(patches.join(&name))
                .with_context(|| format!("cannot delete stale {name}"))?;
            deleted += 1;
        }
    }
    let series = names.join("\n") + "\n";
    let series_path = patches.join("series");
    if fs::read_to_string(&series_path).ok().as_deref() != Some(series.as_str()) {
        fs::write(&series_path, series)
            .with_context(|| format!("cannot write {}", series_path.display()))?;
    }
    Ok(format!(
        "{} patches: {added} added, {updated} updated, {same} unchanged, {deleted} stale deleted",
        names.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncs_without_churn() {
        let (tmp, repo, patches) = crate::series::tests::fixture();
        git(&repo).args(["branch", FIXUPS_BRANCH, BASE_BRANCH]).quiet().run().unwrap();
        fs::write(patches.join("0009-old.patch"), "stale").unwrap();
        let paths = Paths::new(tmp.path().join("cache"), patches.clone());
        let before =
            fs::metadata(patches.join("0001-lib-add-b.patch")).unwrap().modified().unwrap();
        run(&paths, &Args { dev: Some(repo.clone()) }).unwrap();
        assert!(!patches.join("0009-old.patch").exists());
        assert!(patches.join(COVER_LETTER).exists());
        let after = fs::metadata(patches.join("0001-lib-add-b.patch")).unwrap().modified().unwrap();
        assert_eq!(before, after, "unchanged patches are not rewritten");
        crate::series::lint(&patches).unwrap();
        let series = fs::read_to_string(patches.join("series")).unwrap();
        assert_eq!(series, "0001-lib-add-b.patch\n0002-tests-cover-b.patch\n");
    }
}
