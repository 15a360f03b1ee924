//! `env`: the Debian sid chroot the compiler is built in (debootstrap from the host's mirror
//! plus LLVM 22 and the build tools), and `Chroot`, the handle the build commands use to run
//! `x.py` inside it with the cache and the stage0 toolchain mounted. On a finished chroot,
//! `env` installs the listed packages it lacks (the list grew after it was built) instead of
//! rebuilding it.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cmd::{Cmd, require_root, shell_quote, write_atomic};
use crate::mounts::{Mounts, remove_tree};
use crate::paths::*;

/// Packages installed in the chroot.
const PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "llvm-22-tools",
    "cmake",
    "ninja-build",
    "g++",
    "python3",
    "git",
    "curl",
    "pkg-config",
    "libssl-dev",
    "zlib1g-dev",
    "libzstd-dev",
    "file",
    "make",
    "xz-utils",
    // `bench` counts the compilers' instructions with cachegrind.
    "valgrind",
    // `check` compiles the LLVM wrapper against every LLVM Debian offers besides 22.
    "llvm-21-dev",
    // `check --tidy`: tidy's python checks make a venv; its js checks run yarn, which
    // `check --tidy` installs with npm.
    "python3-venv",
    "nodejs",
    "npm",
];

/// What `verify` looks for in the chroot, and the package that provides it.
const REQUIRED: &[(&str, &str)] = &[
    (LLVM_CONFIG, "llvm-22-dev"),
    ("/usr/lib/llvm-22/bin/FileCheck", "llvm-22-tools"),
    ("/usr/bin/cmake", "cmake"),
    ("/usr/bin/ninja", "ninja-build"),
    ("/usr/bin/python3", "python3"),
    ("/usr/bin/git", "git"),
    ("/usr/bin/c++", "g++"),
];

const READY: &str = ".admk-ready";
const SETUP_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(clap::Args)]
pub struct Args {
    /// Delete the chroot first (refused while anything is mounted below it), then create it anew
    #[arg(long)]
    pub clean: bool,
}

pub fn run(paths: &Paths, args: &Args) -> Result<()> {
    require_root("cargo xtask env")?;
    let dir = paths.chroot();
    let part = part_dir(&dir);
    if args.clean {
        remove_tree(&dir)?;
        remove_tree(&part)?;
    }
    if dir.join(READY).exists() {
        install_missing(&dir)?;
        verify(paths)?;
        println!("env: chroot {} is ready", dir.display());
        return Ok(());
    }
    if dir.exists() {
        bail!(
            "{} exists but was never finished ({READY} missing); rerun with `cargo xtask env --clean`",
            dir.display()
        );
    }
    create(&part)?;
    fs::rename(&part, &dir)
        .with_context(|| format!("cannot rename {} to {}", part.display(), dir.display()))?;
    verify(paths)?;
    println!("env: chroot {} is ready", dir.display());
    Ok(())
}

fn part_dir(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dir.with_file_name(name)
}

/// Build the chroot in `part` (any leftover from an interrupted run is deleted first).
fn create(part: &Path) -> Result<()> {
    if !Path::new("/usr/sbin/debootstrap").exists() {
        let install = || {
            Cmd::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y", "debootstrap"])
                .step("env")
                .run()
        };
        if install().is_err() {
            Cmd::new("apt-get").arg("update").step("env").run()?;
            install()?;
        }
    }
    remove_tree(part)?;
    let mirror = crate::apt::host_mirror()?;
    fs::create_dir_all(part.parent().context("chroot path has no parent")?)?;
    Cmd::new("debootstrap")
        .args(["--variant=minbase", "--include=ca-certificates", "sid"])
        .arg(part)
        .arg(&mirror)
        .step("env-debootstrap")
        .run()?;
    write_atomic(
        &part.join("etc/apt/apt.conf.d/99admk"),
        b"Acquire::Check-Valid-Until \"false\";\n",
    )?;
    install_packages(part, PACKAGES)?;
    fs::write(part.join(READY), b"")?;
    Ok(())
}

/// `apt-get update && apt-get install PACKAGES` in the chroot at `root`, with the host's CA
/// bundle and resolver copied in before and after. Refused (by `Mounts::new`, before anything
/// changes) while another harness run has the chroot mounted.
fn install_packages(root: &Path, packages: &[&str]) -> Result<()> {
    let mounts = Mounts::new(root, &[])?;
    copy_host_files(root)?;
    let script = format!(
        "apt-get update && apt-get install -y --no-install-recommends {}",
        packages.join(" ")
    );
    chroot_cmd(root, &[("PATH", SETUP_PATH), ("DEBIAN_FRONTEND", "noninteractive")], &script)
        .step("env-packages")
        .run()?;
    mounts.release()?;
    // Package triggers may have regenerated the bundle without the host's (proxy) CA.
    copy_host_files(root)
}

/// Install the packages of `PACKAGES` that the finished chroot at `dir` lacks, e.g. one added
/// to the list after the chroot was built. Does nothing (and needs no network) when none is
/// missing, so `env` stays idempotent.
fn install_missing(dir: &Path) -> Result<()> {
    let status_file = dir.join("var/lib/dpkg/status");
    let status = fs::read_to_string(&status_file).with_context(|| {
        format!(
            "cannot read {}; rebuild the chroot with `cargo xtask env --clean`",
            status_file.display()
        )
    })?;
    let missing = missing_packages(&status, PACKAGES);
    if missing.is_empty() {
        return Ok(());
    }
    println!(
        "env: the chroot {} lacks {} (listed after it was built); installing",
        dir.display(),
        missing.join(" ")
    );
    install_packages(dir, &missing)
        .with_context(|| format!("cannot install {} into {}", missing.join(" "), dir.display()))
}

/// The packages of `wanted` that a dpkg status file (`var/lib/dpkg/status`) does not list as
/// installed (`Status: install ok installed`, or `hold ok installed`).
fn missing_packages<'a>(status: &str, wanted: &[&'a str]) -> Vec<&'a str> {
    let mut installed = std::collections::BTreeSet::new();
    for stanza in status.split("\n\n") {
        let field = |name: &str| stanza.lines().find_map(|l| l.strip_prefix(name).map(str::trim));
        let done =
            field("Status:").is_some_and(|s| s.split_whitespace().last() == Some("installed"));
        if let (Some(package), true) = (field("Package:"), done) {
            installed.insert(package);
        }
    }
    wanted.iter().copied().filter(|p| !installed.contains(p)).collect()
}

/// The host's CA bundle (it may contain a proxy CA) and resolver configuration.
fn copy_host_files(root: &Path) -> Result<()> {
    for file in ["etc/ssl/certs/ca-certificates.crt", "etc/resolv.conf"] {
        let (from, to) = (Path::new("/").join(file), root.join(file));
        let data = fs::read(&from)
            .with_context(|| format!("cannot read the host's {}", from.display()))?;
        let _ = fs::remove_file(&to); // it may be a dangling symlink
        write_atomic(&to, &data)?;
    }
    Ok(())
}

/// Check the chroot is finished and has the tools; errors name the missing package.
pub fn verify(paths: &Paths) -> Result<()> {
    for (file, package) in REQUIRED {
        verify_tool(paths, file, package)?;
    }
    Ok(())
}

/// Check the chroot is finished and has `file` (absolute inside it) from `package`; for the
/// tools only some commands need (valgrind for `bench`), which `verify` does not demand.
pub fn verify_tool(paths: &Paths, file: &str, package: &str) -> Result<()> {
    let dir = paths.chroot();
    if !dir.join(READY).exists() {
        bail!("no finished chroot at {}; run `cargo xtask env` first", dir.display());
    }
    if !dir.join(file.trim_start_matches('/')).exists() {
        bail!(
            "the chroot lacks {file} (package {package}); `cargo xtask env` installs the listed \
             packages a chroot lacks, or install it with `chroot {} apt-get install {package}`, \
             or rebuild with `cargo xtask env --clean`",
            dir.display()
        );
    }
    Ok(())
}

/// `chroot DIR env -i HOME=/root PATH=... LANG=C.UTF-8 [extra] bash -c SCRIPT`.
fn chroot_cmd(root: &Path, extra: &[(&str, &str)], script: &str) -> Cmd {
    let mut env = vec![("HOME", "/root"), ("PATH", "/usr/bin:/bin")];
    for &(k, v) in extra {
        match env.iter_mut().find(|(key, _)| *key == k) {
            Some(e) => e.1 = v,
            None => env.push((k, v)),
        }
    }
    env.push(("LANG", "C.UTF-8"));
    Cmd::new("chroot")
        .arg(root)
        .args(["env", "-i"])
        .args(env.iter().map(|(k, v)| format!("{k}={v}")))
        .args(["bash", "-c", script])
}

/// The stage0 toolchain's sysroot on the host (`rustc +1.95.0 --print sysroot`).
pub fn stage0_sysroot() -> Result<PathBuf> {
    let out = Cmd::new("rustc").args([STAGE0_TOOLCHAIN, "--print", "sysroot"]).read().with_context(|| {
        format!("no stage0 toolchain {VERSION}; install it with `rustup toolchain install {VERSION}`")
    })?;
    let dir = PathBuf::from(out.lines().last().unwrap_or("").trim());
    if !dir.join("bin/rustc").exists() || !dir.join("bin/cargo").exists() {
        bail!("stage0 sysroot {} has no bin/rustc and bin/cargo", dir.display());
    }
    Ok(dir)
}

/// The slot's bootstrap config (`CACHE/work/bootstrap*.toml`), regenerated on every run. All
/// slots share every setting but the build directory, so base and series are built alike.
pub fn bootstrap_toml(paths: &Paths, slot: Slot, stage0: &Path) -> String {
    let s = stage0.display();
    format!(
        "change-id = \"ignore\"\n[build]\nrustc = \"{s}/bin/rustc\"\ncargo = \"{s}/bin/cargo\"\nlocal-rebuild = true\n\
         vendor = false\nsubmodules = false\ndocs = false\nextended = false\nbuild-dir = \"{}\"\n[llvm]\n\
         download-ci-llvm = false\nlink-shared = true\nenzyme = true\n[rust]\ndebug-assertions = false\n\
         [target.{HOST_TRIPLE}]\nllvm-config = \"{LLVM_CONFIG}\"\n",
        paths.build_dir(slot).display()
    )
}

/// The chroot with the cache and stage0 mounted; `x` runs `python3 x.py` in the work tree.
pub struct Chroot {
    paths: Paths,
    mounts: Mounts,
}

impl Chroot {
    /// Mount the cache and stage0 into the chroot and write every slot's bootstrap config.
    pub fn enter(paths: &Paths) -> Result<Chroot> {
        require_root("running x.py in the chroot")?;
        verify(paths)?;
        let stage0 = stage0_sysroot()?;
        for slot in [Slot::Series, Slot::Check, Slot::Unpatched] {
            write_atomic(
                &paths.bootstrap_toml(slot),
                bootstrap_toml(paths, slot, &stage0).as_bytes(),
            )?;
        }
        let binds = [paths.base_parent(), paths.work(), paths.cargo_home(), stage0];
        let mounts = Mounts::new(&paths.chroot(), &binds)?;
        Ok(Chroot { paths: paths.clone(), mounts })
    }

    /// The chroot with only `binds` mounted (besides proc and /dev), for commands that run
    /// no x.py: no stage0 toolchain, no bootstrap config.
    pub fn enter_with(paths: &Paths, binds: &[PathBuf]) -> Result<Chroot> {
        require_root("running commands in the chroot")?;
        verify(paths)?;
        let mounts = Mounts::new(&paths.chroot(), binds)?;
        Ok(Chroot { paths: paths.clone(), mounts })
    }

    /// `python3 x.py ARGS --config CACHE/work/bootstrap*.toml`, in the slot's work tree.
    pub fn x(&self, slot: Slot, args: &[&str], step: &str) -> Cmd {
        let mut words: Vec<String> = vec!["python3".into(), "x.py".into()];
        words.extend(args.iter().map(|a| shell_quote(a)));
        words.push("--config".into());
        words.push(shell_quote(&self.paths.bootstrap_toml(slot).display().to_string()));
        let script = format!(
            "cd {} && {}",
            shell_quote(&self.paths.tree(slot).display().to_string()),
            words.join(" ")
        );
        self.sh(&script).step(step)
    }

    /// `bash -c SCRIPT` in the chroot, with the harness's clean environment.
    pub fn sh(&self, script: &str) -> Cmd {
        let cargo_home = self.paths.cargo_home().display().to_string();
        chroot_cmd(&self.paths.chroot(), &[("CARGO_HOME", &cargo_home)], script)
    }

    pub fn leave(self) -> Result<()> {
        self.mounts.release()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_toml_and_chroot_line() {
        let paths = Paths::new("/c".into(), "/p".into());
        let t = bootstrap_toml(&paths, Slot::Series, Path::new("/tc"));
        assert!(
            bootstrap_toml(&paths, Slot::Unpatched, Path::new("/tc"))
                .contains("/c/work/build-orig\"")
        );
        assert!(
            t.starts_with("change-id = \"ignore\"\n[build]\nrustc = \"/tc/bin/rustc\"\n"),
            "{t}"
        );
        assert!(
            t.contains("build-dir = \"/c/work/build\"\n[llvm]\n") && t.contains("enzyme = true\n")
        );
        assert!(t.ends_with("llvm-config = \"/usr/lib/llvm-22/bin/llvm-config\"\n"));
        let c = chroot_cmd(
            Path::new("/c/chroot/sid"),
            &[("CARGO_HOME", "/c/cargo-home")],
            "cd /t && python3 x.py",
        );
        assert_eq!(
            c.display(),
            "chroot /c/chroot/sid env -i HOME=/root PATH=/usr/bin:/bin CARGO_HOME=/c/cargo-home LANG=C.UTF-8 \
             bash -c 'cd /t && python3 x.py'"
        );
        assert_eq!(part_dir(Path::new("/c/chroot/sid")), PathBuf::from("/c/chroot/sid.part"));
    }

    #[test]
    fn finds_packages_a_chroot_lacks() {
        let status = "Package: cmake\nStatus: install ok installed\nVersion: 3.31\n\n\
                      Package: valgrind\nStatus: deinstall ok config-files\n\n\
                      Package: git\nArchitecture: amd64\nStatus: hold ok installed\n\n\
                      Package: file\nStatus: install ok unpacked\n";
        let wanted = ["cmake", "git", "valgrind", "file", "make"];
        assert_eq!(missing_packages(status, &wanted), ["valgrind", "file", "make"]);
        assert!(missing_packages(status, &["cmake", "git"]).is_empty());
        assert_eq!(missing_packages("", &["valgrind"]), ["valgrind"]);
        assert!(PACKAGES.contains(&"valgrind"));
    }

    #[test]
    fn verify_tool_names_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path().into(), "/p".into());
        let err = verify_tool(&paths, "/usr/bin/valgrind", "valgrind").unwrap_err().to_string();
        assert!(err.contains("no finished chroot"), "{err}");
        fs::create_dir_all(paths.chroot().join("usr/bin")).unwrap();
        fs::write(paths.chroot().join(READY), b"").unwrap();
        let err = verify_tool(&paths, "/usr/bin/valgrind", "valgrind").unwrap_err().to_string();
        assert!(err.contains("lacks /usr/bin/valgrind (package valgrind)"), "{err}");
        assert!(err.contains("`cargo xtask env` installs"), "{err}");
        fs::write(paths.chroot().join("usr/bin/valgrind"), b"").unwrap();
        verify_tool(&paths, "/usr/bin/valgrind", "valgrind").unwrap();
    }
}
