//! `refresh`: regenerate the stack in patches/ from the commits `fixups..HEAD` of a development
//! worktree. The commits are cut into PRs by the current stack (each PR keeps its number of
//! patches) or by `--layout`; each PR's directory gets its patches from `git format-patch` of its
//! own range (numbered within the PR) and a matching `series`, and only files whose content
//! changed are touched (cover letters and `tests` files never; directories of PRs no longer in
//! the stack are deleted, the Enzyme series in patches/enzyme/ kept).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::git::{git, tracked_changes};
use crate::paths::*;
use crate::stack;

#[derive(clap::Args)]
pub struct Args {
    /// The development worktree whose branch is `fixups` plus the stack's commits
    #[arg(long, value_name = "DIR")]
    pub dev: Option<PathBuf>,
    /// How the commits are cut into PRs, in order: `NN-name:COUNT,...` (default: the PRs and
    /// patch counts of the current stack)
    #[arg(long, value_name = "PR:N,...", value_delimiter = ',')]
    pub layout: Vec<String>,
}

pub fn run(paths: &Paths, args: &Args) -> Result<()> {
    let dev = args.dev.clone().unwrap_or_else(|| paths.dev());
    if !dev.join(".git").exists() {
        bail!("{} is not a git worktree; pass --dev DIR", dev.display());
    }
    if !tracked_changes(&dev)?.is_empty() {
        eprintln!("warning: {} has uncommitted changes; they are not exported", dev.display());
    }
    let layout = if args.layout.is_empty() {
        stack::load(&paths.patches)?.into_iter().map(|pr| (pr.name, pr.patches.len())).collect()
    } else {
        parse_layout(&args.layout)?
    };
    let commits: Vec<String> = git(&dev)
        .args(["rev-list", "--reverse"])
        .arg(format!("{FIXUPS_BRANCH}..HEAD"))
        .read()?
        .lines()
        .map(String::from)
        .collect();
    let wanted: usize = layout.iter().map(|(_, n)| n).sum();
    if wanted != commits.len() {
        bail!(
            "{} has {} commits on `{FIXUPS_BRANCH}`, but the layout has {wanted} patches; pass \
             --layout NN-name:COUNT,... to cut them into PRs",
            dev.display(),
            commits.len()
        );
    }
    let tmp = tempfile::tempdir()?;
    let mut start = FIXUPS_BRANCH.to_string();
    let mut done = 0;
    let mut lines = Vec::new();
    for (name, count) in &layout {
        let end = &commits[done + count - 1];
        let out = tmp.path().join(name);
        git(&dev)
            .args(["format-patch", "--no-signature", "--zero-commit"])
            .arg(format!("{start}..{end}"))
            .arg("-o")
            .arg(&out)
            .quiet()
            .run()?;
        lines.push(format!("{name}: {}", sync(&out, &paths.patches.join(name))?));
        start = end.clone();
        done += count;
    }
    let names: Vec<&str> = layout.iter().map(|(n, _)| n.as_str()).collect();
    write_if_changed(&paths.patches.join(stack::STACK_FILE), &(names.join("\n") + "\n"))?;
    for entry in fs::read_dir(&paths.patches)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // A directory with a `series` that is not in the stack is a stale PR, except the
        // Enzyme series of `cargo xtask enzyme`.
        if entry.path().join("series").is_file()
            && !names.contains(&name.as_str())
            && name != ENZYME_PATCHES
        {
            fs::remove_dir_all(entry.path())
                .with_context(|| format!("cannot delete the stale PR {name}"))?;
            lines.push(format!("{name}: deleted (no longer in the stack)"));
        }
    }
    for line in lines {
        println!("refresh: {line}");
    }
    Ok(())
}

/// `NN-name:COUNT` items.
fn parse_layout(items: &[String]) -> Result<Vec<(String, usize)>> {
    items
        .iter()
        .map(|item| {
            let (name, count) = item
                .rsplit_once(':')
                .with_context(|| format!("--layout item {item:?} is not NN-name:COUNT"))?;
            let count: usize = count
                .parse()
                .ok()
                .filter(|&n| n > 0)
                .with_context(|| format!("--layout item {item:?}: COUNT must be at least 1"))?;
            Ok((name.to_string(), count))
        })
        .collect()
}

fn write_if_changed(path: &Path, text: &str) -> Result<()> {
    if fs::read_to_string(path).ok().as_deref() != Some(text) {
        fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
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
        let (tmp, repo, patches) = crate::stack::tests::fixture();
        git(&repo).args(["branch", FIXUPS_BRANCH, BASE_BRANCH]).quiet().run().unwrap();
        let old = patches.join("01-lib-b").join("0009-old.patch");
        fs::write(&old, "stale").unwrap();
        let paths = Paths::new(tmp.path().join("cache"), patches.clone());
        let first = patches.join("01-lib-b").join("0001-lib-add-b.patch");
        let before = fs::metadata(&first).unwrap().modified().unwrap();
        run(&paths, &Args { dev: Some(repo.clone()), layout: vec![] }).unwrap();
        assert!(!old.exists());
        assert!(patches.join("01-lib-b").join(COVER_LETTER).exists());
        let after = fs::metadata(&first).unwrap().modified().unwrap();
        assert_eq!(before, after, "unchanged patches are not rewritten");
        crate::stack::lint(&patches).unwrap();

        // One PR of both commits instead: the second directory goes.
        let layout = vec!["01-lib-b:2".to_string()];
        run(&paths, &Args { dev: Some(repo.clone()), layout }).unwrap();
        let series = fs::read_to_string(patches.join("01-lib-b").join("series")).unwrap();
        assert_eq!(series, "0001-lib-add-b.patch\n0002-tests-cover-b.patch\n");
        assert!(!patches.join("02-tests-b").exists());
        assert_eq!(fs::read_to_string(patches.join("stack")).unwrap(), "01-lib-b\n");

        let err = run(&paths, &Args { dev: Some(repo), layout: vec!["01-lib-b:3".into()] });
        assert!(err.unwrap_err().to_string().contains("has 2 commits"));
    }
}
