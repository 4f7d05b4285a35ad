//! Shape presets of synthetic models.

use crate::config::ArchFamily;

/// A named set of hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// A few MB: 2 layers of width 256, for tests.
    Tiny,
    /// 1bitLLM bitnet_b1_58-large (≈700M): 24 layers of width 1536.
    Large,
    /// microsoft BitNet-b1.58-2B-4T: 30 layers of width 2560, GQA 20/5.
    B2B4T,
}

/// Hyperparameters of a preset.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HParams {
    pub n_embd: u32,
    pub n_ff: u32,
    pub n_layer: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
    pub n_ctx: u32,
    pub rope_base: f32,
}

impl Preset {
    /// Parses `tiny`, `large` or `2b4t`.
    pub fn from_name(name: &str) -> Option<Preset> {
        match name {
            "tiny" => Some(Preset::Tiny),
            "large" => Some(Preset::Large),
            "2b4t" => Some(Preset::B2B4T),
            _ => None,
        }
    }

    /// The preset's name.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Tiny => "tiny",
            Preset::Large => "large",
            Preset::B2B4T => "2b4t",
        }
    }

    /// Vocabulary size of the real model the preset copies (tiny: a small built-in vocabulary).
    pub fn n_vocab(self) -> usize {
        match self {
            Preset::Tiny => 1024,
            Preset::Large => 32002,
            Preset::B2B4T => 128256,
        }
    }

    /// Hyperparameters; the RoPE base follows the architecture family.
    pub fn hparams(self, family: ArchFamily) -> HParams {
        let rope_base = match family {
            ArchFamily::BitNetB158 => 500_000.0,
            ArchFamily::BitNet => 10_000.0,
        };
        match self {
            Preset::Tiny => HParams {
                n_embd: 256,
                n_ff: 512,
                n_layer: 2,
                n_head: 4,
                n_head_kv: 2,
                n_ctx: 2048,
                rope_base,
            },
            Preset::Large => HParams {
                n_embd: 1536,
                n_ff: 4096,
                n_layer: 24,
                n_head: 16,
                n_head_kv: 16,
                n_ctx: 2048,
                rope_base,
            },
            Preset::B2B4T => HParams {
                n_embd: 2560,
                n_ff: 6912,
                n_layer: 30,
                n_head: 20,
                n_head_kv: 5,
                n_ctx: 4096,
                rope_base,
            },
        }
    }
}
