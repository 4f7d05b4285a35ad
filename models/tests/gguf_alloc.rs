//! Hostile counts and lengths must not drive allocation: the largest single allocation made while
//! reading a small file that claims billions of entries stays small.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bitnetc_models::gguf::parse_header;

struct Tracking;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

fn header(n_tensors: u64, n_kv: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&n_tensors.to_le_bytes());
    b.extend_from_slice(&n_kv.to_le_bytes());
    b
}

fn kv_array(elem: u32, count: u64) -> Vec<u8> {
    let mut b = header(0, 1);
    b.extend_from_slice(&1u64.to_le_bytes());
    b.push(b'k');
    b.extend_from_slice(&9u32.to_le_bytes());
    b.extend_from_slice(&elem.to_le_bytes());
    b.extend_from_slice(&count.to_le_bytes());
    b.resize(b.len() + 4096, 0);
    b
}

#[test]
fn claimed_sizes_do_not_drive_allocation() {
    let mut files = vec![
        [header(u64::MAX >> 2, 0), vec![0; 4096]].concat(),
        [header(0, u64::MAX >> 2), vec![0; 4096]].concat(),
        [header(0, 200), vec![0; 4096]].concat(),
        [header(100, 0), vec![0; 4096]].concat(),
        kv_array(0, 1 << 29),
        kv_array(8, 1 << 29),
        kv_array(10, 1 << 29),
        kv_array(0, 5000),
        // Counts that the file's size could back, but whose entries are not there.
        [header(0, (2 << 20) / 14), vec![0; 2 << 20]].concat(),
        [header((2 << 20) / 33, 0), vec![0; 2 << 20]].concat(),
    ];
    // A string length claiming a terabyte.
    let mut s = header(0, 1);
    s.extend_from_slice(&(1u64 << 40).to_le_bytes());
    s.resize(s.len() + 4096, b'a');
    files.push(s);
    for (i, f) in files.iter().enumerate() {
        LARGEST.store(0, Ordering::Relaxed);
        let result = parse_header(f);
        let largest = LARGEST.load(Ordering::Relaxed);
        assert!(result.is_err(), "file {i} parsed");
        assert!(
            largest <= 1 << 20,
            "file {i} ({} bytes) made a {largest}-byte allocation",
            f.len()
        );
    }
}
