//! `enzyme`: build libEnzyme-22.so, the library rustc's autodiff loads, from an Enzyme checkout
//! the user gives (`--source DIR`, the repository root). DIR is never changed: its HEAD is
//! checked out in a `git clone --shared` in the cache (CACHE/enzyme/src), with the Enzyme patch
//! series of PATCHES/enzyme/ (patches/enzyme/ unless the global `--patches` says otherwise:
//! `series` listing `NNNN-*.patch` mails, if any) committed on top by `git am` in a temporary
//! worktree. CMake and ninja build it in the chroot with the options rustc's bootstrap uses for
//! Enzyme, in CACHE/enzyme/build, so rebuilds are incremental. The library is validated like
//! `full --enzyme-lib` does, copied to `--out`, and the `full` line that uses it is printed.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cmd::{self, Cmd, require_root, shell_quote, write_atomic};
use crate::env::Chroot;
use crate::git::{git, tracked_changes};
use crate::mounts::remove_tree;
use crate::paths::*;
use crate::series::{self, Patch};
use crate::summary::{self, Row, step};

#[derive(clap::Args)]
pub struct Args {
    /// Root of an Enzyme git checkout (it holds enzyme/CMakeLists.txt); its HEAD commit is
    /// built, and the checkout itself is never changed
    #[arg(long, value_name = "DIR")]
    pub source: PathBuf,
    /// Where to copy the built library (a directory gets libEnzyme-22.so in it; default:
    /// CACHE/enzyme/libEnzyme-22.so)
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Also build LLVMEnzyme-22.so, the opt plugin that Enzyme's own lit tests load
    #[arg(long)]
    pub with_plugin: bool,
}

pub fn run(paths: &Paths, args: &Args) -> Result<()> {
    let source = check_source(&args.source)?;
    // The global `--patches DIR` (the stack's directory) moves it along: DIR/enzyme. An
    // `enzyme --patches` of its own cannot be told apart from the global flag by clap.
    let patch_dir = absolute(&paths.enzyme_patches())?;
    let patches = load_series(&patch_dir)?;
    let out = out_path(paths, args.out.as_deref())?;
    require_root("cargo xtask enzyme")?;
    crate::env::verify(paths)?;
    let mut rows = Vec::new();
    let result = run_steps(paths, args, &source, &patch_dir, &patches, &out, &mut rows);
    summary::print(&rows);
    result
}

fn run_steps(
    paths: &Paths,
    args: &Args,
    source: &Path,
    patch_dir: &Path,
    patches: &[Patch],
    out: &Path,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let base = git(source).args(["log", "-1", "--format=%H %cs %s", "HEAD"]).read()?;
    println!("enzyme: Enzyme {base} (HEAD of {})", source.display());
    let rev = step(rows, "enzyme-source", || prepare_source(paths, source, patches))?;
    report_patches(patch_dir, patches, &rev);
    fs::create_dir_all(paths.enzyme_cmake_build())
        .with_context(|| format!("cannot create {}", paths.enzyme_cmake_build().display()))?;
    // The chroot sees the bind mount at the canonical path; name everything by it.
    let canonical = |p: PathBuf| {
        fs::canonicalize(&p).with_context(|| format!("cannot resolve {}", p.display()))
    };
    let cache = canonical(paths.enzyme_cache())?;
    let (src, build) = (canonical(paths.enzyme_src())?, canonical(paths.enzyme_cmake_build())?);
    let chroot = Chroot::enter_with(paths, std::slice::from_ref(&cache))?;
    step(rows, "enzyme-configure", || {
        chroot.sh(&configure_script(&src, &build)).step("enzyme-configure").run()
    })?;
    step(rows, "enzyme-build", || {
        chroot.sh(&build_script(&build, args.with_plugin)).step("enzyme-build").run()
    })?;
    chroot.leave()?;
    let built = build.join("Enzyme").join(format!("libEnzyme-{LLVM_MAJOR}.so"));
    let sha = step(rows, "enzyme-install", || install(&built, out))?;
    println!("enzyme: built {} (sha256 {sha})", out.display());
    if args.with_plugin {
        let plugin = build.join("Enzyme").join(format!("LLVMEnzyme-{LLVM_MAJOR}.so"));
        if !plugin.is_file() {
            bail!("ninja finished but {} is missing", plugin.display());
        }
        println!("enzyme: opt plugin for Enzyme's lit tests: {}", plugin.display());
    }
    println!("next: cargo xtask full --enzyme-lib {}", shell_quote(&out.display().to_string()));
    Ok(())
}

/// `--source DIR` must be the root of an Enzyme git checkout; returns it canonical.
pub fn check_source(dir: &Path) -> Result<PathBuf> {
    let meta = fs::metadata(dir)
        .with_context(|| format!("--source {}: no such directory", dir.display()))?;
    if !meta.is_dir() {
        bail!("--source {}: not a directory; pass the root of an Enzyme checkout", dir.display());
    }
    let dir = fs::canonicalize(dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    let lists = dir.join("enzyme/CMakeLists.txt");
    if !lists.is_file() {
        // The CMake project lives in the repository's `enzyme/` subdirectory.
        if let Some(root) = dir.parent().filter(|p| {
            dir.join("CMakeLists.txt").is_file() && p.join("enzyme/CMakeLists.txt").is_file()
        }) {
            bail!(
                "--source {}: this is the enzyme/ subdirectory; pass the repository root, {}",
                dir.display(),
                root.display()
            );
        }
        bail!(
            "--source {}: not an Enzyme checkout (no enzyme/CMakeLists.txt); pass the root of a \
             git clone of Enzyme's repository",
            dir.display()
        );
    }
    let text =
        fs::read_to_string(&lists).with_context(|| format!("cannot read {}", lists.display()))?;
    if !text.contains("project(Enzyme") {
        bail!(
            "--source {}: {} does not declare `project(Enzyme)`; is this an Enzyme checkout?",
            dir.display(),
            lists.display()
        );
    }
    if !dir.join(".git").exists() {
        bail!(
            "--source {}: not a git checkout (no .git); the command builds its HEAD commit, so \
             pass a git clone of Enzyme's repository",
            dir.display()
        );
    }
    Ok(dir)
}

/// The Enzyme patch series in `dir`, in order: none when `dir` or its `series` is missing or
/// `series` lists nothing; an error for a listed name that is not `NNNN-name.patch`, a file
/// that cannot be read, or one that is not a `git format-patch` mail.
pub fn load_series(dir: &Path) -> Result<Vec<Patch>> {
    if !dir.join("series").is_file() {
        return Ok(Vec::new());
    }
    let names = series::read_series_file(dir)?;
    for name in &names {
        if name == COVER_LETTER {
            bail!(
                "{}: {name} must not be listed (git am cannot apply a cover letter)",
                dir.join("series").display()
            );
        }
        if !is_patch_name(name) {
            bail!(
                "{}: {name:?} is not a patch file name of the form NNNN-name.patch",
                dir.join("series").display()
            );
        }
    }
    if names.is_empty() {
        return Ok(Vec::new());
    }
    series::load(dir)
}

/// `NNNN-name.patch`: four digits, a dash, a name, `.patch`, no directory.
fn is_patch_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() > "0000-.patch".len()
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && name.ends_with(".patch")
        && !name.contains('/')
}

/// `--out`, absolute (a directory gets libEnzyme-22.so in it); refuses a name that says
/// another LLVM before anything is built.
fn out_path(paths: &Paths, out: Option<&Path>) -> Result<PathBuf> {
    let lib = format!("libEnzyme-{LLVM_MAJOR}.so");
    let out = match out {
        None => paths.enzyme_built_lib(),
        Some(p) if p.is_dir() => p.join(&lib),
        Some(p) => p.to_path_buf(),
    };
    let name = out.file_name().unwrap_or_default().to_string_lossy();
    if let Some(major) = crate::full::name_majors(&name).into_iter().find(|m| *m != LLVM_MAJOR) {
        bail!(
            "--out {}: the name says LLVM {major}; this rustc uses LLVM {LLVM_MAJOR}, pass {lib}",
            out.display()
        );
    }
    absolute(&out)
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot make {} absolute", path.display()))
}

/// Check `source`'s HEAD, with `patches` committed on top, out in CACHE/enzyme/src and return
/// that commit. Only files that differ from the copy's current checkout are written, so ninja
/// rebuilds only what changed.
pub fn prepare_source(paths: &Paths, source: &Path, patches: &[Patch]) -> Result<String> {
    let base = head(source)?;
    let changes = tracked_changes(source)?;
    if !changes.is_empty() {
        println!(
            "enzyme: note: {} has uncommitted changes; they are not built, only its HEAD {}",
            source.display(),
            short(&base)
        );
    }
    let src = paths.enzyme_src();
    ensure_copy(source, &src)?;
    let rev = if patches.is_empty() { base } else { commit_patches(paths, &base, patches)? };
    git(&src).args(["checkout", "-q", "-f", "--detach"]).arg(&rev).run()?;
    Ok(rev)
}

fn head(dir: &Path) -> Result<String> {
    git(dir).args(["rev-parse", "--verify", "HEAD^{commit}"]).read().with_context(|| {
        format!("cannot read the HEAD commit of {}; is it a git checkout?", dir.display())
    })
}

fn short(rev: &str) -> &str {
    &rev[..rev.len().min(12)]
}

/// Make `src` a `git clone --shared` of `source` (it borrows `source`'s objects and writes
/// only its own); a copy of another checkout, or one whose origin cannot be read, is cloned
/// anew.
fn ensure_copy(source: &Path, src: &Path) -> Result<()> {
    if src.exists() {
        let origin =
            git(src).args(["config", "--get", "remote.origin.url"]).quiet().run_unchecked()?;
        if origin.success && Path::new(origin.text.trim()) == source {
            return Ok(());
        }
        println!(
            "enzyme: {} is not a copy of {}; cloning it anew (a full rebuild)",
            src.display(),
            source.display()
        );
        remove_tree(src)?;
    }
    let parent = src.parent().context("the Enzyme copy has no parent directory")?;
    fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    Cmd::new("git")
        .args(["clone", "-q", "--shared", "--no-checkout"])
        .arg(source)
        .arg(src)
        .run()?;
    Ok(())
}

/// Commit `patches` on top of `base` by `git am` in a temporary worktree of the copy that
/// checks out only the files they touch; returns the last commit. The same series on the same
/// base always gives the same commit (fixed identity, committer date = author date).
fn commit_patches(paths: &Paths, base: &str, patches: &[Patch]) -> Result<String> {
    let (src, cache) = (paths.enzyme_src(), paths.enzyme_cache());
    crate::apply::am_in_worktree(&src, base, &cache, patches, "enzyme", |p, i, check| {
        format!(
            "{} does not apply to Enzyme {} and the {i} patch(es) before it; nothing was built \
             and the source checkout is unchanged. `git apply --check -v` says:\n{check}",
            p.name,
            short(base)
        )
    })
}

/// Say which patches went on the Enzyme commit.
fn report_patches(patch_dir: &Path, patches: &[Patch], rev: &str) {
    if patches.is_empty() {
        println!(
            "enzyme: no patches applied ({} has no series, or it lists none)",
            patch_dir.display()
        );
        return;
    }
    println!("enzyme: applied {} patch(es) from {}:", patches.len(), patch_dir.display());
    for p in patches {
        println!("  {} ({})", p.name, p.subject);
    }
    println!("enzyme: building commit {} of the copy", short(rev));
}

/// The CMake options rustc's bootstrap configures Enzyme with, for a source tree `src` (the
/// repository root) and a build directory `build`.
pub fn cmake_args(src: &Path, build: &Path) -> Vec<String> {
    vec![
        "-G".into(),
        "Ninja".into(),
        "-S".into(),
        src.join("enzyme").display().to_string(),
        "-B".into(),
        build.display().to_string(),
        "-DCMAKE_BUILD_TYPE=Release".into(),
        format!("-DLLVM_DIR=/usr/lib/llvm-{LLVM_MAJOR}/lib/cmake/llvm"),
        "-DLLVM_ENABLE_ASSERTIONS=ON".into(),
        "-DENZYME_EXTERNAL_SHARED_LIB=ON".into(),
        "-DENZYME_BC_LOADER=OFF".into(),
        "-DENZYME_CLANG=OFF".into(),
        "-DENZYME_MLIR=OFF".into(),
    ]
}

/// The ninja targets: libEnzyme-22.so, and with `plugin` the opt plugin LLVMEnzyme-22.so.
pub fn targets(plugin: bool) -> Vec<String> {
    let mut t = vec![format!("Enzyme-{LLVM_MAJOR}")];
    if plugin {
        t.push(format!("LLVMEnzyme-{LLVM_MAJOR}"));
    }
    t
}

fn configure_script(src: &Path, build: &Path) -> String {
    let args: Vec<String> = cmake_args(src, build).iter().map(|a| shell_quote(a)).collect();
    format!("cmake {}", args.join(" "))
}

fn build_script(build: &Path, plugin: bool) -> String {
    format!(
        "ninja -C {} -j$(nproc) {}",
        shell_quote(&build.display().to_string()),
        targets(plugin).join(" ")
    )
}

/// Validate the built library, copy it to `out` (through a temp file and a rename, so a failed
/// build never replaces a good `out`) and return its SHA-256.
fn install(built: &Path, out: &Path) -> Result<String> {
    crate::full::validate_enzyme_lib(built)
        .with_context(|| format!("the library ninja built, {}, is not usable", built.display()))?;
    let data = fs::read(built).with_context(|| format!("cannot read {}", built.display()))?;
    write_atomic(out, &data)?;
    cmd::sha256_file(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::git_commit;

    /// A git repository shaped like Enzyme's (enzyme/CMakeLists.txt), its HEAD one commit.
    fn fake_enzyme(dir: &Path) {
        fs::create_dir_all(dir.join("enzyme/Enzyme")).unwrap();
        fs::write(dir.join("enzyme/CMakeLists.txt"), "project(Enzyme)\n").unwrap();
        fs::write(dir.join("enzyme/Enzyme/Enzyme.cpp"), "int a;\n").unwrap();
        let g = |args: &[&str]| git_commit(dir).args(args).quiet().run().unwrap();
        g(&["init", "-q", "-b", "main"]);
        g(&["add", "-A"]);
        g(&["commit", "-q", "-m", "Enzyme"]);
    }

    /// A one-patch series for `fake_enzyme`, made by `git format-patch` in a scratch clone.
    fn one_patch(repo: &Path, dir: &Path) {
        let scratch = dir.with_extension("scratch");
        Cmd::new("git").args(["clone", "-q"]).arg(repo).arg(&scratch).quiet().run().unwrap();
        fs::write(scratch.join("enzyme/Enzyme/Enzyme.cpp"), "int a;\nint b;\n").unwrap();
        git_commit(&scratch)
            .args(["commit", "-q", "-am", "Add b\n\nBecause b is needed."])
            .quiet()
            .run()
            .unwrap();
        git(&scratch)
            .args(["format-patch", "-q", "--no-signature", "--zero-commit", "HEAD~1", "-o"])
            .arg(dir)
            .quiet()
            .run()
            .unwrap();
        fs::write(dir.join("series"), "# the Enzyme series\n0001-Add-b.patch\n").unwrap();
    }

    #[test]
    fn rejects_what_is_not_an_enzyme_checkout() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("Enzyme");
        let err = |d: &Path| check_source(d).unwrap_err().to_string();
        assert!(err(&root).contains("no such directory"), "{}", err(&root));
        fs::write(tmp.path().join("file"), "").unwrap();
        assert!(err(&tmp.path().join("file")).contains("not a directory"));
        fs::create_dir_all(root.join("enzyme")).unwrap();
        assert!(err(&root).contains("no enzyme/CMakeLists.txt"), "{}", err(&root));
        fs::write(root.join("enzyme/CMakeLists.txt"), "project(Other)\n").unwrap();
        assert!(err(&root).contains("does not declare `project(Enzyme)`"), "{}", err(&root));
        fs::write(root.join("enzyme/CMakeLists.txt"), "project(Enzyme)\n").unwrap();
        let inner = err(&root.join("enzyme"));
        assert!(inner.contains("this is the enzyme/ subdirectory; pass the repository root"));
        assert!(inner.ends_with(&root.canonicalize().unwrap().display().to_string()), "{inner}");
        assert!(err(&root).contains("not a git checkout"), "{}", err(&root));
        fs::create_dir(root.join(".git")).unwrap();
        assert_eq!(check_source(&root).unwrap(), root.canonicalize().unwrap());
    }

    #[test]
    fn reads_the_enzyme_series() {
        let tmp = tempfile::tempdir().unwrap();
        let (repo, dir) = (tmp.path().join("Enzyme"), tmp.path().join("patches"));
        // No directory, no series, a series listing nothing: build HEAD as is.
        assert!(load_series(&dir).unwrap().is_empty());
        fs::create_dir_all(&dir).unwrap();
        assert!(load_series(&dir).unwrap().is_empty());
        fs::write(dir.join("series"), "# none yet\n\n").unwrap();
        assert!(load_series(&dir).unwrap().is_empty());
        fake_enzyme(&repo);
        one_patch(&repo, &dir);
        let p = load_series(&dir).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].name.as_str(), p[0].subject.as_str()), ("0001-Add-b.patch", "Add b"));
        assert_eq!(p[0].files, ["enzyme/Enzyme/Enzyme.cpp"]);
        assert_eq!(p[0].path, dir.join("0001-Add-b.patch"));
        let bad = |series: &str| {
            fs::write(dir.join("series"), series).unwrap();
            load_series(&dir).unwrap_err().to_string()
        };
        assert!(bad("fix.patch\n").contains("\"fix.patch\" is not a patch file name"));
        assert!(bad("0001-x.diff\n").contains("not a patch file name"));
        assert!(bad("0000-cover-letter.patch\n").contains("must not be listed"));
        assert!(bad("0002-missing.patch\n").contains("cannot read"));
        fs::write(dir.join("0003-not-a-mail.patch"), "diff --git a/x b/x\n").unwrap();
        assert!(bad("0003-not-a-mail.patch\n").contains("not a git format-patch mail"));
    }

    #[test]
    fn cmake_arguments_are_bootstraps() {
        let args = cmake_args(Path::new("/c/enzyme/src"), Path::new("/c/enzyme/build"));
        assert_eq!(
            args,
            [
                "-G",
                "Ninja",
                "-S",
                "/c/enzyme/src/enzyme",
                "-B",
                "/c/enzyme/build",
                "-DCMAKE_BUILD_TYPE=Release",
                "-DLLVM_DIR=/usr/lib/llvm-22/lib/cmake/llvm",
                "-DLLVM_ENABLE_ASSERTIONS=ON",
                "-DENZYME_EXTERNAL_SHARED_LIB=ON",
                "-DENZYME_BC_LOADER=OFF",
                "-DENZYME_CLANG=OFF",
                "-DENZYME_MLIR=OFF",
            ]
        );
        assert_eq!(targets(false), ["Enzyme-22"]);
        assert_eq!(targets(true), ["Enzyme-22", "LLVMEnzyme-22"]);
        assert_eq!(
            build_script(Path::new("/c/enzyme/build"), true),
            "ninja -C /c/enzyme/build -j$(nproc) Enzyme-22 LLVMEnzyme-22"
        );
        assert!(configure_script(Path::new("/s"), Path::new("/b")).starts_with(
            "cmake -G Ninja -S /s/enzyme -B /b -DCMAKE_BUILD_TYPE=Release -DLLVM_DIR="
        ));
    }

    #[test]
    fn out_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::new("/c".into(), "/p".into());
        assert_eq!(out_path(&paths, None).unwrap(), Path::new("/c/enzyme/libEnzyme-22.so"));
        assert_eq!(out_path(&paths, Some(tmp.path())).unwrap(), tmp.path().join("libEnzyme-22.so"));
        let err = out_path(&paths, Some(Path::new("/x/libEnzyme-19.so"))).unwrap_err().to_string();
        assert!(err.contains("the name says LLVM 19"), "{err}");
        assert!(out_path(&paths, Some(Path::new("rel.so"))).unwrap().is_absolute());
        assert_eq!(paths.enzyme_patches(), Path::new("/p/enzyme"));
    }

    /// The copy in the cache gets the source's HEAD plus the series; the source stays as it was.
    #[test]
    fn patches_a_copy_and_never_the_source() {
        let tmp = tempfile::tempdir().unwrap();
        let (repo, dir) = (tmp.path().join("Enzyme"), tmp.path().join("patches"));
        fake_enzyme(&repo);
        one_patch(&repo, &dir);
        let source = check_source(&repo).unwrap();
        let paths = Paths::new(tmp.path().join("cache"), tmp.path().into());
        let cpp = "enzyme/Enzyme/Enzyme.cpp";
        let base = head(&source).unwrap();
        let rev = prepare_source(&paths, &source, &load_series(&dir).unwrap()).unwrap();
        assert_ne!(rev, base);
        assert_eq!(fs::read_to_string(paths.enzyme_src().join(cpp)).unwrap(), "int a;\nint b;\n");
        // Again: the same commit, the file left alone.
        let again = prepare_source(&paths, &source, &load_series(&dir).unwrap()).unwrap();
        assert_eq!(again, rev);
        // No series: HEAD as is.
        assert_eq!(prepare_source(&paths, &source, &[]).unwrap(), base);
        assert_eq!(fs::read_to_string(paths.enzyme_src().join(cpp)).unwrap(), "int a;\n");
        // The source: same HEAD, clean, no worktree, no new branch.
        assert_eq!(head(&source).unwrap(), base);
        assert!(tracked_changes(&source).unwrap().is_empty());
        let listed = git(&source).args(["worktree", "list", "--porcelain"]).read().unwrap();
        assert_eq!(listed.lines().filter(|l| l.starts_with("worktree ")).count(), 1);
        assert_eq!(
            git(&source).args(["branch", "--format=%(refname)"]).read().unwrap(),
            "refs/heads/main"
        );
        // A patch that does not apply: an error naming it, the copy unchanged.
        let patch = dir.join("0001-Add-b.patch");
        let text =
            fs::read_to_string(&patch).unwrap().replace(" int a;\n+int b;", " int z;\n+int b;");
        fs::write(&patch, text).unwrap();
        let err = prepare_source(&paths, &source, &load_series(&dir).unwrap()).unwrap_err();
        assert!(format!("{err:#}").contains("0001-Add-b.patch does not apply"), "{err:#}");
        assert_eq!(head(&paths.enzyme_src()).unwrap(), base);
    }
}
