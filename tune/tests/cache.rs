//! The tune cache: round trip, defensive reading, atomic and concurrent writing.

use bitnetc_tune::{CacheEntry, HostFingerprint, KernelKey, KernelKind, TuneCache, TunedParams};

fn host() -> HostFingerprint {
    HostFingerprint {
        arch: "x86_64".into(),
        cpu_model: "Test CPU".into(),
        features: vec!["has_avx2".into()],
        cores: 2,
    }
}

fn key(m: usize) -> KernelKey {
    KernelKey {
        kind: KernelKind::Gemv,
        isa: "avx2".into(),
        k: 256,
        m,
        format: "ternary".into(),
        threads: 2,
    }
}

fn entry(streams: usize) -> CacheEntry {
    CacheEntry {
        params: TunedParams::Gemv {
            pack: bitnetc_tune::params::PackName::Rows16cols4,
            rows_per_group: 32,
            streams,
            unroll: 4,
        },
        default_ns: 2000.0,
        tuned_ns: 1500.0,
        candidates: 12,
        tuned_at: 1,
    }
}

#[test]
fn round_trip_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, w) = TuneCache::open(dir.path(), host());
    assert!(w.is_empty() && c.is_empty());
    c.insert(&key(64), entry(3));
    assert!(c.save().unwrap().is_empty());
    let (c2, w) = TuneCache::open(dir.path(), host());
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(c2.get(&key(64)), Some(&entry(3)));
    assert_eq!(c2.get(&key(65)), None);
    // A different thread count or ISA is a different key.
    let mut other = key(64);
    other.threads = 1;
    assert_eq!(c2.get(&other), None);
    // Human-readable.
    let text = std::fs::read_to_string(c2.path()).unwrap();
    assert!(text.contains("\"gemv/avx2/ternary/256x64/t2\""), "{text}");
    assert!(text.contains("\"streams\": 3"), "{text}");
}

/// Writes a valid cache, then damages it with `damage`, and checks that opening it gives exactly
/// one warning containing `expect`, no entries, and that saving replaces it with a valid file.
fn damaged(damage: impl Fn(&str) -> String, expect: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, _) = TuneCache::open(dir.path(), host());
    c.insert(&key(64), entry(3));
    c.save().unwrap();
    let path = c.path().to_path_buf();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, damage(&text)).unwrap();
    let (mut c, w) = TuneCache::open(dir.path(), host());
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains(expect), "{w:?}");
    assert!(!w[0].contains('\n'), "one line: {w:?}");
    assert!(
        c.get(&key(64)).is_none(),
        "a damaged cache must not be trusted"
    );
    c.insert(&key(128), entry(2));
    let w = c.save().unwrap();
    assert_eq!(w.len(), 1, "{w:?}");
    let (c, w) = TuneCache::open(dir.path(), host());
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(c.get(&key(128)), Some(&entry(2)));
}

#[test]
fn corrupt_cache_is_reported_and_ignored() {
    damaged(|t| t.replace("\"entries\"", "\"entr\0ies"), "corrupt");
}

#[test]
fn truncated_cache_is_reported_and_ignored() {
    damaged(|t| t[..t.len() / 2].to_string(), "truncated");
}

#[test]
fn foreign_version_cache_is_reported_and_ignored() {
    damaged(
        |t| {
            t.replace(
                &format!("\"bitnetc_version\": \"{}\"", env!("CARGO_PKG_VERSION")),
                "\"bitnetc_version\": \"0.0.1\"",
            )
        },
        "written by bitnetc 0.0.1",
    );
    damaged(
        |t| t.replace("\"format\": 1", "\"format\": 99"),
        "format 99",
    );
}

#[test]
fn foreign_host_cache_is_reported_and_ignored() {
    damaged(|t| t.replace("Test CPU", "Other CPU"), "another host");
}

#[test]
fn invalid_entries_are_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, _) = TuneCache::open(dir.path(), host());
    let mut bad = entry(3);
    bad.params = TunedParams::Gemv {
        pack: bitnetc_tune::params::PackName::Rows16cols4,
        rows_per_group: 20, // not a multiple of 16
        streams: 3,
        unroll: 4,
    };
    c.insert(&key(64), bad);
    // An entry of another family under this key.
    c.insert(
        &key(65),
        CacheEntry {
            params: TunedParams::Head { rows: 2, unroll: 2 },
            ..entry(1)
        },
    );
    c.save().unwrap();
    let (c, _) = TuneCache::open(dir.path(), host());
    assert!(c.get(&key(64)).is_none());
    assert!(c.get(&key(65)).is_none());
}

#[test]
fn concurrent_writers_leave_a_valid_cache_with_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let d = dir.path().to_path_buf();
            std::thread::spawn(move || {
                for i in 0..10 {
                    let (mut c, warnings) = TuneCache::open(&d, host());
                    assert!(warnings.is_empty(), "{warnings:?}");
                    c.insert(&key(1000 * (w + 1) + i), entry(w + 1));
                    assert!(c.save().unwrap().is_empty());
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let (c, w) = TuneCache::open(dir.path(), host());
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(c.len(), 40);
    // No temporary files left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".json") && !n.ends_with(".lock"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
