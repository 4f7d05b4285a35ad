//! Chat-turn rendering (§4.5). llama.cpp does not run the Jinja template; it recognises it by
//! pattern and renders turns with built-in formatters, which is what this module does.

use super::Tokenizer;

/// One chat message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A chat formatter detected from `tokenizer.chat_template`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatFormat {
    /// The bitnet.cpp fork's formatter (template contains `BITNET`): system `System: {c}`,
    /// user `User: {c}<|eot_id|>Assistant: `, assistant `{c}`.
    BitNet,
    /// Llama-3 headers (template contains `<|start_header_id|>`).
    Llama3,
    /// Anything else: the BitNet rendering, ending user turns with the model's `<|eot_id|>`
    /// text when such a token exists, else with the EOS token's text.
    Generic,
}

impl ChatFormat {
    /// Detects the format from the template text.
    pub fn detect(template: Option<&str>) -> Self {
        match template {
            Some(t) if t.contains("BITNET") => ChatFormat::BitNet,
            Some(t) if t.contains("<|start_header_id|>") => ChatFormat::Llama3,
            _ => ChatFormat::Generic,
        }
    }

    /// Renders one turn; the result is meant to be tokenized with `parse_special = true`
    /// (BOS is added once by the tokenizer at the start of the conversation, not here).
    pub fn render_turn(&self, msg: &ChatMessage, tok: &Tokenizer) -> String {
        let c = &msg.content;
        match self {
            ChatFormat::Llama3 => {
                format!(
                    "<|start_header_id|>{}<|end_header_id|>\n\n{}<|eot_id|>",
                    msg.role,
                    c.trim()
                )
            }
            ChatFormat::BitNet | ChatFormat::Generic => {
                let end = match self {
                    ChatFormat::BitNet => "<|eot_id|>".to_string(),
                    _ => end_of_turn_text(tok),
                };
                match msg.role.as_str() {
                    "system" => format!("System: {c}"),
                    "assistant" => c.clone(),
                    _ => format!("User: {c}{end}Assistant: "),
                }
            }
        }
    }

    /// Text appended after the last turn to make the model answer. Empty for the
    /// BitNet/Generic formats, whose user turns already end with `Assistant: `.
    pub fn generation_prompt(&self) -> &'static str {
        match self {
            ChatFormat::Llama3 => "<|start_header_id|>assistant<|end_header_id|>\n\n",
            ChatFormat::BitNet | ChatFormat::Generic => "",
        }
    }
}

fn end_of_turn_text(tok: &Tokenizer) -> String {
    if tok.token_id("<|eot_id|>").is_some() {
        return "<|eot_id|>".to_string();
    }
    tok.eos_id()
        .and_then(|id| tok.token_text(id))
        .unwrap_or("")
        .to_string()
}
