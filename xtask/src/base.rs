//! `base`: download Debian's rustc 1.95.0 tarball through a private apt state pointed at the
//! host's mirror, verify its SHA-256, unpack it into a git repository (branch `base`), and
//! add branch `fixups` with the build fix-ups Debian's pruned tarball needs.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::apt::{self, PrivateApt};
use crate::cmd::{self, Cmd};
use crate::git::{TempWorktree, branch_exists, git, git_commit};
use crate::paths::*;

const BASE_MESSAGE: &str = "rustc 1.95.0 (59807616e) from Debian's rustc_1.95.0+dfsg1.orig.tar.xz";
const FIXUPS_MESSAGE: &str = "harness: build fix-ups for Debian's pruned tarball";

/// Workspace members whose sources Debian prunes from the tarball.
const PRUNED_MEMBERS: [&str; 4] = [
    "\"src/tools/miri\",",
    "\"src/tools/miri/cargo-miri\",",
    "\"src/tools/remote-test-client\",",
    "\"src/tools/remote-test-server\",",
];

const GITMODULES: &str = r#"# Written by the harness: Debian's tarball has no .gitmodules and prunes these
# trees. Bootstrap reads this file to know which missing paths are expected.
[submodule "src/llvm-project"]
	path = src/llvm-project
[submodule "src/tools/enzyme"]
	path = src/tools/enzyme
[submodule "src/gcc"]
	path = src/gcc
[submodule "src/tools/miri"]
	path = src/tools/miri
[submodule "src/tools/remote-test-client"]
	path = src/tools/remote-test-client
[submodule "src/tools/remote-test-server"]
	path = src/tools/remote-test-server
[submodule "src/tools/rustc-perf"]
	path = src/tools/rustc-perf
[submodule "src/doc/book"]
	path = src/doc/book
"#;

pub fn run(paths: &Paths) -> Result<()> {
    let repo = paths.repo();
    if repo.join(".git").exists() && branch_exists(&repo, BASE_BRANCH) {
        println!("base: {} already has branch `{BASE_BRANCH}`", repo.display());
    } else {
        if repo.exists() {
            bail!(
                "{} exists but is not a git repository with a `{BASE_BRANCH}` branch; \
                 move it away and rerun `cargo xtask base`",
                repo.display()
            );
        }
        let tarball = download(paths)?;
        unpack(paths, &tarball)?;
    }
    if branch_exists(&repo, FIXUPS_BRANCH) {
        println!("base: branch `{FIXUPS_BRANCH}` exists");
    } else {
        make_fixups(paths)?;
    }
    println!("base: ready at {} (branches `{BASE_BRANCH}`, `{FIXUPS_BRANCH}`)", repo.display());
    Ok(())
}

/// Fetch the tarball with `apt-get source` unless a verified copy is already there.
fn download(paths: &Paths) -> Result<std::path::PathBuf> {
    let tarball = paths.tarball();
    if tarball.exists() && cmd::sha256_file(&tarball)? == TARBALL_SHA256 {
        println!("base: {} already downloaded and verified", tarball.display());
        return Ok(tarball);
    }
    let mirror = apt::host_mirror()?;
    println!("base: using the host's Debian mirror {mirror}");
    let apt = PrivateApt::create(&paths.apt(), &mirror)?;
    Cmd::new("apt-get").args(apt.options()).arg("update").step("base-apt").run()?;
    let showsrc = Cmd::new("apt-cache")
        .args(apt.options())
        .args(["showsrc", "rustc"])
        .step("base-apt")
        .quiet()
        .run()?;
    let version = apt::pick_version(&showsrc.text, DEBIAN_VERSION_PREFIX).with_context(|| {
        format!("{mirror} (sid) has no rustc source version starting with {DEBIAN_VERSION_PREFIX}; check the mirror")
    })?;
    println!("base: downloading rustc={version}");
    // The .dsc may 404 on a mirror that already moved on; only the orig tarball matters.
    let fetched = Cmd::new("apt-get")
        .args(apt.options())
        .args(["source", "--download-only"])
        .arg(format!("rustc={version}"))
        .dir(paths.dl())
        .step("base-apt")
        .run_unchecked()?;
    if !tarball.exists() {
        let log = fetched.log.map(|l| format!(" (see {})", l.display())).unwrap_or_default();
        bail!("apt-get source did not produce {}{log}", tarball.display());
    }
    if !fetched.success {
        println!("base: apt-get source failed (the .dsc may be gone), but {TARBALL} is there");
    }
    let sum = cmd::sha256_file(&tarball)?;
    if sum != TARBALL_SHA256 {
        let aside = tarball
            .with_extension(format!("xz.bad-{}", cmd::utc_stamp(std::time::SystemTime::now())));
        fs::rename(&tarball, &aside)
            .with_context(|| format!("cannot move {} aside", tarball.display()))?;
        bail!(
            "SHA-256 mismatch for {TARBALL}: got {sum}, expected {TARBALL_SHA256}. The file was moved \
             to {} and not used; check the mirror and rerun",
            aside.display()
        );
    }
    println!("base: {TARBALL} verified (sha256 {sum})");
    Ok(tarball)
}

/// Unpack into a temp dir next to the destination, commit, then rename into place.
fn unpack(paths: &Paths, tarball: &Path) -> Result<()> {
    let parent = paths.base_parent();
    fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let tmp = tempfile::Builder::new().prefix(".unpack-").tempdir_in(&parent)?;
    Cmd::new("tar").arg("-xf").arg(tarball).arg("-C").arg(tmp.path()).step("base").run()?;
    let src = tmp.path().join(SRC_DIR);
    if !src.is_dir() {
        bail!("{} did not unpack to {SRC_DIR}/", tarball.display());
    }
    git(&src).args(["init", "-q", "-b", BASE_BRANCH]).run()?;
    git(&src).args(["config", "user.name", "admk"]).run()?;
    git(&src).args(["config", "user.email", "admk@localhost"]).run()?;
    git(&src).args(["add", "-A", "-f"]).run()?;
    git_commit(&src).args(["commit", "-q", "-m", BASE_MESSAGE]).run()?;
    fs::rename(&src, paths.repo())
        .with_context(|| format!("cannot move the new repo to {}", paths.repo().display()))?;
    Ok(())
}

/// Branch `fixups`: base plus one commit, made in a temporary worktree.
fn make_fixups(paths: &Paths) -> Result<()> {
    let repo = paths.repo();
    let wt = TempWorktree::new(&repo, BASE_BRANCH, &paths.base_parent(), None)?;
    let manifest = wt.path.join("Cargo.toml");
    let text = fs::read_to_string(&manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    fs::write(&manifest, remove_members(&text)?)?;
    let config = wt.path.join(".cargo/config.toml");
    if config.exists() {
        fs::remove_file(&config).with_context(|| format!("cannot delete {}", config.display()))?;
    }
    fs::write(wt.path.join(".gitmodules"), GITMODULES)?;
    git(&wt.path).args(["add", "-A"]).run()?;
    git_commit(&wt.path).args(["commit", "-q", "-m", FIXUPS_MESSAGE]).run()?;
    git(&wt.path).args(["branch", FIXUPS_BRANCH, "HEAD"]).run()?;
    Ok(())
}

/// Drop the pruned tools from the root workspace's `members`; all four must be there.
fn remove_members(manifest: &str) -> Result<String> {
    let mut out = String::with_capacity(manifest.len());
    let mut removed = 0;
    for line in manifest.split_inclusive('\n') {
        if PRUNED_MEMBERS.contains(&line.trim()) {
            removed += 1;
        } else {
            out.push_str(line);
        }
    }
    if removed != PRUNED_MEMBERS.len() {
        bail!(
            "expected to remove {} members from Cargo.toml, found {removed}; is this rustc 1.95.0?",
            PRUNED_MEMBERS.len()
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_exactly_the_pruned_members() {
        let m = "[workspace]\nmembers = [\n  \"src/tools/lint-docs\",\n  \"src/tools/miri\",\n  \"src/tools/miri/cargo-miri\",\n  \
                 \"src/tools/opt-dist\",\n  \"src/tools/remote-test-client\",\n  \"src/tools/remote-test-server\",\n]\n";
        assert_eq!(
            remove_members(m).unwrap(),
            "[workspace]\nmembers = [\n  \"src/tools/lint-docs\",\n  \"src/tools/opt-dist\",\n]\n"
        );
        assert!(remove_members("[workspace]\n").is_err());
    }

    #[test]
    fn gitmodules_matches_the_reference() {
        assert_eq!(GITMODULES.lines().count(), 18);
        assert!(
            GITMODULES.contains("[submodule \"src/tools/enzyme\"]\n\tpath = src/tools/enzyme\n")
        );
    }
}
