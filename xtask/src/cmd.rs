//! The one way the harness runs external programs: print the exact command line, tee its
//! output into `CACHE/logs/<timestamp>-<step>.log`, report the elapsed time, and turn a
//! non-zero exit into an error that names the command and the log file.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

static LOG_DIR: OnceLock<PathBuf> = OnceLock::new();
static DEFAULT_STEP: OnceLock<String> = OnceLock::new();
static STAMP: OnceLock<String> = OnceLock::new();
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// The pid of the teed child that is running, for forwarding signals (0: none).
static CHILD: AtomicI32 = AtomicI32::new(0);

/// Send logs of this run to `dir`; commands without an explicit step log as `default_step`.
pub fn init_logs(dir: &Path, default_step: &str) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create log dir {}", dir.display()))?;
    let _ = LOG_DIR.set(dir.to_path_buf());
    let _ = DEFAULT_STEP.set(default_step.to_string());
    Ok(())
}

/// Path of the log file for `step` in this run (the timestamp is fixed at first use).
pub fn log_path(step: &str) -> Option<PathBuf> {
    let stamp = STAMP.get_or_init(|| utc_stamp(SystemTime::now()));
    LOG_DIR.get().map(|d| d.join(format!("{stamp}-{step}.log")))
}

/// The log of commands that name no step, if it was written.
pub fn default_log_path() -> Option<PathBuf> {
    DEFAULT_STEP.get().and_then(|s| log_path(s)).filter(|l| l.exists())
}

/// From now on, SIGINT/SIGTERM/SIGHUP only set a flag: the running child still dies (Ctrl-C
/// reaches it directly, SIGTERM/SIGHUP are forwarded), we see its failure and unwind
/// normally, so RAII guards such as the chroot mounts get dropped instead of left behind.
pub fn catch_interrupts() {
    extern "C" fn on_signal(sig: libc::c_int) {
        INTERRUPTED.store(true, Ordering::SeqCst);
        let child = CHILD.load(Ordering::SeqCst);
        if child > 0 && sig != libc::SIGINT {
            // SAFETY: kill is async-signal-safe.
            unsafe { libc::kill(child, sig) };
        }
    }
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, handler) };
    }
}

pub fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted by a signal; cleaning up and stopping");
    }
    Ok(())
}

/// What a finished command produced.
#[derive(Debug)]
pub struct Output {
    /// stdout (quiet commands) or stdout and stderr interleaved (teed commands).
    pub text: String,
    pub log: Option<PathBuf>,
    pub elapsed: Duration,
    pub success: bool,
}

/// A command line to run, built like `std::process::Command`.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    dir: Option<PathBuf>,
    envs: Vec<(OsString, OsString)>,
    step: Option<String>,
    quiet: bool,
    cleanup: bool,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            dir: None,
            envs: Vec::new(),
            step: None,
            quiet: false,
            cleanup: false,
        }
    }
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Cmd {
        self.args.push(arg.as_ref().to_owned());
        self
    }
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Cmd {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }
    pub fn dir(mut self, dir: impl AsRef<Path>) -> Cmd {
        self.dir = Some(dir.as_ref().to_owned());
        self
    }
    pub fn env(mut self, key: impl AsRef<OsStr>, val: impl AsRef<OsStr>) -> Cmd {
        self.envs.push((key.as_ref().to_owned(), val.as_ref().to_owned()));
        self
    }
    /// Log into `<timestamp>-<step>.log` instead of the subcommand's log.
    pub fn step(mut self, step: &str) -> Cmd {
        self.step = Some(step.to_string());
        self
    }
    /// Capture stdout (still logged) instead of echoing it; stderr goes to the log only.
    pub fn quiet(mut self) -> Cmd {
        self.quiet = true;
        self
    }

    /// A cleanup command (unmounting): it still runs after an interrupt.
    pub fn cleanup(mut self) -> Cmd {
        self.cleanup = true;
        self
    }

    /// The command as a shell line that can be pasted into a terminal.
    pub fn display(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        for (k, v) in &self.envs {
            parts.push(format!("{}={}", k.to_string_lossy(), shell_quote(&v.to_string_lossy())));
        }
        parts.push(shell_quote(&self.program.to_string_lossy()));
        parts.extend(self.args.iter().map(|a| shell_quote(&a.to_string_lossy())));
        let line = parts.join(" ");
        match &self.dir {
            Some(d) => format!("(cd {} && {line})", shell_quote(&d.to_string_lossy())),
            None => line,
        }
    }

    /// Run and fail unless the exit status is zero.
    pub fn run(&self) -> Result<Output> {
        let out = self.run_unchecked()?;
        if !out.success && !self.cleanup {
            check_interrupted().with_context(|| format!("while running {}", self.display()))?;
        }
        if !out.success {
            let log = match &out.log {
                Some(l) => format!("; full output in {}", l.display()),
                None => String::new(),
            };
            let tail = if self.quiet { tail_lines(&out.text) } else { String::new() };
            bail!("command failed: {}{log}{tail}", self.display());
        }
        Ok(out)
    }

    /// Run and capture stdout, trimmed; fails on a non-zero exit.
    pub fn read(&self) -> Result<String> {
        Ok(self.clone().quiet().run()?.text.trim().to_string())
    }

    /// Run and report the outcome; only a failure to start the program is an error.
    pub fn run_unchecked(&self) -> Result<Output> {
        if !self.cleanup {
            check_interrupted()?;
        }
        let line = self.display();
        let step = self.step.as_deref().or(DEFAULT_STEP.get().map(|s| s.as_str()));
        let log_path = log_path(step.unwrap_or("xtask"));
        let mut log = match &log_path {
            Some(p) => Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("cannot open log file {}", p.display()))?,
            ),
            None => None,
        };
        eprintln!("$ {line}");
        if let Some(f) = log.as_mut() {
            writeln!(f, "$ {line}")?;
        }
        let start = Instant::now();
        let mut command = Command::new(&self.program);
        command.args(&self.args).envs(self.envs.iter().map(|(k, v)| (k, v)));
        if let Some(d) = &self.dir {
            command.current_dir(d);
        }
        let spawn_err =
            || format!("cannot start `{line}` (is {} installed?)", self.program.to_string_lossy());
        let (text, status) = if self.quiet {
            let out = command.stdin(Stdio::null()).output().with_context(spawn_err)?;
            if let Some(f) = log.as_mut() {
                f.write_all(&out.stdout)?;
                f.write_all(&out.stderr)?;
            }
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            if !out.status.success() {
                text.push_str(&String::from_utf8_lossy(&out.stderr));
            }
            (text, out.status)
        } else {
            // One pipe for stdout and stderr keeps their interleaving in the log.
            let (mut reader, writer) = io::pipe()?;
            let writer2 = writer.try_clone()?;
            let mut child = command
                .stdin(Stdio::null())
                .stdout(writer)
                .stderr(writer2)
                .spawn()
                .with_context(spawn_err)?;
            drop(command); // closes our copies of the write end, so the read sees EOF
            CHILD.store(i32::try_from(child.id()).unwrap_or(0), Ordering::SeqCst);
            let mut all = Vec::new();
            let mut buf = [0u8; 64 * 1024];
            let mut stdout = io::stdout();
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e).context("reading command output"),
                };
                if cfg!(test) {
                    print!("{}", String::from_utf8_lossy(&buf[..n])); // captured by the test harness
                } else {
                    let _ = stdout.write_all(&buf[..n]);
                    let _ = stdout.flush();
                }
                if let Some(f) = log.as_mut() {
                    f.write_all(&buf[..n])?;
                }
                all.extend_from_slice(&buf[..n]);
            }
            let status = child.wait().with_context(|| format!("waiting for `{line}`"));
            CHILD.store(0, Ordering::SeqCst);
            let status = status?;
            (String::from_utf8_lossy(&all).into_owned(), status)
        };
        let elapsed = start.elapsed();
        if let Some(f) = log.as_mut() {
            writeln!(f, "# {status} after {}", fmt_duration(elapsed))?;
        }
        if !self.quiet || elapsed > Duration::from_secs(5) {
            eprintln!("  ({status}, {})", fmt_duration(elapsed));
        }
        Ok(Output { text, log: log_path, elapsed, success: status.success() })
    }
}

/// The last lines of a command's output, for error messages.
fn tail_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(20);
    if lines.is_empty() { String::new() } else { format!("\n{}", lines[start..].join("\n")) }
}

/// Quote for a POSIX shell, only when needed.
pub fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `1h02m03s`, `4m05s`, `6.1s`.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{:.1}s", d.as_secs_f64()),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60),
    }
}

/// `YYYYMMDD-HHMMSS` in UTC, without a date crate (Howard Hinnant's civil_from_days).
pub fn utc_stamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", rem / 3600, rem / 60 % 60, rem % 60)
}

/// Create `path`'s parent and write `contents` through a temp file and a rename.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let parent = path.parent().context("path has no parent")?;
    fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(parent)
        .with_context(|| format!("cannot create a temp file in {}", parent.display()))?;
    tmp.write_all(contents)?;
    // NamedTempFile is 0600; these files are read by other users and by bootstrap's cmake.
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file().set_permissions(fs::Permissions::from_mode(0o644))?;
    tmp.persist(path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// SHA-256 of a file as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// SHA-256 of bytes as lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Fail with a clear message unless we run as root (chroot, mount and debootstrap need it).
pub fn require_root(what: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("`{what}` must run as root (it uses chroot, mount and apt); rerun it with sudo");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_formatting() {
        assert_eq!(shell_quote("a/b-c.rs"), "a/b-c.rs");
        assert_eq!(shell_quote("it's here"), r"'it'\''s here'");
        assert_eq!(fmt_duration(Duration::from_secs(3725)), "1h02m05s");
        assert_eq!(fmt_duration(Duration::from_secs(65)), "1m05s");
        assert_eq!(utc_stamp(UNIX_EPOCH + Duration::from_secs(1_700_000_000)), "20231114-221320");
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn run_reports_failure_and_captures() {
        assert_eq!(Cmd::new("echo").arg("hi").read().unwrap(), "hi");
        let err = Cmd::new("false").run().unwrap_err().to_string();
        assert!(err.contains("command failed: false"), "{err}");
        assert!(Cmd::new("/nonexistent/prog").run().is_err());
        let out =
            Cmd::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]).run_unchecked().unwrap();
        assert!(!out.success && out.text.contains("out") && out.text.contains("err"));
    }
}
