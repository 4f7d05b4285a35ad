use bitnetc_codegen::cpu::head::{HeadFormat, HeadKernel, HeadParams, HeadShape};
use bitnetc_codegen::cpu::IsaLevel;
use half::f16;
use rand::{Rng, SeedableRng};
fn main() {
    let (k, rows) = (2560usize, 32768usize);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let vals: Vec<f32> = (0..k * rows)
        .map(|_| rng.gen_range(-0.05f32..0.05))
        .collect();
    let x: Vec<f32> = (0..k).map(|_| rng.gen_range(-1f32..1.0)).collect();
    for (flush, rr, un) in [
        (false, 4, 2),
        (false, 4, 1),
        (false, 4, 4),
        (false, 2, 4),
        (false, 3, 2),
        (false, 1, 8),
        (false, 4, 2),
    ] {
        let params = HeadParams {
            rows: rr,
            unroll: un,
        };
        let bytes: Vec<u8> = vals
            .iter()
            .flat_map(|&v| {
                let h = f16::from_f32(v);
                let h = if flush && h.to_bits() & 0x7c00 == 0 {
                    f16::ZERO
                } else {
                    h
                };
                h.to_bits().to_le_bytes()
            })
            .collect();
        let subn = bytes
            .chunks(2)
            .filter(|b| {
                let h = u16::from_le_bytes([b[0], b[1]]);
                h & 0x7c00 == 0 && h & 0x3ff != 0
            })
            .count();
        let shape = HeadShape {
            k,
            rows,
            format: HeadFormat::F16 { finite: true },
        };
        let kern = HeadKernel::compile(&shape, &params, IsaLevel::Native).unwrap();
        let mut out = vec![0f32; rows];
        let mut ts = vec![];
        for _ in 0..7 {
            let t = std::time::Instant::now();
            kern.run(&bytes, &x, &mut out, 0..rows).unwrap();
            ts.push(t.elapsed().as_secs_f64());
        }
        ts.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "{params:?} subnormals={subn} median {:.2} ms = {:.1} GB/s",
            ts[3] * 1e3,
            bytes.len() as f64 / ts[3] / 1e9
        );
    }
}
