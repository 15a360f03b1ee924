//! Cache layout and the fixed facts about the base: where every command reads and writes,
//! so that no other module builds a path by hand.

use std::path::{Path, PathBuf};

/// The rustc release the series is based on.
pub const VERSION: &str = "1.95.0";
/// Debian's pruned upstream tarball of that release, and its expected SHA-256.
pub const TARBALL: &str = "rustc_1.95.0+dfsg1.orig.tar.xz";
pub const TARBALL_SHA256: &str = "fee0a232c32b6f919b2166efc441a7c37884905bdcc2170163579eeed5feee6b";
/// Debian source versions of rustc that carry this tarball start with this.
pub const DEBIAN_VERSION_PREFIX: &str = "1.95.0+dfsg1-";
/// The directory the tarball unpacks to.
pub const SRC_DIR: &str = "rustc-1.95.0-src";
/// Branches in the base repository: the pristine tarball, and the harness's fix-ups on top.
pub const BASE_BRANCH: &str = "base";
pub const FIXUPS_BRANCH: &str = "fixups";
/// The rustup toolchain used as stage0.
pub const STAGE0_TOOLCHAIN: &str = "+1.95.0";
/// LLVM shipped by Debian sid that the compiler links against.
pub const LLVM_MAJOR: u32 = 22;
pub const LLVM_CONFIG: &str = "/usr/lib/llvm-22/bin/llvm-config";
/// The LLVM versions whose headers `check` compiles rustc_llvm's C++ against: 1.95.0 supports
/// LLVM 20 and newer, and Debian sid offers these.
pub const LLVM_CHECKED: &[u32] = &[21, 22];
pub const HOST_TRIPLE: &str = "x86_64-unknown-linux-gnu";
/// Cover letter kept in patches/ but never listed in the series.
pub const COVER_LETTER: &str = "0000-cover-letter.patch";
/// The directory in patches/ of the Enzyme patch series that `enzyme` applies (not a PR of the
/// stack).
pub const ENZYME_PATCHES: &str = "enzyme";

/// A work tree plus build directory. `Series` is base + the series (what `full`, `compare`
/// and `apply` use), `Check` the tree `check` walks commit by commit, with its own build
/// directory, `Unpatched`
/// the `fixups` compiler `bench` compares against. Its tree is `work/orig`, a path as long as
/// `work/tree`, so paths embedded in the two compilers' outputs have the same length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Series,
    Check,
    Unpatched,
}

impl Slot {
    /// The branch the slot's work tree has checked out (a branch can be checked out in only
    /// one worktree).
    pub fn branch(self) -> &'static str {
        match self {
            Slot::Series => "build",
            Slot::Check => "build-check",
            Slot::Unpatched => "build-orig",
        }
    }
}

/// Every location under the cache directory (default `$HOME/.cache/admk`).
#[derive(Debug, Clone)]
pub struct Paths {
    pub cache: PathBuf,
    pub patches: PathBuf,
}

impl Paths {
    pub fn new(cache: PathBuf, patches: PathBuf) -> Self {
        Paths { cache, patches }
    }
    /// Downloads: the tarball and the private apt state.
    pub fn dl(&self) -> PathBuf {
        self.cache.join("dl")
    }
    pub fn apt(&self) -> PathBuf {
        self.dl().join("apt")
    }
    pub fn tarball(&self) -> PathBuf {
        self.dl().join(TARBALL)
    }
    pub fn base_parent(&self) -> PathBuf {
        self.cache.join("base")
    }
    /// The git repository of the unpacked tarball (branches `base` and `fixups`).
    pub fn repo(&self) -> PathBuf {
        self.base_parent().join(SRC_DIR)
    }
    pub fn work(&self) -> PathBuf {
        self.cache.join("work")
    }
    /// The worktree a slot builds from. `check` has its own, since it walks the stack commit
    /// by commit while `compare` or `full` may build the series.
    pub fn tree(&self, slot: Slot) -> PathBuf {
        match slot {
            Slot::Series => self.work().join("tree"),
            Slot::Check => self.work().join("check"),
            Slot::Unpatched => self.work().join("orig"),
        }
    }
    /// The developer's worktree that `refresh` exports patches from.
    pub fn dev(&self) -> PathBuf {
        self.work().join("dev")
    }
    /// Bootstrap's build directory of a slot. Separate directories keep `x check` from
    /// invalidating the stage 1 build, and let `bench` keep both compilers at once.
    pub fn build_dir(&self, slot: Slot) -> PathBuf {
        self.work().join(match slot {
            Slot::Series => "build",
            Slot::Check => "build-check",
            Slot::Unpatched => "build-orig",
        })
    }
    pub fn bootstrap_toml(&self, slot: Slot) -> PathBuf {
        self.work().join(match slot {
            Slot::Series => "bootstrap.toml",
            Slot::Check => "bootstrap-check.toml",
            Slot::Unpatched => "bootstrap-orig.toml",
        })
    }
    /// The stage 1 sysroot a slot's `x build --stage 1 library` produces.
    pub fn stage1(&self, slot: Slot) -> PathBuf {
        self.build_dir(slot).join(HOST_TRIPLE).join("stage1")
    }
    pub fn enzyme_lib_dir(&self) -> PathBuf {
        self.work().join("enzyme-lib")
    }
    pub fn enzyme_lib(&self) -> PathBuf {
        self.enzyme_lib_dir().join(format!("libEnzyme-{LLVM_MAJOR}.so"))
    }
    /// Bootstrap's Enzyme install dir; deleting it makes bootstrap reinstall the library.
    pub fn enzyme_build(&self, slot: Slot) -> PathBuf {
        self.build_dir(slot).join(HOST_TRIPLE).join("enzyme")
    }
    /// Where the shim CMakeLists.txt goes (untracked in the tree).
    pub fn enzyme_shim(&self, slot: Slot) -> PathBuf {
        self.tree(slot).join("src/tools/enzyme/enzyme/CMakeLists.txt")
    }
    /// `enzyme`'s cache: `src`, the copy of the user's Enzyme checkout the patches go on, and
    /// `build`, its CMake build directory, kept between runs so rebuilds are incremental.
    pub fn enzyme_cache(&self) -> PathBuf {
        self.cache.join("enzyme")
    }
    pub fn enzyme_src(&self) -> PathBuf {
        self.enzyme_cache().join("src")
    }
    pub fn enzyme_cmake_build(&self) -> PathBuf {
        self.enzyme_cache().join("build")
    }
    /// Where `enzyme` puts the library it built unless told otherwise.
    pub fn enzyme_built_lib(&self) -> PathBuf {
        self.enzyme_cache().join(format!("libEnzyme-{LLVM_MAJOR}.so"))
    }
    /// The Enzyme patch series `enzyme` applies by default.
    pub fn enzyme_patches(&self) -> PathBuf {
        self.patches.join(ENZYME_PATCHES)
    }
    /// Scratch space of `bench`, inside `work` so the chroot sees it at the same path.
    pub fn bench(&self) -> PathBuf {
        self.work().join("bench")
    }
    /// `wide`'s cache of the unpatched compiler's test results, one JSON file per suite.
    pub fn wide(&self) -> PathBuf {
        self.cache.join("wide")
    }
    /// `sweep`'s runs: `sweep/<run-id>/` holds the generated programs, logs and `sweep.json`.
    pub fn sweep(&self) -> PathBuf {
        self.cache.join("sweep")
    }
    /// Python packages `check` installs for tidy's extra checks (`pip install --target`).
    pub fn python_tools(&self) -> PathBuf {
        self.cache.join("python-tools")
    }
    pub fn cargo_home(&self) -> PathBuf {
        self.cache.join("cargo-home")
    }
    pub fn chroot(&self) -> PathBuf {
        self.cache.join("chroot").join("sid")
    }
    pub fn logs(&self) -> PathBuf {
        self.cache.join("logs")
    }
}

/// The harness repository (parent of `xtask/`), like rust-analyzer's `project_root`.
pub fn project_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The default cache directory, `$HOME/.cache/admk`.
pub fn default_cache() -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache").join("admk")
}
