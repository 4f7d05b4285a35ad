//! The GGUF reader on valid, truncated and hostile files: every failure is an error naming the
//! problem, never a panic, and no allocation is driven by a count the file cannot back.

use bitnetc_ir::DType;
use bitnetc_models::gguf::{parse_header, GgufError, GgufWriter, Value};
use bitnetc_models::quant::i2s;

fn sample_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::str("bitnet-b1.58"));
    w.set("some.u32", Value::U32(7));
    w.set("some.list", Value::str_array(&["a", "bb", "ccc"]));
    w.set("some.flag", Value::Bool(true));
    w.add_tensor("norm.weight", &[256], DType::F32, vec![0u8; 1024])
        .unwrap();
    let codes = vec![1u8; 256 * 2];
    w.add_tensor(
        "lin.weight",
        &[256, 2],
        DType::I2S,
        i2s::encode(&codes, 0.5),
    )
    .unwrap();
    w.add_tensor("emb.weight", &[32, 3], DType::F16, vec![0u8; 192])
        .unwrap();
    w.to_bytes()
}

#[test]
fn round_trip_of_a_written_file() {
    let bytes = sample_file();
    let h = parse_header(&bytes).unwrap();
    assert_eq!(h.version, 3);
    assert_eq!(h.metadata.u32("some.u32").unwrap(), 7);
    assert_eq!(
        h.metadata.opt_str_array("some.list").unwrap().unwrap(),
        vec!["a", "bb", "ccc"]
    );
    assert_eq!(h.metadata.opt_bool("some.flag").unwrap(), Some(true));
    let names: Vec<&str> = h.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["norm.weight", "lin.weight", "emb.weight"]);
    let lin = &h.tensors[1];
    assert_eq!((lin.dtype, lin.nbytes), (DType::I2S, 256 * 2 / 4 + 32));
    assert_eq!(h.data_start % 32, 0);
    assert_eq!(lin.offset, 1024);
}

#[test]
fn every_header_prefix_and_sampled_longer_prefixes_fail_cleanly() {
    let bytes = sample_file();
    let h = parse_header(&bytes).unwrap();
    let header_end = h.data_start as usize;
    let mut lengths: Vec<usize> = (0..=header_end).collect();
    lengths.extend((header_end..bytes.len()).step_by(37));
    for len in lengths {
        let r = parse_header(&bytes[..len]);
        let e = r.expect_err(&format!("prefix of {len} bytes must be refused"));
        let msg = e.to_string();
        assert!(
            !msg.is_empty() && !msg.contains('\n'),
            "prefix {len}: {msg}"
        );
    }
}

#[test]
fn wrong_magic_and_versions() {
    let mut b = sample_file();
    b[0] = b'X';
    assert!(matches!(parse_header(&b), Err(GgufError::BadMagic { .. })));
    for (v, needle) in [
        (0u32, "version 0"),
        (1, "obsolete"),
        (4, "versions 2 and 3"),
        (0x0300_0000, "big-endian"),
    ] {
        let mut b = sample_file();
        b[4..8].copy_from_slice(&v.to_le_bytes());
        let msg = parse_header(&b).unwrap_err().to_string();
        assert!(msg.contains(needle), "{v}: {msg}");
    }
}

#[test]
fn absurd_counts_are_refused_before_allocating() {
    for (offset, what) in [(8usize, "tensor count"), (16, "metadata count")] {
        let mut b = sample_file();
        b[offset..offset + 8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
        let msg = parse_header(&b).unwrap_err().to_string();
        assert!(msg.contains(what), "{msg}");
    }
    // A string length far beyond the file.
    let mut b = sample_file();
    b[24..32].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(parse_header(&b).is_err());
}

/// Writes a file with one hand-made tensor-info record.
fn with_tensor(n_dims: u32, dims: &[u64], type_id: u32, offset: u64, payload: usize) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&8u64.to_le_bytes());
    b.extend_from_slice(b"t.weight");
    b.extend_from_slice(&n_dims.to_le_bytes());
    for d in dims {
        b.extend_from_slice(&d.to_le_bytes());
    }
    b.extend_from_slice(&type_id.to_le_bytes());
    b.extend_from_slice(&offset.to_le_bytes());
    while b.len() % 32 != 0 {
        b.push(0);
    }
    b.resize(b.len() + payload, 0);
    b
}

#[test]
fn hostile_tensor_records() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (with_tensor(2, &[256, 4], 0, 0, 4096), ""),
        (with_tensor(2, &[256, 4], 2, 0, 4096), "Q4_0"),
        (with_tensor(2, &[256, 4], 99, 0, 4096), "unknown type"),
        (with_tensor(2, &[256, 4], 38, 0, 4096), "TL1"),
        (
            with_tensor(2, &[64, 4], 36, 0, 4096),
            "not a multiple of 128",
        ),
        (
            with_tensor(2, &[100, 4], 35, 0, 4096),
            "not a multiple of 256",
        ),
        (with_tensor(5, &[1, 1, 1, 1, 1], 0, 0, 64), "dimensions"),
        (with_tensor(2, &[256, 0], 0, 0, 64), "zero dimension"),
        (
            with_tensor(2, &[u64::MAX / 2, 4], 0, 0, 64),
            "absurd dimensions",
        ),
        (with_tensor(2, &[256, 4], 0, 16, 8192), "alignment"),
        (with_tensor(2, &[256, 4], 0, u64::MAX - 31, 64), "overflows"),
        (with_tensor(2, &[256, 4], 0, 0, 100), "truncated"),
    ];
    for (bytes, needle) in cases {
        let r = parse_header(&bytes);
        if needle.is_empty() {
            r.unwrap();
            continue;
        }
        let msg = r.unwrap_err().to_string();
        assert!(msg.contains(needle), "expected '{needle}' in: {msg}");
    }
}

#[test]
fn duplicate_keys_bad_bools_and_nested_arrays_are_refused() {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&2u64.to_le_bytes());
    for _ in 0..2 {
        b.extend_from_slice(&1u64.to_le_bytes());
        b.push(b'k');
        b.extend_from_slice(&7u32.to_le_bytes());
        b.push(1);
    }
    assert!(parse_header(&b)
        .unwrap_err()
        .to_string()
        .contains("duplicate metadata key"));
    let last = b.len() - 1;
    b[last] = 2;
    let k2 = b.len() - 6;
    b[k2] = b'j';
    assert!(parse_header(&b)
        .unwrap_err()
        .to_string()
        .contains("bool byte 2"));
    // An array of arrays.
    let mut n = Vec::new();
    n.extend_from_slice(b"GGUF");
    n.extend_from_slice(&3u32.to_le_bytes());
    n.extend_from_slice(&0u64.to_le_bytes());
    n.extend_from_slice(&1u64.to_le_bytes());
    n.extend_from_slice(&1u64.to_le_bytes());
    n.push(b'k');
    n.extend_from_slice(&9u32.to_le_bytes());
    n.extend_from_slice(&9u32.to_le_bytes());
    n.extend_from_slice(&1u64.to_le_bytes());
    assert!(parse_header(&n)
        .unwrap_err()
        .to_string()
        .contains("nested arrays"));
}
