//! Helpers shared by the integration tests.

use std::path::Path;
use std::sync::OnceLock;

static SCRATCH: OnceLock<tempfile::TempDir> = OnceLock::new();

/// Removes the scratch directory; registered with `atexit`, because a `static` is never dropped
/// and the test harness ends the process with `exit` (without this, each run of the suite left
/// its generated models, about a gigabyte per test binary, in the temporary folder).
extern "C" fn remove_scratch() {
    if let Some(dir) = SCRATCH.get() {
        let _ = std::fs::remove_dir_all(dir.path());
    }
}

/// A scratch directory shared by every test of this test binary (the models they generate
/// once), removed when the binary exits.
pub fn scratch_dir() -> &'static Path {
    SCRATCH
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temporary directory");
            // SAFETY: registers a plain `extern "C"` function without arguments.
            unsafe { libc::atexit(remove_scratch) };
            dir
        })
        .path()
}
