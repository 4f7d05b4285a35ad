//! Loading whole models: a synthetic tiny model loads; every prefix of it is refused cleanly.

use bitnetc_ir::DType;
use bitnetc_models::gguf::parse_header;
use bitnetc_models::synth::{synthesize, Preset, SynthOptions};
use bitnetc_models::tokenizer::builtin;
use bitnetc_models::{LoadOptions, Model};

fn tiny_bytes(ty: DType) -> Vec<u8> {
    let opts = SynthOptions {
        arch: "bitnet-b1.58".into(),
        preset: Preset::Tiny,
        ternary_type: ty,
        embedding_type: DType::Q8_0,
        tokenizer: builtin::byte_level_bpe_spec(Preset::Tiny.n_vocab(), 200).unwrap(),
        seed: 3,
    };
    synthesize(&opts).unwrap().to_bytes()
}

#[test]
fn tiny_model_loads_and_lowers() {
    let dir = tempfile::tempdir().unwrap();
    for ty in [DType::I2S, DType::TQ1_0, DType::TQ2_0] {
        let path = dir.path().join(format!("{ty}.gguf"));
        std::fs::write(&path, tiny_bytes(ty)).unwrap();
        let m = Model::load(&path, &LoadOptions::default()).unwrap();
        assert_eq!(
            (m.config.n_layer, m.config.n_embd, m.config.n_head_kv),
            (2, 256, 2)
        );
        assert_eq!(m.graph.weights.len(), 2 + 2 * 11);
        bitnetc_ir::validate(&m.graph).unwrap();
    }
}

#[test]
fn every_prefix_of_the_tiny_model_header_and_sampled_longer_prefixes_are_refused() {
    let bytes = tiny_bytes(DType::I2S);
    let header_end = parse_header(&bytes).unwrap().data_start as usize;
    for len in 0..header_end {
        assert!(parse_header(&bytes[..len]).is_err(), "prefix {len}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.gguf");
    for len in (header_end..bytes.len()).step_by(bytes.len() / 50) {
        std::fs::write(&path, &bytes[..len]).unwrap();
        let err = Model::load(&path, &LoadOptions::default())
            .err()
            .unwrap_or_else(|| panic!("prefix {len} loaded"));
        assert!(err.to_string().contains("truncated"), "prefix {len}: {err}");
    }
}
