//! Loading a model: GGUF file → checked hyperparameters, IR graph and tokenizer.

use std::path::Path;
use std::sync::Arc;

use bitnetc_ir::{Activation, Graph};

use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::gguf::{GgufFile, Metadata};
use crate::lower::lower;
use crate::tokenizer::{PreSplit, Tokenizer, TokenizerSpec};

/// Choices a user can force when the file does not say (or says wrongly).
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// FFN nonlinearity instead of the one implied by the architecture.
    pub activation: Option<Activation>,
    /// Pre-tokenizer split instead of `tokenizer.ggml.pre`.
    pub pre_split: Option<PreSplit>,
}

/// A loaded model: the mapped file, its configuration, graph and tokenizer.
pub struct Model {
    /// The mapped GGUF file.
    pub file: GgufFile,
    /// Hyperparameters.
    pub config: ModelConfig,
    /// The lowered graph (shared with backends).
    pub graph: Arc<Graph>,
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// Things that were tolerated but that the user should know.
    pub warnings: Vec<String>,
}

impl Model {
    /// Opens and fully validates a model file.
    pub fn load(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Model, ModelError> {
        Model::from_gguf(GgufFile::open(path)?, opts)
    }

    /// Loads the model of an opened GGUF (e.g. the model section of an artifact, see
    /// [`GgufFile::open_range`]).
    pub fn from_gguf(file: GgufFile, opts: &LoadOptions) -> Result<Model, ModelError> {
        let embd = file
            .tensor("token_embd.weight")
            .ok_or_else(|| ModelError::MissingTensor("token_embd.weight".into()))?;
        if embd.dims.len() != 2 {
            return Err(ModelError::BadTensor {
                name: embd.name.clone(),
                problem: format!("must be 2-D, has dims {:?}", embd.dims),
            });
        }
        let n_vocab = u32::try_from(embd.dims[1])
            .map_err(|_| ModelError::BadConfig("vocabulary too large".into()))?;
        let config = ModelConfig::from_metadata(file.metadata(), n_vocab, opts.activation)?;
        let mut warnings = Vec::new();
        let spec = tokenizer_spec(file.metadata(), n_vocab, &mut warnings)?;
        let tokenizer = Tokenizer::from_spec(&spec, opts.pre_split)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        let graph = Arc::new(lower(&file, &config)?);
        Ok(Model {
            file,
            config,
            graph,
            tokenizer,
            warnings,
        })
    }
}

/// Reads the `tokenizer.ggml.*` keys (reference §4.1) and checks them against the vocabulary size.
pub fn tokenizer_spec(
    md: &Metadata,
    n_vocab: u32,
    warnings: &mut Vec<String>,
) -> Result<TokenizerSpec, ModelError> {
    let tokens = md
        .opt_str_array("tokenizer.ggml.tokens")?
        .ok_or_else(|| crate::gguf::GgufError::MissingKey("tokenizer.ggml.tokens".into()))?;
    if tokens.len() != n_vocab as usize {
        return Err(ModelError::Tokenizer(format!(
            "{} tokens in tokenizer.ggml.tokens but token_embd has {n_vocab} rows",
            tokens.len()
        )));
    }
    let token_types = md.opt_i32_array("tokenizer.ggml.token_type")?;
    let scores = md.opt_f32_array("tokenizer.ggml.scores")?;
    for (key, len) in [
        ("token_type", token_types.as_ref().map(Vec::len)),
        ("scores", scores.as_ref().map(Vec::len)),
    ] {
        if let Some(len) = len {
            if len != tokens.len() {
                return Err(ModelError::Tokenizer(format!(
                    "tokenizer.ggml.{key} has {len} entries for {} tokens",
                    tokens.len()
                )));
            }
        }
    }
    let mut id = |key: &str| -> Result<Option<u32>, ModelError> {
        let full = format!("tokenizer.ggml.{key}");
        Ok(match md.opt_u32(&full)? {
            Some(i) if i >= n_vocab => {
                warnings.push(format!(
                    "{full} = {i} is outside the vocabulary of {n_vocab}; ignored"
                ));
                None
            }
            other => other,
        })
    };
    Ok(TokenizerSpec {
        model: md.str("tokenizer.ggml.model")?.to_string(),
        pre: md.opt_str("tokenizer.ggml.pre")?.map(str::to_string),
        tokens,
        token_types,
        scores,
        merges: md
            .opt_str_array("tokenizer.ggml.merges")?
            .unwrap_or_default(),
        bos_id: id("bos_token_id")?,
        eos_id: id("eos_token_id")?,
        unk_id: id("unknown_token_id")?,
        pad_id: id("padding_token_id")?,
        eot_id: id("eot_token_id")?,
        eom_id: id("eom_token_id")?,
        add_bos: md.opt_bool("tokenizer.ggml.add_bos_token")?,
        add_eos: md.opt_bool("tokenizer.ggml.add_eos_token")?,
        add_space_prefix: md.opt_bool("tokenizer.ggml.add_space_prefix")?,
        chat_template: md.opt_str("tokenizer.chat_template")?.map(str::to_string),
    })
}
