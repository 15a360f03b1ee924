//! The patch series: read `patches/series`, parse each patch as a `git format-patch` mail,
//! lint the directory, and prove the series applies in order to a pristine `base`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::git::{TempWorktree, git, git_commit};
use crate::paths::COVER_LETTER;

/// One patch of the series.
#[derive(Debug, Clone)]
pub struct Patch {
    pub name: String,
    pub path: PathBuf,
    pub subject: String,
    /// Every path the diff touches (old and new names).
    pub files: Vec<String>,
}

/// The file names listed in `series` (blank lines and `#` comments skipped).
pub fn read_series_file(patches: &Path) -> Result<Vec<String>> {
    let file = patches.join("series");
    let text = fs::read_to_string(&file).with_context(|| {
        format!("cannot read {}; it must list the patches in order", file.display())
    })?;
    Ok(list_lines(&text))
}

/// The entries of a list file (`series`, `stack`, `tests`): one per line, trimmed, blank lines
/// and `#` comments skipped.
pub fn list_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// Parse a `git format-patch` mail: `From <sha> ...`, `From:`, `Subject: [PATCH...]`, a
/// non-empty message body, then `---` and at least one `diff --git`.
pub fn parse_mail(name: &str, text: &str) -> Result<Patch> {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("");
    let sha = first.strip_prefix("From ").and_then(|r| r.split(' ').next()).unwrap_or("");
    if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!(
            "{name}: not a git format-patch mail (first line must be `From <sha> ...`, got {first:?})"
        );
    }
    let (mut from, mut subject, mut in_subject) = (false, None::<String>, false);
    for line in lines.by_ref() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            // A folded header line continues the previous header.
            if let Some(s) = subject.as_mut().filter(|_| in_subject) {
                s.push_str(line);
            }
            continue;
        }
        from |= line.starts_with("From: ");
        in_subject = line.starts_with("Subject: ");
        if let Some(s) = line.strip_prefix("Subject: ") {
            subject = Some(s.to_string());
        }
    }
    if !from {
        bail!("{name}: mail has no `From:` header");
    }
    let subject = subject.with_context(|| format!("{name}: mail has no `Subject:` header"))?;
    let Some(title) =
        subject.strip_prefix("[PATCH").and_then(|s| s.split_once(']')).map(|(_, t)| t.trim())
    else {
        bail!("{name}: subject must start with `[PATCH` (got {subject:?})");
    };
    let mut body = false;
    let mut saw_separator = false;
    for line in lines.by_ref() {
        if line == "---" {
            saw_separator = true;
            break;
        }
        body |= !line.trim().is_empty();
    }
    if !saw_separator {
        bail!("{name}: no `---` line separating the message from the diff");
    }
    if !body {
        bail!("{name}: empty commit message body; explain the problem, the fix and the testing");
    }
    let mut files = BTreeSet::new();
    for line in lines {
        if let Some((a, b)) = line.strip_prefix("diff --git a/").and_then(|r| r.split_once(" b/")) {
            files.insert(a.to_string());
            files.insert(b.to_string());
        }
    }
    if files.is_empty() {
        bail!("{name}: no `diff --git` after the `---` line");
    }
    Ok(Patch {
        name: name.to_string(),
        path: PathBuf::new(),
        subject: title.to_string(),
        files: files.into_iter().collect(),
    })
}

/// Read and parse the series without linting the directory.
pub fn load(patches: &Path) -> Result<Vec<Patch>> {
    read_series_file(patches)?
        .iter()
        .map(|name| {
            let path = patches.join(name);
            let text = fs::read_to_string(&path).with_context(|| {
                format!("series lists {name}, but cannot read {}", path.display())
            })?;
            Ok(Patch { path, ..parse_mail(name, &text)? })
        })
        .collect()
}

/// Static checks: the series file, every listed patch, and no stray files in `patches/`.
/// All problems are reported at once.
#[cfg(test)]
pub fn lint(patches: &Path) -> Result<Vec<Patch>> {
    lint_with_extra(patches, &[])
}

/// `lint`, with `extra` naming more files the directory may hold.
pub fn lint_with_extra(patches: &Path, extra: &[&str]) -> Result<Vec<Patch>> {
    let names = read_series_file(patches)?;
    let mut problems = Vec::new();
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    if names.is_empty() {
        problems.push("series lists no patches".to_string());
    }
    for name in &names {
        if !seen.insert(name.as_str()) {
            problems.push(format!("{name} is listed twice in series"));
        }
        if name == COVER_LETTER {
            problems
                .push(format!("{name} must not be in series (git am cannot apply a cover letter)"));
            continue;
        }
        let path = patches.join(name);
        match fs::read_to_string(&path) {
            Ok(text) => match parse_mail(name, &text) {
                Ok(p) => out.push(Patch { path, ..p }),
                Err(e) => problems.push(e.to_string()),
            },
            Err(e) => problems.push(format!("{name} is listed in series but cannot be read: {e}")),
        }
    }
    let entries =
        fs::read_dir(patches).with_context(|| format!("cannot list {}", patches.display()))?;
    let mut stray: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| {
            f != "series"
                && f != COVER_LETTER
                && !extra.contains(&f.as_str())
                && !seen.contains(f.as_str())
        })
        .collect();
    stray.sort();
    for f in stray {
        problems.push(format!(
            "{f} is in {} but not listed in series (add it or delete it)",
            patches.display()
        ));
    }
    if !problems.is_empty() {
        bail!("patch series lint failed:\n  - {}", problems.join("\n  - "));
    }
    Ok(out)
}

/// Every path any patch of `series` touches, sorted and unique.
pub fn touched_files(series: &[Patch]) -> Vec<String> {
    let set: BTreeSet<&String> = series.iter().flat_map(|p| &p.files).collect();
    set.into_iter().cloned().collect()
}

/// Git attributes for `check_applies`: compiletest's expected-output files end with a blank line.
const EXPECTED_OUTPUT_ATTRIBUTES: &str =
    "*.stderr whitespace=-blank-at-eof\n*.stdout whitespace=-blank-at-eof\n";

/// Apply the whole series in order to a fresh worktree of `base_rev` (no 3-way merge,
/// whitespace errors fatal). The error names the first patch that does not apply.
pub fn check_applies(
    repo: &Path,
    base_rev: &str,
    series: &[Patch],
    tmp_parent: &Path,
) -> Result<()> {
    let wt = TempWorktree::new(repo, base_rev, tmp_parent, Some(&touched_files(series)))?;
    // The expected output of a ui test ends with a blank line, as compiletest writes it; the
    // other whitespace rules hold there too.
    let attributes = tmp_parent.join(".expected-output.gitattributes");
    std::fs::write(&attributes, EXPECTED_OUTPUT_ATTRIBUTES)
        .with_context(|| format!("cannot write {}", attributes.display()))?;
    let attributes = format!("core.attributesFile={}", attributes.display());
    for p in series {
        let check = git(&wt.path)
            .args(["-c", &attributes, "apply", "--check", "--whitespace=error-all", "-v"])
            .arg(&p.path)
            .quiet()
            .run_unchecked()?;
        if !check.success {
            bail!(
                "{} does not apply to `{base_rev}` after the patches before it, or has whitespace errors:\n{}",
                p.name,
                check.text.trim_end()
            );
        }
        git_commit(&wt.path)
            .args(["-c", &attributes, "am", "--whitespace=error-all"])
            .arg(&p.path)
            .quiet()
            .run()
            .with_context(|| format!("git am of {} failed", p.name))?;
    }
    Ok(())
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::cmd::Cmd;

    /// A tiny repo with branch `base` and two format-patch patches on top, in `patches/`.
    pub fn fixture() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        let patches = tmp.path().join("patches");
        fs::create_dir_all(&repo).unwrap();
        fs::create_dir_all(&patches).unwrap();
        let g = |args: &[&str]| git_commit(&repo).args(args).quiet().run().unwrap();
        g(&["init", "-q", "-b", "base"]);
        fs::write(repo.join("lib.rs"), "fn a() {}\n").unwrap();
        g(&["add", "-A"]);
        g(&["commit", "-q", "-m", "base"]);
        g(&["checkout", "-q", "-b", "dev"]);
        fs::write(repo.join("lib.rs"), "fn a() {}\nfn b() {}\n").unwrap();
        g(&["commit", "-q", "-am", "lib: add b\n\nBecause b is needed."]);
        fs::create_dir_all(repo.join("tests")).unwrap();
        fs::write(repo.join("tests/t.rs"), "// test b\n").unwrap();
        g(&["add", "-A"]);
        g(&["commit", "-q", "-m", "tests: cover b\n\nA regression test."]);
        Cmd::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["format-patch", "-q", "--no-signature", "--zero-commit", "base..dev", "-o"])
            .arg(&patches)
            .quiet()
            .run()
            .unwrap();
        fs::write(patches.join("series"), "0001-lib-add-b.patch\n0002-tests-cover-b.patch\n")
            .unwrap();
        fs::write(patches.join(COVER_LETTER), "cover\n").unwrap();
        (tmp, repo, patches)
    }

    #[test]
    fn accepts_a_good_series() {
        let (tmp, repo, patches) = fixture();
        let s = lint(&patches).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].subject, "lib: add b");
        check_applies(&repo, "base", &s, tmp.path()).unwrap();
        // The temp worktree is gone afterwards.
        let list = git(&repo).args(["worktree", "list"]).read().unwrap();
        assert_eq!(list.lines().count(), 1, "{list}");
    }

    #[test]
    fn rejects_missing_stray_and_non_mail_files() {
        let (_tmp, _repo, patches) = fixture();
        fs::write(patches.join("series"), "0001-lib-add-b.patch\n0003-missing.patch\n").unwrap();
        fs::write(patches.join("notes.txt"), "hello\n").unwrap();
        let err = lint(&patches).unwrap_err().to_string();
        assert!(err.contains("0003-missing.patch is listed in series"), "{err}");
        assert!(err.contains("0002-tests-cover-b.patch is in"), "{err}");
        assert!(err.contains("notes.txt is in"), "{err}");
        fs::write(
            patches.join("series"),
            "0001-lib-add-b.patch\n0002-tests-cover-b.patch\nnotes.txt\n",
        )
        .unwrap();
        let err = lint(&patches).unwrap_err().to_string();
        assert!(err.contains("notes.txt: not a git format-patch mail"), "{err}");
    }

    #[test]
    fn rejects_a_patch_that_does_not_apply() {
        let (tmp, repo, patches) = fixture();
        let p1 = patches.join("0001-lib-add-b.patch");
        let text =
            fs::read_to_string(&p1).unwrap().replace(" fn a() {}\n+fn b", " fn z() {}\n+fn b");
        fs::write(&p1, text).unwrap();
        let s = lint(&patches).unwrap();
        let err = check_applies(&repo, "base", &s, tmp.path()).unwrap_err().to_string();
        assert!(err.contains("0001-lib-add-b.patch does not apply"), "{err}");
    }

    #[test]
    fn expected_output_may_end_with_a_blank_line() {
        let (tmp, repo, _) = fixture();
        let out = tmp.path().join("out");
        let g = |args: &[&str]| git_commit(&repo).args(args).quiet().run().unwrap();
        for (file, ok) in [("tests/t.stderr", true), ("tests/u.rs", false)] {
            g(&["checkout", "-q", "-B", "more", "dev"]);
            fs::write(repo.join(file), "error: x\n\n").unwrap();
            g(&["add", "-A"]);
            g(&["commit", "-q", "-m", "tests: expected output\n\nWith a blank line at the end."]);
            let _ = fs::remove_dir_all(&out);
            git(&repo)
                .args(["format-patch", "-q", "--zero-commit", "dev..more", "-o"])
                .arg(&out)
                .quiet()
                .run()
                .unwrap();
            let name = fs::read_dir(&out).unwrap().next().unwrap().unwrap().file_name();
            let name = name.to_string_lossy().into_owned();
            let text = fs::read_to_string(out.join(&name)).unwrap();
            let patch = Patch { path: out.join(&name), ..parse_mail(&name, &text).unwrap() };
            let result = check_applies(&repo, "dev", &[patch], tmp.path());
            assert_eq!(result.is_ok(), ok, "{file}: {result:?}");
        }
    }

    #[test]
    fn mail_parsing_errors() {
        let ok = "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\nFrom: A <a@b>\n\
                  Subject: [PATCH 1/2] core: do a\n thing\n\nWhy.\n---\ndiff --git a/x b/x\n";
        assert_eq!(parse_mail("p", ok).unwrap().subject, "core: do a thing");
        let no_body = ok.replace("Why.\n", "");
        assert!(
            parse_mail("p", &no_body).unwrap_err().to_string().contains("empty commit message")
        );
        let no_tag = ok.replace("[PATCH 1/2] ", "");
        assert!(parse_mail("p", &no_tag).unwrap_err().to_string().contains("[PATCH"));
        let no_diff = ok.replace("diff --git a/x b/x\n", "");
        assert!(parse_mail("p", &no_diff).is_err());
    }
}
