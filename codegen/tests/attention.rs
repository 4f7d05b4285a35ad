//! Attention kernels against a scalar reference written here in the reference backend's order
//! (bit-identical results), at real and odd shapes, every ISA level, plus aarch64 compilation
//! and guard pages around every buffer.

use bitnetc_codegen::cpu::attention::{
    compile_only, AttentionKernels, AttentionParams, AttentionShape,
};
use bitnetc_codegen::cpu::{HostFeatures, Target};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The reference `dot_f32`: eight partial sums, combined pairwise, plus a zero tail.
fn dot8(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    for c in 0..a.len() / 8 {
        for l in 0..8 {
            acc[l] += a[8 * c + l] * b[8 * c + l];
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + 0.0
}

fn ref_scores(q: &[f32], keys: &[f32], n: usize, stride: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|j| dot8(q, &keys[j * stride..][..q.len()]) * scale)
        .collect()
}

fn ref_weighted_sum(p: &[f32], values: &[f32], stride: usize, d: usize) -> Vec<f32> {
    let mut o = vec![0.0f32; d];
    for (j, &pj) in p.iter().enumerate() {
        for (o, &v) in o.iter_mut().zip(&values[j * stride..][..d]) {
            *o += pj * v;
        }
    }
    o
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn kernels_equal_the_reference_bit_for_bit() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let levels = HostFeatures::detect().unwrap().supported_levels();
    // (head_dim, stride, positions): 2B4T (128 of a 640-wide KV row), odd position counts,
    // a small head, and a head wider than the default block.
    for (d, stride, n) in [
        (128usize, 640usize, 1usize),
        (128, 640, 77),
        (128, 640, 300),
        (64, 128, 13),
        (8, 8, 5),
        (24, 40, 9),
        (256, 256, 31),
    ] {
        let q: Vec<f32> = (0..d).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
        let keys: Vec<f32> = (0..(n - 1) * stride + d)
            .map(|_| rng.gen_range(-2.0f32..2.0))
            .collect();
        let values: Vec<f32> = (0..(n - 1) * stride + d)
            .map(|_| rng.gen_range(-2.0f32..2.0))
            .collect();
        let scale = 1.0 / (d as f32).sqrt();
        let want_s = ref_scores(&q, &keys, n, stride, scale);
        let mut p: Vec<f32> = (0..n).map(|_| rng.gen_range(0.0f32..1.0)).collect();
        // A negative zero product in the first position (0.0 + -0.0 must give +0.0 as in Rust).
        p[0] = -0.0;
        let want_o = ref_weighted_sum(&p, &values, stride, d);
        let shape = AttentionShape {
            head_dim: d,
            stride,
            scale,
            heads: 1,
        };
        for &level in &levels {
            for params in [
                AttentionParams::default(),
                AttentionParams { rows: 1, cols: 1 },
                AttentionParams { rows: 3, cols: 5 },
                AttentionParams { rows: 4, cols: 16 },
            ] {
                let k = AttentionKernels::compile(&shape, &params, level).unwrap();
                let mut s = vec![f32::NAN; n];
                k.scores(&q, &keys, &mut s).unwrap();
                assert_eq!(
                    bits(&s),
                    bits(&want_s),
                    "scores D={d} n={n} {level} {params:?}"
                );
                let mut o = vec![f32::NAN; d];
                k.weighted_sum(&p, &values, &mut o).unwrap();
                assert_eq!(
                    bits(&o),
                    bits(&want_o),
                    "sum D={d} n={n} {level} {params:?}"
                );
            }
        }
    }
}

#[test]
fn blocks_of_heads_equal_the_reference_per_head() {
    // 2, 3 and 4 query heads per call sharing one KV head: each head's scores and weighted sum
    // as the one-head reference gives them, whatever rows/cols were asked for.
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let levels = HostFeatures::detect().unwrap().supported_levels();
    for (d, stride, n) in [
        (128usize, 640usize, 1usize),
        (128, 640, 77),
        (24, 40, 9),
        (8, 8, 5),
    ] {
        for heads in 2..=4 {
            let q: Vec<f32> = (0..heads * d)
                .map(|_| rng.gen_range(-2.0f32..2.0))
                .collect();
            let kv: Vec<f32> = (0..(n - 1) * stride + d)
                .map(|_| rng.gen_range(-2.0f32..2.0))
                .collect();
            let p: Vec<f32> = (0..heads * n).map(|_| rng.gen_range(0.0f32..1.0)).collect();
            let scale = 1.0 / (d as f32).sqrt();
            let want_s: Vec<f32> = (0..heads)
                .flat_map(|h| ref_scores(&q[h * d..(h + 1) * d], &kv, n, stride, scale))
                .collect();
            let want_o: Vec<f32> = (0..heads)
                .flat_map(|h| ref_weighted_sum(&p[h * n..(h + 1) * n], &kv, stride, d))
                .collect();
            let shape = AttentionShape {
                head_dim: d,
                stride,
                scale,
                heads,
            };
            for &level in &levels {
                for params in [
                    AttentionParams::default(),
                    AttentionParams { rows: 1, cols: 1 },
                    AttentionParams { rows: 4, cols: 16 },
                ] {
                    let k = AttentionKernels::compile(&shape, &params, level).unwrap();
                    let mut s = vec![f32::NAN; heads * n];
                    k.scores(&q, &kv, &mut s).unwrap();
                    assert_eq!(bits(&s), bits(&want_s), "scores {heads} heads D={d} n={n}");
                    let mut o = vec![f32::NAN; heads * d];
                    k.weighted_sum(&p, &kv, &mut o).unwrap();
                    assert_eq!(bits(&o), bits(&want_o), "sum {heads} heads D={d} n={n}");
                    // Wrong lengths for this head count are refused.
                    assert!(k.scores(&q[..d], &kv, &mut s).is_err());
                    assert!(k.weighted_sum(&p, &kv, &mut o[..d]).is_err());
                }
            }
            // Guard pages after every buffer.
            let (mut gq, mut gkv, mut gp) = (
                Guarded::new(&q, true),
                Guarded::new(&kv, true),
                Guarded::new(&p, true),
            );
            let mut gs = Guarded::new(&vec![0.0; heads * n], true);
            let mut go = Guarded::new(&vec![0.0; heads * d], true);
            let k =
                AttentionKernels::compile(&shape, &AttentionParams::default(), levels[0]).unwrap();
            k.scores(gq.slice(), gkv.slice(), gs.slice()).unwrap();
            assert_eq!(bits(gs.slice()), bits(&want_s));
            k.weighted_sum(gp.slice(), gkv.slice(), go.slice()).unwrap();
            assert_eq!(bits(go.slice()), bits(&want_o));
        }
    }
}

#[test]
fn bad_shapes_and_lengths_are_errors() {
    let ok = AttentionShape {
        head_dim: 16,
        stride: 32,
        scale: 0.25,
        heads: 1,
    };
    let k = AttentionKernels::compile(
        &ok,
        &AttentionParams::default(),
        bitnetc_codegen::cpu::IsaLevel::Native,
    )
    .unwrap();
    let mut s = vec![0.0; 3];
    // Three positions need 2·32 + 16 floats.
    assert!(k.scores(&[0.0; 16], &vec![0.0; 79], &mut s).is_err());
    assert!(k.scores(&[0.0; 16], &vec![0.0; 80], &mut s).is_ok());
    assert!(k.scores(&[0.0; 15], &vec![0.0; 80], &mut s).is_err());
    assert!(k
        .weighted_sum(&[0.5; 3], &[0.0; 80], &mut [0.0; 15])
        .is_err());
    for bad in [
        AttentionShape {
            head_dim: 12,
            stride: 32,
            scale: 1.0,
            heads: 1,
        },
        AttentionShape {
            head_dim: 16,
            stride: 8,
            scale: 1.0,
            heads: 1,
        },
        AttentionShape {
            head_dim: 0,
            stride: 8,
            scale: 1.0,
            heads: 1,
        },
    ] {
        assert!(AttentionKernels::compile(
            &bad,
            &AttentionParams::default(),
            bitnetc_codegen::cpu::IsaLevel::Native
        )
        .is_err());
    }
}

#[test]
fn compiles_for_aarch64() {
    for (dotprod, i8mm) in [(false, false), (true, true)] {
        let target = Target::aarch64(dotprod, i8mm).unwrap();
        for heads in [1, 4] {
            let shape = AttentionShape {
                head_dim: 128,
                stride: 640,
                scale: 0.088,
                heads,
            };
            let info = compile_only(&shape, &AttentionParams::default(), &target).unwrap();
            assert!(!info.code.is_empty());
            assert!(info.target.is_aarch64());
        }
    }
}

/// `len` f32 ending right before an inaccessible page (or starting right after one).
struct Guarded {
    base: *mut u8,
    map_len: usize,
    ptr: *mut f32,
    len: usize,
}

impl Guarded {
    fn new(data: &[f32], at_end: bool) -> Guarded {
        let bytes = 4 * data.len();
        // SAFETY: anonymous mapping and protection changes on memory we own.
        unsafe {
            let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
            let pages = bytes.div_ceil(page).max(1);
            let map_len = (pages + 2) * page;
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
            let tail = base.add((pages + 1) * page);
            assert_eq!(libc::mprotect(tail.cast(), page, libc::PROT_NONE), 0);
            let ptr = if at_end {
                tail.sub(bytes)
            } else {
                base.add(page)
            }
            .cast::<f32>();
            std::ptr::copy_nonoverlapping(data.as_ptr(), ptr, data.len());
            Guarded {
                base,
                map_len,
                ptr,
                len: data.len(),
            }
        }
    }

    fn slice(&mut self) -> &mut [f32] {
        // SAFETY: `len` floats were copied in at `ptr`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping made in `new`.
        unsafe { libc::munmap(self.base.cast(), self.map_len) };
    }
}

#[test]
fn kernels_stay_inside_guarded_buffers() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let levels = HostFeatures::detect().unwrap().supported_levels();
    for (d, stride, n) in [(128usize, 640usize, 37usize), (24, 40, 5), (8, 8, 1)] {
        let span = (n - 1) * stride + d;
        let q: Vec<f32> = (0..d).map(|_| rng.gen()).collect();
        let kv: Vec<f32> = (0..span).map(|_| rng.gen()).collect();
        let p: Vec<f32> = (0..n).map(|_| rng.gen()).collect();
        let want_s = ref_scores(&q, &kv, n, stride, 0.5);
        let want_o = ref_weighted_sum(&p, &kv, stride, d);
        let shape = AttentionShape {
            head_dim: d,
            stride,
            scale: 0.5,
            heads: 1,
        };
        for at_end in [true, false] {
            let (mut gq, mut gkv, mut gp) = (
                Guarded::new(&q, at_end),
                Guarded::new(&kv, at_end),
                Guarded::new(&p, at_end),
            );
            let mut gs = Guarded::new(&vec![0.0; n], at_end);
            let mut go = Guarded::new(&vec![0.0; d], at_end);
            for &level in &levels {
                for params in [
                    AttentionParams::default(),
                    AttentionParams { rows: 4, cols: 3 },
                ] {
                    let k = AttentionKernels::compile(&shape, &params, level).unwrap();
                    k.scores(gq.slice(), gkv.slice(), gs.slice()).unwrap();
                    assert_eq!(bits(gs.slice()), bits(&want_s));
                    k.weighted_sum(gp.slice(), gkv.slice(), go.slice()).unwrap();
                    assert_eq!(bits(go.slice()), bits(&want_o));
                }
            }
        }
    }
}
