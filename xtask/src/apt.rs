//! apt plumbing: find the host's Debian mirror in its apt sources (one-line `.list` and
//! deb822 `.sources` files), pick a Debian source version, build the option set of the
//! private apt state that `base` uses to download the rustc tarball, and read the version of
//! an installed package from a dpkg status file.

use std::cmp::Ordering;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Debian code names and aliases; a suite matches if it is one of these or `NAME-something`.
const DEBIAN_SUITES: &[&str] = &[
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "oldoldstable",
    "oldstable",
    "stable",
    "testing",
    "unstable",
    "experimental",
];

/// One source entry: a mirror and the suites it serves.
#[derive(Debug, PartialEq)]
pub struct Source {
    pub uri: String,
    pub suites: Vec<String>,
}

/// Read `/etc/apt/sources.list` and `/etc/apt/sources.list.d/*.{list,sources}` below `root`,
/// in the order apt reads them.
pub fn read_host_sources(root: &Path) -> Result<Vec<Source>> {
    let etc = root.join("etc/apt");
    let mut files: Vec<PathBuf> = vec![etc.join("sources.list")];
    if let Ok(dir) = fs::read_dir(etc.join("sources.list.d")) {
        let mut more: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    let mut sources = Vec::new();
    for file in files {
        let name = file.to_string_lossy();
        let parse: fn(&str) -> Vec<Source> = if name.ends_with(".sources") {
            parse_deb822
        } else if name.ends_with(".list") {
            parse_one_line
        } else {
            continue;
        };
        match fs::read_to_string(&file) {
            Ok(text) => sources.extend(parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
        }
    }
    Ok(sources)
}

/// `deb [options] URI suite component...` lines; `deb-src` lines count too.
pub fn parse_one_line(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        if !matches!(words.next(), Some("deb" | "deb-src")) {
            continue;
        }
        let mut rest: Vec<&str> = words.collect();
        if rest.first().is_some_and(|w| w.starts_with('[')) {
            let end = rest.iter().position(|w| w.ends_with(']')).unwrap_or(rest.len() - 1);
            rest.drain(..=end);
        }
        if let [uri, suite, ..] = rest[..] {
            out.push(Source { uri: uri.to_string(), suites: vec![suite.to_string()] });
        }
    }
    out
}

/// deb822 stanzas with `Types:`, `URIs:`, `Suites:` (and `Enabled: no` to skip one).
pub fn parse_deb822(text: &str) -> Vec<Source> {
    let mut stanzas: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(stanza) = stanzas.last_mut() else { continue };
        if line.trim().is_empty() {
            stanzas.push(Vec::new());
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = stanza.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            stanza.push((key.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let mut out = Vec::new();
    for stanza in stanzas {
        let field =
            |k: &str| stanza.iter().find(|(key, _)| key == k).map_or("", |(_, v)| v.as_str());
        let is_deb = field("types").split_whitespace().any(|t| t == "deb" || t == "deb-src");
        if !is_deb || field("enabled") == "no" {
            continue;
        }
        let suites: Vec<String> = field("suites").split_whitespace().map(String::from).collect();
        for uri in field("uris").split_whitespace() {
            out.push(Source { uri: uri.to_string(), suites: suites.clone() });
        }
    }
    out
}

fn is_debian_suite(suite: &str) -> bool {
    DEBIAN_SUITES
        .iter()
        .any(|s| suite == *s || suite.strip_prefix(s).is_some_and(|r| r.starts_with('-')))
}

/// The first mirror that serves a Debian suite and whose path ends with `/debian`.
pub fn pick_mirror(sources: &[Source]) -> Result<String> {
    sources
        .iter()
        .find(|s| {
            s.uri.trim_end_matches('/').ends_with("/debian")
                && s.suites.iter().any(|x| is_debian_suite(x))
        })
        .map(|s| s.uri.trim_end_matches('/').to_string())
        .context(
            "no Debian mirror found in /etc/apt/sources.list{,.d/*}: need an entry whose URI ends \
             with /debian and whose suite is a Debian release (bookworm, trixie, sid, ...)",
        )
}

/// The host's Debian mirror, read from its apt configuration.
pub fn host_mirror() -> Result<String> {
    pick_mirror(&read_host_sources(Path::new("/"))?)
}

/// The highest `Version:` in `apt-cache showsrc` output that starts with `prefix`.
pub fn pick_version(showsrc: &str, prefix: &str) -> Option<String> {
    showsrc
        .lines()
        .filter_map(|l| l.strip_prefix("Version:"))
        .map(str::trim)
        .filter(|v| v.starts_with(prefix))
        .max_by(|a, b| dpkg_cmp(a, b))
        .map(String::from)
}

/// The `Version:` of `package` in a dpkg status file (`/var/lib/dpkg/status`), if it is
/// installed (`Status: install ok installed`).
pub fn installed_version(status: &str, package: &str) -> Option<String> {
    status.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(str::trim))
        };
        if field("Package") != Some(package) || field("Status") != Some("install ok installed") {
            return None;
        }
        field("Version").map(String::from)
    })
}

/// dpkg's version-string comparison (`verrevcmp`), applied to the whole string: runs of
/// non-digits compare with `~` lowest and letters before other characters, runs of digits
/// compare numerically. Epochs are not used by the versions we compare.
pub fn dpkg_cmp(a: &str, b: &str) -> Ordering {
    fn order(c: Option<u8>) -> i32 {
        match c {
            None => 0,
            Some(b'~') => -1,
            Some(c) if c.is_ascii_digit() => 0,
            Some(c) if c.is_ascii_alphabetic() => c as i32,
            Some(c) => c as i32 + 256,
        }
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let (ca, cb) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ca != cb {
                return ca.cmp(&cb);
            }
            i += 1;
            j += 1;
        }
        let digits = |s: &[u8], k: &mut usize| {
            let start = *k;
            while *k < s.len() && s[*k].is_ascii_digit() {
                *k += 1;
            }
            let run = std::str::from_utf8(&s[start..*k]).unwrap_or("").trim_start_matches('0');
            run.to_string()
        };
        let (da, db) = (digits(a, &mut i), digits(b, &mut j));
        let c = da.len().cmp(&db.len()).then_with(|| da.cmp(&db));
        if c != Ordering::Equal {
            return c;
        }
    }
    Ordering::Equal
}

/// A private apt state (sources, lists, cache) under `dir`, independent of the host's.
pub struct PrivateApt {
    dir: PathBuf,
}

impl PrivateApt {
    /// Create the directories and a sources.list with one unauthenticated `deb-src` line.
    pub fn create(dir: &Path, mirror: &str) -> Result<PrivateApt> {
        if mirror.is_empty() || mirror.contains(char::is_whitespace) {
            bail!("invalid mirror URI {mirror:?}");
        }
        for sub in ["etc", "lists/partial", "cache"] {
            let d = dir.join(sub);
            fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        let line = format!("deb-src [trusted=yes] {mirror} sid main\n");
        crate::cmd::write_atomic(&dir.join("etc/sources.list"), line.as_bytes())?;
        Ok(PrivateApt { dir: dir.to_path_buf() })
    }

    /// The `-o` options that point apt at this state instead of the host's.
    pub fn options(&self) -> Vec<String> {
        let p = |s: &str| self.dir.join(s).display().to_string();
        vec![
            "-o".into(),
            format!("Dir::Etc::sourcelist={}", p("etc/sources.list")),
            "-o".into(),
            "Dir::Etc::sourceparts=-".into(),
            "-o".into(),
            format!("Dir::State::lists={}", p("lists")),
            "-o".into(),
            format!("Dir::Cache={}", p("cache")),
            "-o".into(),
            "Acquire::Check-Valid-Until=false".into(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "Types: deb\n# a comment\nURIs: http://mirror.invalid/debian\n\
        Suites: bookworm bookworm-updates\nComponents: main\n\n\
        Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\n\n\
        Types: deb\nURIs: https://other.invalid/node\nSuites: nodistro\n";

    #[test]
    fn parses_both_formats() {
        let s = parse_deb822(DEB822);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].uri, "http://mirror.invalid/debian");
        assert_eq!(s[0].suites, ["bookworm", "bookworm-updates"]);
        let l = parse_one_line(
            "# deb http://commented.invalid/debian sid main\n\
             deb [arch=amd64 signed-by=/k.gpg] https://cloud.invalid/apt cloud-sdk-bookworm main\n\
             deb http://mirror.invalid/debian/ trixie main contrib\n",
        );
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].uri, "https://cloud.invalid/apt");
        assert_eq!(l[1].suites, ["trixie"]);
    }

    #[test]
    fn picks_the_debian_mirror() {
        let mut sources = parse_one_line("deb https://cloud.invalid/apt cloud-sdk-bookworm main\n");
        sources.extend(parse_deb822(DEB822));
        assert_eq!(pick_mirror(&sources).unwrap(), "http://mirror.invalid/debian");
        // Only security or third-party entries: no mirror, and a helpful error.
        let only =
            parse_deb822("Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: sid\n");
        assert!(pick_mirror(&only).unwrap_err().to_string().contains("/debian"));
        let disabled =
            parse_deb822("Enabled: no\nTypes: deb\nURIs: http://m.invalid/debian\nSuites: sid\n");
        assert!(pick_mirror(&disabled).is_err());
        let trailing = parse_one_line("deb http://mirror.invalid/debian/ sid main\n");
        assert_eq!(pick_mirror(&trailing).unwrap(), "http://mirror.invalid/debian");
    }

    #[test]
    fn picks_the_highest_version() {
        let showsrc = "Package: rustc\nVersion: 1.95.0+dfsg1-1~exp1\n\nPackage: rustc\nVersion: 1.95.0+dfsg1-2\n\n\
                       Package: rustc\nVersion: 1.95.0+dfsg1-10\n\nPackage: rustc\nVersion: 1.96.0+dfsg1-1\n";
        assert_eq!(pick_version(showsrc, "1.95.0+dfsg1-").as_deref(), Some("1.95.0+dfsg1-10"));
        assert_eq!(pick_version("Version: 1.94.0+dfsg1-1\n", "1.95.0+dfsg1-"), None);
        assert_eq!(dpkg_cmp("1.0-1~exp1", "1.0-1"), Ordering::Less);
        assert_eq!(dpkg_cmp("1.0-2+b1", "1.0-2"), Ordering::Greater);
        assert_eq!(dpkg_cmp("1.0-02", "1.0-2"), Ordering::Equal);
    }

    #[test]
    fn reads_installed_versions() {
        let status = "Package: libllvm21\nStatus: deinstall ok config-files\nVersion: 1:21.1\n\n\
                      Package: libllvm22\nStatus: install ok installed\nArchitecture: amd64\n\
                      Description: LLVM\n Version: 0 (a continuation line)\nVersion: 1:22.1.8-3\n\n\
                      Package: libllvm22-dev\nStatus: install ok installed\nVersion: 9\n";
        assert_eq!(installed_version(status, "libllvm22").as_deref(), Some("1:22.1.8-3"));
        assert_eq!(installed_version(status, "libllvm21"), None, "only config files left");
        assert_eq!(installed_version(status, "libllvm2"), None);
        assert_eq!(installed_version("", "libllvm22"), None);
    }

    #[test]
    fn private_apt_options() {
        let tmp = tempfile::tempdir().unwrap();
        let apt = PrivateApt::create(tmp.path(), "http://mirror.invalid/debian").unwrap();
        let list = fs::read_to_string(tmp.path().join("etc/sources.list")).unwrap();
        assert_eq!(list, "deb-src [trusted=yes] http://mirror.invalid/debian sid main\n");
        assert!(tmp.path().join("lists/partial").is_dir());
        assert!(apt.options().iter().any(|o| o == "Dir::Etc::sourceparts=-"));
    }
}
