//! Mounts for the chroot: a guard that mounts proc, /dev, /dev/pts (and /dev/shm) and binds host
//! directories at the same absolute path inside, and unmounts them in reverse order when
//! dropped (also on error or panic), then checks /proc/self/mounts that nothing is left.
//! Deleting a chroot goes through `remove_tree`, which refuses while anything is mounted.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cmd::Cmd;

/// Mount points listed in a /proc/self/mounts text (second field, octal escapes decoded).
pub fn parse_mount_points(text: &str) -> Vec<PathBuf> {
    text.lines().filter_map(|l| l.split(' ').nth(1)).map(|p| PathBuf::from(unescape(p))).collect()
}

/// The kernel writes space, tab, newline and backslash as `\040`, `\011`, `\012`, `\134`.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(d) => {
                out.push(d.iter().fold(0u8, |acc, c| acc.wrapping_mul(8).wrapping_add(c - b'0')));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points at or below `dir` (which should be absolute and canonical).
pub fn mounted_below(mounts: &str, dir: &Path) -> Vec<PathBuf> {
    parse_mount_points(mounts).into_iter().filter(|m| m.starts_with(dir)).collect()
}

/// An error listing what is still mounted below `dir`, if anything.
pub fn refuse_if_mounted(mounts: &str, dir: &Path, doing: &str) -> Result<()> {
    let found = mounted_below(mounts, dir);
    if found.is_empty() {
        return Ok(());
    }
    let list: Vec<String> =
        found.iter().rev().map(|m| format!("  umount {}", m.display())).collect();
    bail!(
        "refusing to {doing}: {} mount(s) below {}. Another harness run may be using it; if not, \
         unmount them (innermost first):\n{}",
        found.len(),
        dir.display(),
        list.join("\n")
    );
}

fn proc_mounts() -> Result<String> {
    fs::read_to_string("/proc/self/mounts").context("cannot read /proc/self/mounts")
}

/// Canonical form of `dir` if it exists (mount points are listed canonically).
fn canonical(dir: &Path) -> PathBuf {
    fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// `rm -rf --one-file-system dir`, but only when nothing is mounted below it.
pub fn remove_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    refuse_if_mounted(&proc_mounts()?, &canonical(dir), &format!("delete {}", dir.display()))?;
    Cmd::new("rm").args(["-rf", "--one-file-system"]).arg(dir).run()?;
    Ok(())
}

/// Active mounts below a chroot; dropping the guard unmounts them.
pub struct Mounts {
    root: PathBuf,
    /// Mount targets in the order they were mounted.
    mounted: Vec<PathBuf>,
}

impl Mounts {
    /// Mount proc, /dev, /dev/pts, then bind each of `binds` at the same path inside `root`.
    pub fn new(root: &Path, binds: &[PathBuf]) -> Result<Mounts> {
        let root = canonical(root);
        refuse_if_mounted(&proc_mounts()?, &root, &format!("mount into {}", root.display()))?;
        crate::cmd::catch_interrupts();
        let mut guard = Mounts { root: root.clone(), mounted: Vec::new() };
        guard.mount(&["-t", "proc", "proc"], None, "proc")?;
        guard.mount(&["--bind"], Some(Path::new("/dev")), "dev")?;
        guard.mount(&["--bind"], Some(Path::new("/dev/pts")), "dev/pts")?;
        // A plain bind of /dev does not carry the tmpfs on /dev/shm (POSIX semaphores).
        if Path::new("/dev/shm").is_dir() {
            guard.mount(&["--bind"], Some(Path::new("/dev/shm")), "dev/shm")?;
        }
        for dir in binds {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let dir = canonical(dir);
            let inside = dir
                .strip_prefix("/")
                .with_context(|| format!("{} is not absolute", dir.display()))?;
            guard.mount(&["--bind"], Some(&dir), &inside.to_string_lossy())?;
        }
        Ok(guard)
    }

    fn mount(&mut self, opts: &[&str], source: Option<&Path>, inside: &str) -> Result<()> {
        let target = self.root.join(inside);
        fs::create_dir_all(&target)
            .with_context(|| format!("cannot create mount point {}", target.display()))?;
        let mut cmd = Cmd::new("mount").args(opts);
        if let Some(s) = source {
            cmd = cmd.arg(s);
        }
        cmd.arg(&target).step("mounts").quiet().run()?;
        self.mounted.push(target);
        Ok(())
    }

    /// Unmount everything (innermost first) and verify nothing is left below the root.
    pub fn release(mut self) -> Result<()> {
        self.unmount_all()
    }

    fn unmount_all(&mut self) -> Result<()> {
        let mut failed = Vec::new();
        while let Some(target) = self.mounted.pop() {
            // Processes still exiting (after Ctrl-C) keep a mount busy for a moment.
            let mut plain = Err(anyhow::anyhow!("not tried"));
            for attempt in 0..5 {
                if attempt > 0 {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
                plain = Cmd::new("umount").arg(&target).step("mounts").quiet().cleanup().run();
                if plain.is_ok() {
                    break;
                }
            }
            if plain.is_err() {
                // Busy (a straggling process): detach it lazily rather than leave it mounted.
                if let Err(e) =
                    Cmd::new("umount").arg("-l").arg(&target).step("mounts").quiet().cleanup().run()
                {
                    failed.push(format!("{}: {e:#}", target.display()));
                }
            }
        }
        if !failed.is_empty() {
            bail!("could not unmount:\n  {}", failed.join("\n  "));
        }
        refuse_if_mounted(&proc_mounts()?, &self.root, "leave the chroot as is")
            .context("mounts left behind after unmounting")
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        if !self.mounted.is_empty()
            && let Err(e) = self.unmount_all()
        {
            eprintln!("error: cleaning up the chroot mounts failed: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
proc /proc proc rw,nosuid 0 0
/dev/sda1 / ext4 rw 0 0
proc /cache/chroot/sid/proc proc rw 0 0
udev /cache/chroot/sid/dev devtmpfs rw 0 0
/dev/sda1 /cache/chroot/sid/my\\040work ext4 rw 0 0
/dev/sda1 /cache/chroot/sid-other ext4 rw 0 0
";

    #[test]
    fn parses_and_unescapes() {
        let pts = parse_mount_points(MOUNTS);
        assert_eq!(pts.len(), 6);
        assert_eq!(pts[4], PathBuf::from("/cache/chroot/sid/my work"));
    }

    #[test]
    fn refuses_when_something_is_mounted_below() {
        let dir = Path::new("/cache/chroot/sid");
        let found = mounted_below(MOUNTS, dir);
        assert_eq!(found.len(), 3, "sid-other is a sibling, not below: {found:?}");
        let err = refuse_if_mounted(MOUNTS, dir, "delete it").unwrap_err().to_string();
        assert!(err.contains("refusing to delete it: 3 mount(s)"), "{err}");
        assert!(err.contains("umount /cache/chroot/sid/my work"), "{err}");
        refuse_if_mounted(MOUNTS, Path::new("/cache/chroot/other"), "delete it").unwrap();
    }

    /// Needs root: `cargo test -- --ignored mounts`. Mounts into a temp dir and checks that
    /// both `release` and a plain drop leave nothing mounted.
    #[test]
    #[ignore]
    fn mount_guard_roundtrip_as_root() {
        let tmp = tempfile::tempdir().unwrap();
        let (root, cache) = (tmp.path().join("root"), tmp.path().join("cache"));
        fs::create_dir_all(&root).unwrap();
        let below = || mounted_below(&proc_mounts().unwrap(), &canonical(&root));
        let guard = Mounts::new(&root, std::slice::from_ref(&cache)).unwrap();
        assert_eq!(below().len(), 5);
        assert!(root.join(cache.strip_prefix("/").unwrap()).is_dir());
        let again = Mounts::new(&root, &[]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(again.contains("refusing to mount into"), "{again}");
        assert!(remove_tree(&root).is_err(), "must refuse to delete while mounted");
        guard.release().unwrap();
        assert!(below().is_empty());
        drop(Mounts::new(&root, &[]).unwrap());
        let left = below();
        if !left.is_empty() {
            std::mem::forget(tmp); // never delete through a bind mount of /dev
            panic!("left mounted: {left:?}");
        }
    }

    #[test]
    fn remove_tree_deletes_an_unmounted_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("chroot");
        fs::create_dir_all(d.join("etc")).unwrap();
        remove_tree(&d).unwrap();
        assert!(!d.exists());
    }
}
