//! The generated output head equals an independent transcription of the reference dot product
//! (`runtime`'s `dot_f32`: eight interleaved f32 partial sums, fixed combination order) bit for
//! bit, for F16 (both conversions), BF16 and repacked Q8_0/Q6_K tables, at every ISA level the
//! host supports, at round and odd row counts and row ranges; it stays inside guarded buffers
//! and compiles for aarch64.

use bitnetc_codegen::cpu::head::{
    f16_table_is_finite, HeadFormat, HeadKernel, HeadParams, HeadShape,
};
use bitnetc_codegen::cpu::HostFeatures;
use half::{bf16, f16};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The reference order of a dot product of length K (a multiple of 8).
fn dot_reference(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (ca, cb) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += ca[l] * cb[l];
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + 0.0
}

fn decode(format: HeadFormat, bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|b| {
            let bits = u16::from_le_bytes([b[0], b[1]]);
            match format {
                HeadFormat::BF16 => bf16::from_bits(bits).to_f32(),
                HeadFormat::F16 { .. } => f16::from_bits(bits).to_f32(),
                _ => unreachable!("16-bit formats only"),
            }
        })
        .collect()
}

/// A table of random values, with some subnormal and zero elements mixed in.
fn table(rng: &mut ChaCha8Rng, format: HeadFormat, n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|_| {
            let v: f32 = match rng.gen_range(0..10) {
                0 => 0.0,
                1 => -0.0,
                2 => rng.gen_range(-1e-6f32..1e-6), // f16 subnormal range
                _ => rng.gen_range(-2.0f32..2.0),
            };
            let bits = match format {
                HeadFormat::BF16 => bf16::from_f32(v).to_bits(),
                HeadFormat::F16 { .. } => f16::from_f32(v).to_bits(),
                _ => unreachable!("16-bit formats only"),
            };
            bits.to_le_bytes()
        })
        .collect()
}

fn check(format: HeadFormat, bytes: &[u8], k: usize, rows: usize, x: &[f32], seed: u64) {
    let levels = HostFeatures::detect().unwrap().supported_levels();
    let values = decode(format, bytes);
    let expected: Vec<f32> = values.chunks(k).map(|r| dot_reference(r, x)).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for level in levels {
        for params in [
            HeadParams::default(),
            HeadParams::default_for(format),
            HeadParams { rows: 1, unroll: 1 },
            HeadParams { rows: 3, unroll: 3 },
            HeadParams { rows: 8, unroll: 2 },
        ] {
            let shape = HeadShape { k, rows, format };
            let kernel = HeadKernel::compile(&shape, &params, level).unwrap();
            let mut out = vec![f32::NAN; rows];
            kernel.run(bytes, x, &mut out, 0..rows).unwrap();
            for (r, (o, e)) in out.iter().zip(&expected).enumerate() {
                assert!(
                    o.to_bits() == e.to_bits() || (o.is_nan() && e.is_nan()),
                    "{format:?} {level} {params:?} K={k} row {r}: {o} vs {e}"
                );
            }
            // A random sub-range writes exactly its rows.
            let a = rng.gen_range(0..rows);
            let b = rng.gen_range(a..=rows);
            let mut part = vec![f32::NAN; b - a];
            kernel.run(bytes, x, &mut part, a..b).unwrap();
            for (o, e) in part.iter().zip(&expected[a..b]) {
                assert!(o.to_bits() == e.to_bits() || (o.is_nan() && e.is_nan()));
            }
        }
    }
}

#[test]
fn head_matches_reference_dot_bit_for_bit() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (k, rows) in [
        (8usize, 1usize),
        (24, 5),
        (256, 7),
        (264, 33),
        (2560, 67),
        (128, 1029),
    ] {
        let x: Vec<f32> = (0..k).map(|_| rng.gen_range(-3.0f32..3.0)).collect();
        for format in [
            HeadFormat::F16 { finite: true },
            HeadFormat::F16 { finite: false },
            HeadFormat::BF16,
        ] {
            let bytes = table(&mut rng, format, k * rows);
            assert!(f16_table_is_finite(&bytes) || format == HeadFormat::BF16);
            check(format, &bytes, k, rows, &x, k as u64);
        }
    }
}

/// Rows per block split a call's rows into parts read side by side, with the rows left over
/// after them one at a time, and row 0 of a finite F16 table on its own: every range of every
/// small table gives the reference logits of exactly its rows.
#[test]
fn every_row_range_gives_its_rows_for_every_rows_per_block() {
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let levels = HostFeatures::detect().unwrap().supported_levels();
    let k = 24;
    for format in [HeadFormat::F16 { finite: true }, HeadFormat::BF16] {
        for rows in [1usize, 2, 5, 11, 19] {
            let bytes = table(&mut rng, format, k * rows);
            let x: Vec<f32> = (0..k).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
            let values = decode(format, &bytes);
            let want: Vec<u32> = values
                .chunks(k)
                .map(|r| dot_reference(r, &x).to_bits())
                .collect();
            let shape = HeadShape { k, rows, format };
            for &level in &levels {
                for n in 1..=8 {
                    let params = HeadParams { rows: n, unroll: 1 };
                    let kern = HeadKernel::compile(&shape, &params, level).unwrap();
                    for a in 0..=rows {
                        for b in a..=rows {
                            let mut got = vec![f32::NAN; b - a];
                            kern.run(&bytes, &x, &mut got, a..b).unwrap();
                            let g: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
                            assert_eq!(g, want[a..b], "{format:?} {level} rows {n} {a}..{b}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn activations_too_large_to_prescale_give_the_same_results() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let (k, rows) = (48, 9);
    let mut x: Vec<f32> = (0..k).map(|_| rng.gen_range(-3.0f32..3.0)).collect();
    x[7] = 70000.0;
    x[30] = -1.0e30;
    let format = HeadFormat::F16 { finite: true };
    let bytes = table(&mut rng, format, k * rows);
    check(format, &bytes, k, rows, &x, 6);
}

#[test]
fn general_f16_conversion_handles_infinities_and_nans() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let (k, rows) = (64, 40);
    let x: Vec<f32> = (0..k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    let mut bytes = table(&mut rng, HeadFormat::F16 { finite: false }, k * rows);
    // Row 1: +inf, row 2: -inf, row 3: a NaN, row 4: the largest finite half; row 5: every
    // special at once.
    let put = |bytes: &mut Vec<u8>, i: usize, bits: u16| {
        bytes[2 * i..2 * i + 2].copy_from_slice(&bits.to_le_bytes());
    };
    put(&mut bytes, k + 3, 0x7c00);
    put(&mut bytes, 2 * k + 9, 0xfc00);
    put(&mut bytes, 3 * k + 17, 0x7e01);
    put(&mut bytes, 4 * k + 5, 0x7bff);
    put(&mut bytes, 5 * k, 0x7c00);
    put(&mut bytes, 5 * k + 1, 0xfd00);
    assert!(!f16_table_is_finite(&bytes));
    check(HeadFormat::F16 { finite: false }, &bytes, k, rows, &x, 5);
    // Every half bit pattern converts exactly (one row of K = 65536).
    let all: Vec<u8> = (0..=u16::MAX).flat_map(|b| b.to_le_bytes()).collect();
    let ones = vec![1.0f32; 8];
    let shape = HeadShape {
        k: 8,
        rows: 8192,
        format: HeadFormat::F16 { finite: false },
    };
    for level in HostFeatures::detect().unwrap().supported_levels() {
        let kernel = HeadKernel::compile(&shape, &HeadParams::default(), level).unwrap();
        let mut out = vec![0.0; 8192];
        kernel.run(&all, &ones, &mut out, 0..8192).unwrap();
        let values = decode(HeadFormat::F16 { finite: false }, &all);
        for (r, o) in out.iter().enumerate() {
            let e = dot_reference(&values[8 * r..8 * r + 8], &ones);
            assert!(
                o.to_bits() == e.to_bits() || (o.is_nan() && e.is_nan()),
                "row {r}"
            );
        }
    }
}

#[test]
fn bad_shapes_and_buffers_are_errors() {
    let level = HostFeatures::detect().unwrap().supported_levels()[0];
    let f = HeadFormat::BF16;
    for (k, rows) in [(0usize, 4usize), (12, 4), (16, 0)] {
        let shape = HeadShape { k, rows, format: f };
        assert!(HeadKernel::compile(&shape, &HeadParams::default(), level).is_err());
    }
    let shape = HeadShape {
        k: 16,
        rows: 4,
        format: f,
    };
    for bad in [
        HeadParams { rows: 0, unroll: 1 },
        HeadParams { rows: 9, unroll: 1 },
        HeadParams { rows: 4, unroll: 0 },
        HeadParams {
            rows: 4,
            unroll: 17,
        },
    ] {
        assert!(HeadKernel::compile(&shape, &bad, level).is_err(), "{bad:?}");
    }
    let kernel = HeadKernel::compile(&shape, &HeadParams::default(), level).unwrap();
    let table = vec![0u8; 2 * 16 * 4];
    let x = vec![0.0f32; 16];
    let mut out = vec![0.0f32; 4];
    assert!(kernel.run(&table[1..], &x, &mut out, 0..4).is_err());
    assert!(kernel.run(&table, &x[1..], &mut out, 0..4).is_err());
    assert!(kernel.run(&table, &x, &mut out, 0..5).is_err());
    assert!(kernel.run(&table, &x, &mut out[..3], 0..4).is_err());
    assert!(kernel.run(&table, &x, &mut out, 0..4).is_ok());
    // Activations prepared by a kernel of another K or table format are refused.
    let other_k = HeadShape { k: 24, ..shape };
    let other_k = HeadKernel::compile(&other_k, &HeadParams::default(), level).unwrap();
    let input = other_k.prepare(&[0.0f32; 24]).unwrap();
    assert!(kernel.run_prepared(&table, &input, &mut out, 0..4).is_err());
    let other_f = HeadShape {
        format: HeadFormat::F32,
        ..shape
    };
    let other_f = HeadKernel::compile(&other_f, &HeadParams::default(), level).unwrap();
    let input = other_f.prepare(&x).unwrap();
    assert!(kernel.run_prepared(&table, &input, &mut out, 0..4).is_err());
    let input = kernel.prepare(&x).unwrap();
    assert!(kernel.run_prepared(&table, &input, &mut out, 0..4).is_ok());
}

/// Q8_0 and Q6_K tables repacked to scaled int8: every row equals the dot product of the
/// reference dequantizer's row (`bitnetc_models::quant`) with x, in the reference order, bit for
/// bit, at every level, for several parameter choices and row ranges.
#[test]
fn scaled_int8_heads_match_the_dequantized_reference() {
    use bitnetc_codegen::cpu::head::repack_scaled_i8;
    use bitnetc_ir::DType;
    use bitnetc_models::quant;
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let levels = HostFeatures::detect().unwrap().supported_levels();
    for (dtype, k, rows) in [
        (DType::Q8_0, 64usize, 37usize),
        (DType::Q8_0, 96, 13),
        (DType::Q8_0, 2560, 9),
        (DType::Q6K, 256, 23),
        (DType::Q6K, 2560, 5),
    ] {
        // Encode random values with the project's quantizers (real Q8_0 / Q6_K bytes).
        let rb = dtype.row_bytes(k as u64).unwrap() as usize;
        let mut bytes = vec![0u8; rb * rows];
        for r in 0..rows {
            let x: Vec<f32> = (0..k).map(|_| rng.gen_range(-3.0f32..3.0)).collect();
            quant::quantize_row(dtype, &x, &mut bytes[r * rb..(r + 1) * rb]).unwrap();
        }
        let x: Vec<f32> = (0..k).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
        let want: Vec<f32> = (0..rows)
            .map(|r| {
                let mut row = vec![0.0f32; k];
                quant::dequantize_row(dtype, &bytes[r * rb..(r + 1) * rb], &mut row).unwrap();
                dot_reference(&row, &x)
            })
            .collect();
        let packed = repack_scaled_i8(dtype, &bytes, k, rows).unwrap();
        // (The CPU backends take Q6_K tables as `HeadFormat::Q6K`; the scaled-int8 form of them
        // is what the CUDA head reads.)
        let format = HeadFormat::ScaledI8 {
            group: if dtype == DType::Q8_0 { 32 } else { 16 },
        };
        let shape = HeadShape { k, rows, format };
        for &level in &levels {
            for params in [
                HeadParams::default(),
                HeadParams { rows: 1, unroll: 1 },
                HeadParams { rows: 3, unroll: 4 },
                // Steps spanning several groups, and (K = 96) steps that straddle groups.
                HeadParams { rows: 4, unroll: 8 },
                HeadParams { rows: 2, unroll: 3 },
                HeadParams::default_for(format),
            ] {
                let kern = HeadKernel::compile(&shape, &params, level).unwrap();
                let mut got = vec![f32::NAN; rows];
                kern.run(&packed, &x, &mut got, 0..rows).unwrap();
                let (g, w): (Vec<u32>, Vec<u32>) = (
                    got.iter().map(|v| v.to_bits()).collect(),
                    want.iter().map(|v| v.to_bits()).collect(),
                );
                assert_eq!(g, w, "{dtype} {k}x{rows} {level} {params:?}");
                let mut part = vec![f32::NAN; rows - 2];
                kern.run(&packed, &x, &mut part, 1..rows - 1).unwrap();
                assert_eq!(&part[..], &got[1..rows - 1]);
            }
        }
        // A non-finite block scale is refused, as the reference refuses it.
        let mut bad = bytes.clone();
        let d_at = if dtype == DType::Q8_0 { 0 } else { 208 };
        bad[d_at..d_at + 2].copy_from_slice(&f16::INFINITY.to_le_bytes());
        assert!(repack_scaled_i8(dtype, &bad, k, rows).is_err());
        assert!(repack_scaled_i8(dtype, &bytes[1..], k, rows).is_err());
    }
}

/// Every head format compiles for aarch64 with NEON from this host.
#[test]
fn compiles_for_aarch64() {
    use bitnetc_codegen::cpu::head::compile_only;
    use bitnetc_codegen::cpu::Target;
    for (dotprod, i8mm) in [(false, false), (true, true)] {
        let target = Target::aarch64(dotprod, i8mm).unwrap();
        for format in [
            HeadFormat::F16 { finite: true },
            HeadFormat::F16 { finite: false },
            HeadFormat::BF16,
            HeadFormat::ScaledI8 { group: 16 },
            HeadFormat::ScaledI8 { group: 32 },
            HeadFormat::F32,
            HeadFormat::Q6K,
            HeadFormat::Q8_0,
        ] {
            let shape = HeadShape {
                k: 2560,
                rows: 128256,
                format,
            };
            let mut params_list = vec![
                HeadParams::default_for(format),
                HeadParams { rows: 1, unroll: 1 },
            ];
            params_list.push(HeadParams { rows: 8, unroll: 2 });
            if !matches!(format, HeadFormat::Q6K | HeadFormat::Q8_0) {
                params_list.push(HeadParams::default());
            }
            for params in params_list {
                let info = compile_only(&shape, &params, &target).unwrap();
                assert!(!info.code.is_empty(), "{format:?}");
                assert!(info.target.is_aarch64());
            }
        }
    }
}

/// `len` bytes ending right before an inaccessible page (or starting right after one).
struct Guarded {
    base: *mut u8,
    map_len: usize,
    ptr: *mut u8,
    len: usize,
}

impl Guarded {
    fn new(data: &[u8], at_end: bool) -> Guarded {
        // SAFETY: anonymous mapping and protection changes on memory we own.
        unsafe {
            let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
            let pages = data.len().div_ceil(page).max(1);
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
                tail.sub(data.len())
            } else {
                base.add(page)
            };
            std::ptr::copy_nonoverlapping(data.as_ptr(), ptr, data.len());
            Guarded {
                base,
                map_len,
                ptr,
                len: data.len(),
            }
        }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes were copied in at `ptr`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    fn f32s(&self) -> &[f32] {
        assert_eq!(self.ptr as usize % 4, 0);
        // SAFETY: `len` bytes at a 4-aligned `ptr`.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<f32>(), self.len / 4) }
    }

    fn f32s_mut(&mut self) -> &mut [f32] {
        assert_eq!(self.ptr as usize % 4, 0);
        // SAFETY: `len` bytes at a 4-aligned `ptr`, borrowed mutably once.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.cast::<f32>(), self.len / 4) }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping made in `new`.
        unsafe { libc::munmap(self.base.cast(), self.map_len) };
    }
}

/// Tables, activations and outputs flush against `PROT_NONE` pages (after the end, and in a
/// second pass before the start): any overrun or underrun of a head kernel faults.
#[test]
fn head_kernels_stay_inside_guarded_buffers() {
    use bitnetc_codegen::cpu::head::repack_scaled_i8;
    use bitnetc_ir::DType;
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let levels = HostFeatures::detect().unwrap().supported_levels();
    for (format, k, rows) in [
        (HeadFormat::F16 { finite: true }, 64usize, 19usize),
        (HeadFormat::F16 { finite: false }, 40, 7),
        (HeadFormat::BF16, 256, 5),
        (HeadFormat::ScaledI8 { group: 32 }, 96, 11),
        (HeadFormat::ScaledI8 { group: 16 }, 256, 6),
        (HeadFormat::F32, 48, 9),
        (HeadFormat::Q6K, 512, 6),
        (HeadFormat::Q8_0, 160, 7),
    ] {
        let bytes = match format {
            HeadFormat::Q6K => {
                let rb = DType::Q6K.row_bytes(k as u64).unwrap() as usize;
                let mut raw = vec![0u8; rb * rows];
                for r in 0..rows {
                    let x: Vec<f32> = (0..k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
                    bitnetc_models::quant::quantize_row(
                        DType::Q6K,
                        &x,
                        &mut raw[r * rb..(r + 1) * rb],
                    )
                    .unwrap();
                }
                bitnetc_codegen::cpu::head::repack_q6k(&raw, k, rows).unwrap()
            }
            HeadFormat::Q8_0 => {
                let rb = DType::Q8_0.row_bytes(k as u64).unwrap() as usize;
                let mut raw = vec![0u8; rb * rows];
                for r in 0..rows {
                    let x: Vec<f32> = (0..k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
                    bitnetc_models::quant::quantize_row(
                        DType::Q8_0,
                        &x,
                        &mut raw[r * rb..(r + 1) * rb],
                    )
                    .unwrap();
                }
                bitnetc_codegen::cpu::head::repack_q8_0(&raw, k, rows).unwrap()
            }
            HeadFormat::ScaledI8 { group } => {
                let dtype = if group == 32 { DType::Q8_0 } else { DType::Q6K };
                let rb = dtype.row_bytes(k as u64).unwrap() as usize;
                let mut raw = vec![0u8; rb * rows];
                for r in 0..rows {
                    let x: Vec<f32> = (0..k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
                    bitnetc_models::quant::quantize_row(dtype, &x, &mut raw[r * rb..(r + 1) * rb])
                        .unwrap();
                }
                repack_scaled_i8(dtype, &raw, k, rows).unwrap()
            }
            HeadFormat::F32 => (0..k * rows)
                .flat_map(|_| rng.gen_range(-2.0f32..2.0).to_le_bytes())
                .collect(),
            _ => table(&mut rng, format, k * rows),
        };
        let x: Vec<f32> = (0..k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let x_bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        let shape = HeadShape { k, rows, format };
        for at_end in [true, false] {
            let gt = Guarded::new(&bytes, at_end);
            let gx = Guarded::new(&x_bytes, at_end);
            let mut go = Guarded::new(&vec![0u8; 4 * rows], at_end);
            for &level in &levels {
                let params_list = match format {
                    HeadFormat::Q6K | HeadFormat::Q8_0 => vec![
                        HeadParams::default_for(format),
                        HeadParams { rows: 2, unroll: 1 },
                        HeadParams { rows: 4, unroll: 1 },
                    ],
                    _ => vec![
                        HeadParams::default(),
                        HeadParams { rows: 3, unroll: 1 },
                        HeadParams { rows: 8, unroll: 2 },
                    ],
                };
                for params in params_list {
                    let kern = HeadKernel::compile(&shape, &params, level).unwrap();
                    let mut want = vec![0.0f32; rows];
                    kern.run(&bytes, &x, &mut want, 0..rows).unwrap();
                    // The guarded copies (the finite-F16 path prescales x into its own buffer;
                    // the others read it in place).
                    kern.run(gt.bytes(), gx.f32s(), go.f32s_mut(), 0..rows)
                        .unwrap();
                    let got: Vec<u32> = go.f32s().iter().map(|v| v.to_bits()).collect();
                    let w: Vec<u32> = want.iter().map(|v| v.to_bits()).collect();
                    assert_eq!(got, w, "{format:?} K={k} rows={rows} {level} {params:?}");
                }
            }
        }
    }
}

/// F32 tables: the reference dot of the stored values, bit for bit, at every level.
#[test]
fn f32_heads_match_the_reference_dot() {
    let mut rng = ChaCha8Rng::seed_from_u64(41);
    let levels = HostFeatures::detect().unwrap().supported_levels();
    for (k, rows) in [(8usize, 3usize), (256, 37), (2560, 11)] {
        let t: Vec<f32> = (0..k * rows).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
        let bytes: Vec<u8> = t.iter().flat_map(|v| v.to_le_bytes()).collect();
        let x: Vec<f32> = (0..k).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
        let want: Vec<u32> = (0..rows)
            .map(|r| dot_reference(&t[r * k..(r + 1) * k], &x).to_bits())
            .collect();
        let shape = HeadShape {
            k,
            rows,
            format: HeadFormat::F32,
        };
        for &level in &levels {
            for params in [HeadParams::default(), HeadParams { rows: 3, unroll: 4 }] {
                let kern = HeadKernel::compile(&shape, &params, level).unwrap();
                let mut got = vec![f32::NAN; rows];
                kern.run(&bytes, &x, &mut got, 0..rows).unwrap();
                let g: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
                assert_eq!(g, want, "K={k} rows={rows} {level} {params:?}");
            }
        }
    }
}

/// With AVX (VEX encoding, unaligned memory operands allowed) each activation load of the
/// finite-F16 head folds into the multiply that reads it: the loop is tested at the top so that
/// the loads count as used once (a bottom-tested loop's accumulators feed both the back edge
/// and the exit, which keeps Cranelift from merging any load of their operand trees).
#[test]
fn f16_head_activation_loads_fold_into_the_multiplies() {
    use bitnetc_codegen::cpu::IsaLevel;
    if !HostFeatures::detect()
        .unwrap()
        .supported_levels()
        .contains(&IsaLevel::Avx2)
    {
        eprintln!("skipped: the host has no AVX2 level");
        return;
    }
    let shape = HeadShape {
        k: 2560,
        rows: 64,
        format: HeadFormat::F16 { finite: true },
    };
    for unroll in [1, 2, 4] {
        let params = HeadParams { rows: 1, unroll };
        let kern = HeadKernel::compile(&shape, &params, IsaLevel::Avx2).unwrap();
        let listing = kern.info().vcode.clone().unwrap_or_default();
        let mulps: Vec<&str> = listing
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("vmulps"))
            .collect();
        // Two row loops: row 0's (plain conversion) and the other rows' (offset loads).
        assert_eq!(mulps.len(), 4 * unroll, "unroll {unroll}:\n{listing}");
        assert!(
            mulps.iter().all(|l| l.contains("(%")),
            "unroll {unroll}: a multiply reads a register-loaded activation:\n{listing}"
        );
    }
}

/// Q8_K as `bitnet-gguf.md` §2.3 defines it, transcribed independently of the crate's: values,
/// and the scale of each 256-block.
fn q8k_reference(x: &[f32]) -> (Vec<i32>, Vec<f32>) {
    let mut qs = vec![0i32; x.len()];
    let mut ds = vec![0.0f32; x.len() / 256];
    for (b, blk) in x.chunks(256).enumerate() {
        let mut max = 0.0f32;
        for &v in blk {
            if v.abs() > max.abs() {
                max = v;
            }
        }
        if max == 0.0 {
            continue;
        }
        let iscale = -127.0 / max;
        for (i, &v) in blk.iter().enumerate() {
            qs[256 * b + i] = ((iscale * v).round_ties_even() as i32).min(127);
        }
        ds[b] = 1.0 / iscale;
    }
    (qs, ds)
}

/// The Q6_K × Q8_K logit of one Q6_K row (raw 210-byte blocks), the reference's order.
fn q6k_reference(row: &[u8], x: &[f32]) -> f32 {
    let (xq, dx) = q8k_reference(x);
    let mut total = 0.0f32;
    for (b, blk) in row.chunks(210).enumerate() {
        let d = f16::from_bits(u16::from_le_bytes([blk[208], blk[209]])).to_f32();
        let mut isum = 0i32;
        for e in 0..256 {
            // Element e: half h, position l within 32, quarter (0..4) of the half.
            let (h, quarter, l) = (e / 128, (e % 128) / 32, e % 32);
            let ql = blk[64 * h + l + 32 * (quarter % 2)];
            let low = if quarter < 2 { ql & 0xF } else { ql >> 4 };
            let high = (blk[128 + 32 * h + l] >> (2 * quarter)) & 3;
            let q = i32::from(low | (high << 4)) - 32;
            let scale = i32::from(blk[192 + e / 16] as i8);
            isum += scale * q * xq[256 * b + e];
        }
        total += (d * dx[b]) * isum as f32;
    }
    total
}

/// Q6_K tables multiplied by Q8_K activations (`HeadFormat::Q6K`) equal the transcription above
/// bit for bit at every ISA level, at one and several super-blocks, with zero and extreme
/// activation blocks; row ranges and bad tables behave.
#[test]
fn q6k_heads_match_the_q8k_reference() {
    use bitnetc_codegen::cpu::head::repack_q6k;
    use bitnetc_models::quant;
    let mut rng = ChaCha8Rng::seed_from_u64(33);
    let levels = HostFeatures::detect().unwrap().supported_levels();
    for (k, rows) in [(256usize, 23usize), (768, 7), (2560, 5)] {
        let rb = k / 256 * 210;
        let mut bytes = vec![0u8; rb * rows];
        for r in 0..rows {
            let x: Vec<f32> = (0..k).map(|_| rng.gen_range(-3.0f32..3.0)).collect();
            quant::q6_k::quantize_row(&x, &mut bytes[r * rb..(r + 1) * rb]).unwrap();
        }
        // Extreme sub-block scales (−128 and 127) in the first row.
        bytes[192] = 0x80;
        bytes[193] = 0x7f;
        let packed = repack_q6k(&bytes, k, rows).unwrap();
        let shape = HeadShape {
            k,
            rows,
            format: HeadFormat::Q6K,
        };
        let mut xs: Vec<Vec<f32>> = (0..3)
            .map(|_| (0..k).map(|_| rng.gen_range(-2.0f32..2.0)).collect())
            .collect();
        // A zero block, and a block whose extreme is negative with a positive twin.
        xs[1][..256].fill(0.0);
        xs[2][5] = -7.5;
        xs[2][9] = 7.5;
        for x in &xs {
            let want: Vec<u32> = (0..rows)
                .map(|r| q6k_reference(&bytes[r * rb..(r + 1) * rb], x).to_bits())
                .collect();
            for &level in &levels {
                for n in [1, 2, 3, 4, 8] {
                    let params = HeadParams { rows: n, unroll: 1 };
                    let kern = HeadKernel::compile(&shape, &params, level).unwrap();
                    let mut got = vec![f32::NAN; rows];
                    kern.run(&packed, x, &mut got, 0..rows).unwrap();
                    let g: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
                    assert_eq!(g, want, "q6k {k}x{rows} {level} rows {n}");
                    // Every sub-range writes exactly its rows.
                    for a in 0..rows {
                        for b in a + 1..=rows {
                            let mut part = vec![f32::NAN; b - a];
                            kern.run(&packed, x, &mut part, a..b).unwrap();
                            let p: Vec<u32> = part.iter().map(|v| v.to_bits()).collect();
                            assert_eq!(p, want[a..b], "q6k {k}x{rows} {level} rows {n} {a}..{b}");
                        }
                    }
                }
            }
        }
        let mut bad = bytes.clone();
        bad[208..210].copy_from_slice(&f16::NAN.to_le_bytes());
        assert!(repack_q6k(&bad, k, rows).is_err());
        assert!(repack_q6k(&bytes[1..], k, rows).is_err());
    }
    // More than 8 rows per block and K not a multiple of 256 are refused, not miscompiled.
    let shape = HeadShape {
        k: 256,
        rows: 8,
        format: HeadFormat::Q6K,
    };
    let level = levels[0];
    assert!(HeadKernel::compile(&shape, &HeadParams { rows: 9, unroll: 1 }, level).is_err());
    let shape = HeadShape { k: 264, ..shape };
    assert!(HeadKernel::compile(&shape, &HeadParams { rows: 1, unroll: 1 }, level).is_err());
}

/// The Q8_0 × Q8_0 logit of one raw Q8_0 row (34-byte blocks), transcribed from
/// `bitnet-gguf.md` §2.3 independently of the crate: each 32-block of `x` gets
/// `d = f16(amax/127)`, values `round(x·(1/d))` (half away from zero, `1/d` of the f32 `d`);
/// the logit is `Σ_b (d_b·dx_b)·f32(Σ w·q)` block by block.
fn q8_0_reference(row: &[u8], x: &[f32]) -> f32 {
    let mut total = 0.0f32;
    for (blk, xb) in row.chunks(34).zip(x.chunks(32)) {
        let amax = xb.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
        let d32 = amax / 127.0;
        let inv = if d32 == 0.0 { 0.0 } else { 1.0 / d32 };
        let dx = f16::from_f32(d32).to_f32();
        let isum: i32 = blk[2..]
            .iter()
            .zip(xb)
            .map(|(&w, &v)| i32::from(w as i8) * ((v * inv).round().clamp(-127.0, 127.0) as i32))
            .sum();
        let d = f16::from_bits(u16::from_le_bytes([blk[0], blk[1]])).to_f32();
        total += (d * dx) * isum as f32;
    }
    total
}

/// Q8_0 tables multiplied by Q8_0 activations (`HeadFormat::Q8_0`) equal the transcription
/// above bit for bit at every ISA level: K with only a partial group of blocks (32, 96), whole
/// groups (128, 2560) and both (160, 224); codes −128 and 127, a zero activation block, an
/// activation of ±127·d exactly; row ranges; bad tables and shapes are refused.
#[test]
fn q8_0_heads_match_the_q8_0_reference() {
    use bitnetc_codegen::cpu::head::repack_q8_0;
    let mut rng = ChaCha8Rng::seed_from_u64(35);
    let levels = HostFeatures::detect().unwrap().supported_levels();
    for (k, rows) in [
        (32usize, 9usize),
        (96, 7),
        (128, 11),
        (160, 5),
        (224, 6),
        (2560, 5),
    ] {
        let rb = k / 32 * 34;
        // Raw blocks: random codes (any i8, −128 included) and random finite scales.
        let mut bytes: Vec<u8> = (0..rb * rows).map(|_| rng.gen()).collect();
        for blk in bytes.chunks_mut(34) {
            let d = f16::from_f32(rng.gen_range(-0.05f32..0.05));
            blk[..2].copy_from_slice(&d.to_le_bytes());
        }
        bytes[2] = 0x80;
        bytes[3] = 0x7f;
        let packed = repack_q8_0(&bytes, k, rows).unwrap();
        let shape = HeadShape {
            k,
            rows,
            format: HeadFormat::Q8_0,
        };
        let mut xs: Vec<Vec<f32>> = (0..3)
            .map(|_| (0..k).map(|_| rng.gen_range(-2.0f32..2.0)).collect())
            .collect();
        xs[1][..32].fill(0.0);
        xs[2][0] = -12.7;
        xs[2][1] = 12.7;
        for x in &xs {
            let want: Vec<u32> = (0..rows)
                .map(|r| q8_0_reference(&bytes[r * rb..(r + 1) * rb], x).to_bits())
                .collect();
            for &level in &levels {
                for n in [1, 2, 3, 4, 8] {
                    let params = HeadParams { rows: n, unroll: 1 };
                    let kern = HeadKernel::compile(&shape, &params, level).unwrap();
                    let mut got = vec![f32::NAN; rows];
                    kern.run(&packed, x, &mut got, 0..rows).unwrap();
                    let g: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
                    assert_eq!(g, want, "q8_0 {k}x{rows} {level} rows {n}");
                    // Every sub-range writes exactly its rows.
                    for a in 0..rows {
                        for b in a + 1..=rows {
                            let mut part = vec![f32::NAN; b - a];
                            kern.run(&packed, x, &mut part, a..b).unwrap();
                            let p: Vec<u32> = part.iter().map(|v| v.to_bits()).collect();
                            assert_eq!(p, want[a..b], "q8_0 {k}x{rows} {level} rows {n} {a}..{b}");
                        }
                    }
                }
            }
        }
        let mut bad = bytes.clone();
        let last = rb * rows - 34;
        bad[last..last + 2].copy_from_slice(&f16::INFINITY.to_le_bytes());
        assert!(repack_q8_0(&bad, k, rows).is_err());
        assert!(repack_q8_0(&bytes[1..], k, rows).is_err());
    }
    // More than 8 rows per block and K not a multiple of 32 are refused, not miscompiled.
    let shape = HeadShape {
        k: 64,
        rows: 8,
        format: HeadFormat::Q8_0,
    };
    let level = levels[0];
    assert!(HeadKernel::compile(&shape, &HeadParams { rows: 9, unroll: 1 }, level).is_err());
    let shape = HeadShape { k: 72, ..shape };
    assert!(HeadKernel::compile(&shape, &HeadParams { rows: 1, unroll: 1 }, level).is_err());
}
