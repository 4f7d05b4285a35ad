//! `bitnetc chat`: an interactive conversation in the model's chat format.

use std::io::{BufRead, Write};

use bitnetc::{Engine, GenerateRequest};
use bitnetc_models::tokenizer::{ChatFormat, ChatMessage, StreamDecoder};
use clap::Args;

use super::run::SamplingArgs;
use super::ModelArgs;

#[derive(Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// System prompt.
    #[arg(long, default_value = "You are a helpful assistant")]
    pub system: String,
    /// Most tokens per reply.
    #[arg(short = 'n', long = "n-predict", default_value_t = 256)]
    pub n_predict: usize,
    /// Context size.
    #[arg(short = 'c', long, default_value_t = 2048)]
    pub ctx: usize,
}

pub fn chat(a: ChatArgs) -> anyhow::Result<()> {
    let engine = Engine::load(&a.model.model, &a.model.engine_options())?;
    let model = engine.model();
    let tok = &model.tokenizer;
    let template = model.file.metadata().opt_str("tokenizer.chat_template")?;
    let format = ChatFormat::detect(template);
    let mut session = engine.new_session(a.ctx);
    let sampler = a.sampling.config();

    // Tokens waiting to be evaluated before the next reply: BOS, the system turn, and the end
    // token of the previous reply.
    let mut pending: Vec<u32> = Vec::new();
    if tok.add_bos() {
        pending.extend(tok.bos_id());
    }
    if !a.system.is_empty() {
        let sys = format.render_turn(
            &ChatMessage {
                role: "system".into(),
                content: a.system.clone(),
            },
            tok,
        );
        pending.extend(tok.encode(&sys, false, true));
    }
    eprintln!(
        "chat format {format:?}; type a message, an empty line or Ctrl-D ends the conversation"
    );
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        let user = format.render_turn(
            &ChatMessage {
                role: "user".into(),
                content: line.trim_end().to_string(),
            },
            tok,
        );
        pending.extend(tok.encode(
            &format!("{user}{}", format.generation_prompt()),
            false,
            true,
        ));
        let mut req = GenerateRequest::greedy(std::mem::take(&mut pending), a.n_predict);
        req.sampler = sampler.clone();
        let mut decoder = StreamDecoder::new();
        let result = engine.generate(&mut session, &req, |id| {
            if !tok.is_eog(id) {
                let piece = decoder.push(tok, id);
                print!("{piece}");
                out.flush().ok();
            }
            true
        })?;
        println!("{}", decoder.flush());
        // The end token the model chose goes into the cache before the next turn.
        if let Some(&last) = result.generated_ids.last() {
            pending.push(last);
        }
        eprintln!(
            "[{} tokens, {:.2} tokens/s]",
            result.timings.gen_tokens, result.timings.gen_tokens_per_s
        );
    }
    Ok(())
}
