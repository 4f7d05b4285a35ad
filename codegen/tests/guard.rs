//! Generated kernels never touch memory outside their buffers: weights, activations and outputs
//! are placed flush against `PROT_NONE` pages (after the end, and in a second pass before the
//! start), so any overrun or underrun faults.

use bitnetc_codegen::cpu::{
    split_groups, ExpandedActivations, ExpandedBatch, GemvKernel, GemvParams, GemvShape,
    HostFeatures, Layout, RepackedMatrix,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `len` bytes inside an mmap with an inaccessible page on each side; the bytes start right after
/// the leading guard page (`at_end = false`) or end right before the trailing one.
struct Guarded {
    base: *mut u8,
    map_len: usize,
    ptr: *mut u8,
}

impl Guarded {
    fn new(len: usize, at_end: bool) -> Guarded {
        // SAFETY: plain anonymous mapping and protection changes on memory we own.
        unsafe {
            let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
            let data_pages = len.div_ceil(page).max(1);
            let map_len = (data_pages + 2) * page;
            let base = libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(base, libc::MAP_FAILED);
            let base = base.cast::<u8>();
            assert_eq!(libc::mprotect(base.cast(), page, libc::PROT_NONE), 0);
            let tail = base.add((data_pages + 1) * page);
            assert_eq!(libc::mprotect(tail.cast(), page, libc::PROT_NONE), 0);
            let ptr = if at_end {
                tail.sub(len)
            } else {
                base.add(page)
            };
            Guarded { base, map_len, ptr }
        }
    }

    fn fill_from(&mut self, src: &[u8]) {
        // SAFETY: `ptr` has room for the length it was created with (callers pass that length).
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr, src.len()) };
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping made in `new`.
        unsafe { libc::munmap(self.base.cast(), self.map_len) };
    }
}

fn reference(codes: &[u8], q: &[i8], k: usize, m: usize) -> Vec<i32> {
    (0..m)
        .map(|r| {
            (0..k)
                .map(|c| i32::from(codes[r * k + c]) * i32::from(q[c]))
                .sum()
        })
        .collect()
}

#[test]
fn kernels_stay_inside_guarded_buffers() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let levels = HostFeatures::detect().unwrap().supported_levels();
    for (k, m, layout) in [
        (128usize, 7usize, Layout::rows4(4)),
        (384, 33, Layout::rows4(4)),
        (1280, 65, Layout::rows4(8)),
        (256, 3, Layout::rows4(16)),
        (2560, 640, Layout::rows4(4)),
        (128, 7, Layout::rows16(16)),
        (384, 33, Layout::rows16(16)),
        (1280, 65, Layout::rows16(32)),
        (2560, 640, Layout::rows16(16)),
    ] {
        let codes: Vec<u8> = (0..k * m).map(|_| rng.gen_range(0..3)).collect();
        let q: Vec<i8> = (0..k).map(|_| rng.gen()).collect();
        let want = reference(&codes, &q, k, m);
        let w = RepackedMatrix::from_codes(&codes, k, m, 1.0, layout).unwrap();
        let xq = ExpandedActivations::new(&q);
        let xq_bytes: Vec<u8> = xq.as_slice().iter().map(|&v| v as u8).collect();
        for at_end in [true, false] {
            let mut gw = Guarded::new(w.bytes().len(), at_end);
            gw.fill_from(w.bytes());
            let mut gx = Guarded::new(xq_bytes.len(), at_end);
            gx.fill_from(&xq_bytes);
            let go = Guarded::new(4 * m, at_end);
            for &level in &levels {
                for params in [
                    GemvParams::default(),
                    GemvParams {
                        streams: 5,
                        unroll: 3,
                        ..GemvParams::default()
                    },
                    GemvParams {
                        streams: 1,
                        unroll: 1,
                        ..GemvParams::default()
                    },
                ] {
                    let kern = GemvKernel::compile(&GemvShape::of(&w), &params, level).unwrap();
                    for parts in [1, 2, 3] {
                        let out = go.ptr.cast::<i32>();
                        // SAFETY: 4·m bytes, 4-aligned (page end minus a multiple of 4).
                        unsafe { std::ptr::write_bytes(out, 0xAB, m) };
                        for g in split_groups(kern.groups(), parts) {
                            let rows = kern.rows_of(g.clone());
                            // SAFETY: buffers sized as `run_raw` requires; 16-byte aligned
                            // weights and activations (lengths are multiples of 16).
                            unsafe {
                                kern.run_raw(gw.ptr, gx.ptr.cast::<i8>(), out.add(rows.start), g)
                            };
                        }
                        // SAFETY: m initialized i32.
                        let got = unsafe { std::slice::from_raw_parts(out, m) };
                        assert_eq!(got, &want[..], "K={k} M={m} {layout:?} {level} {params:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn prompt_kernels_stay_inside_guarded_buffers() {
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let levels = HostFeatures::detect().unwrap().supported_levels();
    for (k, m, layout, tokens) in [
        (128usize, 7usize, Layout::rows4(4), 3usize),
        (384, 33, Layout::rows16(16), 4),
        (1280, 65, Layout::rows16(32), 2),
        (256, 19, Layout::rows4(8), 8),
    ] {
        let codes: Vec<u8> = (0..k * m).map(|_| rng.gen_range(0..3)).collect();
        let qs: Vec<Vec<i8>> = (0..tokens)
            .map(|_| (0..k).map(|_| rng.gen()).collect())
            .collect();
        let want: Vec<i32> = qs.iter().flat_map(|q| reference(&codes, q, k, m)).collect();
        let w = RepackedMatrix::from_codes(&codes, k, m, 1.0, layout).unwrap();
        let mut xb = ExpandedBatch::new(k, tokens);
        for (t, q) in qs.iter().enumerate() {
            xb.fill(t, q);
        }
        let xb_bytes: Vec<u8> = xb.as_slice().iter().map(|&v| v as u8).collect();
        for at_end in [true, false] {
            let mut gw = Guarded::new(w.bytes().len(), at_end);
            gw.fill_from(w.bytes());
            let mut gx = Guarded::new(xb_bytes.len(), at_end);
            gx.fill_from(&xb_bytes);
            let go = Guarded::new(4 * m * tokens, at_end);
            for &level in &levels {
                let params = GemvParams::prompt_default(tokens);
                let kern = GemvKernel::compile(&GemvShape::of(&w), &params, level).unwrap();
                for parts in [1, 2, 3] {
                    let out = go.ptr.cast::<i32>();
                    // SAFETY: 4·m·tokens bytes, 4-aligned.
                    unsafe { std::ptr::write_bytes(out, 0xAB, m * tokens) };
                    for g in split_groups(kern.groups(), parts) {
                        let rows = kern.rows_of(g.clone());
                        // SAFETY: buffers sized as `run_raw` requires for `tokens` rows.
                        unsafe {
                            kern.run_raw(gw.ptr, gx.ptr.cast::<i8>(), out.add(rows.start), g)
                        };
                    }
                    // SAFETY: m·tokens initialized i32.
                    let got = unsafe { std::slice::from_raw_parts(out, m * tokens) };
                    assert_eq!(got, &want[..], "K={k} M={m} {layout:?} {level} T={tokens}");
                }
            }
        }
    }
}
