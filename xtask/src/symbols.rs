//! Symbol tables for `bench`: read them with `nm`, and compare two compilers' outputs by name
//! with the hashes that legitimately differ between two builds taken out.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Result;

use crate::cmd::Cmd;

/// Defined symbol names of `file` (`nm --defined-only -P`, plus `-D` for the dynamic table).
pub fn defined(file: &Path, dynamic: bool) -> Result<BTreeSet<String>> {
    let flags: &[&str] = if dynamic { &["--defined-only", "-D"] } else { &["--defined-only"] };
    names(file, flags)
}

/// The dynamic symbols that `file` imports (`nm -D --undefined-only -P`), with their version
/// (`name@LLVM_22.1`) when nm prints one.
pub fn imported(file: &Path) -> Result<BTreeSet<String>> {
    names(file, &["-D", "--undefined-only"])
}

/// The symbol names `nm -P` with `flags` lists for `file` (the first word of each line).
fn names(file: &Path, flags: &[&str]) -> Result<BTreeSet<String>> {
    let text = Cmd::new("nm").args(flags).arg("-P").arg(file).quiet().step("bench").read()?;
    Ok(text.lines().filter_map(|l| l.split_whitespace().next()).map(String::from).collect())
}

/// The names only in `a` and only in `b`, after `normalize`.
pub fn differ(a: &BTreeSet<String>, b: &BTreeSet<String>) -> (Vec<String>, Vec<String>) {
    let na: BTreeSet<String> = a.iter().map(|s| normalize(s)).collect();
    let nb: BTreeSet<String> = b.iter().map(|s| normalize(s)).collect();
    (na.difference(&nb).cloned().collect(), nb.difference(&na).cloned().collect())
}

/// Take out what differs between two builds of the same code: the 16-digit hash of legacy
/// mangled names (`17h0123456789abcdefE`), crate disambiguators of v0 names (`Cs<base62>_`) and
/// LLVM's `.llvm.<number>` suffixes. The two compilers build the same library from different
/// directories, so cargo gives their crates different metadata hashes.
pub fn normalize(name: &str) -> String {
    let b = name.as_bytes();
    let mut out = String::with_capacity(name.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &name[i..];
        if rest.starts_with("17h")
            && b.len() >= i + 20
            && b[i + 3..i + 19].iter().all(u8::is_ascii_hexdigit)
            && b[i + 19] == b'E'
        {
            out.push_str("17h<hash>E");
            i += 20;
        } else if name.starts_with("_R") && rest.starts_with("Cs") {
            let len = rest[2..].bytes().take_while(u8::is_ascii_alphanumeric).count();
            if rest.as_bytes().get(2 + len) == Some(&b'_') {
                out.push_str("Cs<hash>_");
                i += 3 + len;
            } else {
                out.push_str("Cs");
                i += 2;
            }
        } else if let Some(num) = rest.strip_prefix(".llvm.") {
            let len = num.bytes().take_while(u8::is_ascii_digit).count();
            out.push_str(".llvm.<n>");
            i += 6 + len;
        } else {
            let c = rest.chars().next().unwrap_or_default();
            out.push(c);
            i += c.len_utf8().max(1);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_build_hashes_only() {
        assert_eq!(
            normalize("_ZN3std2rt10lang_start17h0123456789abcdefE"),
            "_ZN3std2rt10lang_start17h<hash>E"
        );
        assert_eq!(
            normalize("_RNvCs1234abcXYZ_7___rustc12___rust_alloc"),
            "_RNvCs<hash>_7___rustc12___rust_alloc"
        );
        assert_eq!(normalize("foo.llvm.123456789"), "foo.llvm.<n>");
        assert_eq!(normalize("enzyme_dup"), "enzyme_dup");
        // Too short to be a hash: unchanged.
        assert_eq!(normalize("x17habcE"), "x17habcE");
        let a: BTreeSet<String> =
            ["main", "_ZN1a17h0000000000000000E"].map(String::from).into_iter().collect();
        let b: BTreeSet<String> = ["main", "_ZN1a17h1111111111111111E", "enzyme_dup"]
            .map(String::from)
            .into_iter()
            .collect();
        assert_eq!(differ(&a, &b), (vec![], vec!["enzyme_dup".to_string()]));
    }
}
