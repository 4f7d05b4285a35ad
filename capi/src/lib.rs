//! The C ABI of bitnetc (`include/bitnetc.h`): opaque model and session handles, status codes,
//! and a per-thread last-error message. Every entry point checks its pointers, catches panics so
//! none unwinds into C, and reports failures as a status plus a message.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use bitnetc::runtime::{LogitsFor, SamplerConfig, Session};
use bitnetc::{Engine, EngineOptions, GenerateRequest};

/// Status codes (`bitnetc_status` in the header).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// A null pointer, bad UTF-8, a buffer too small.
    InvalidArgument = 1,
    /// The model could not be loaded.
    Load = 2,
    /// Evaluation failed.
    Runtime = 3,
    /// An internal error (a caught panic).
    Panic = 4,
}

/// A loaded model (`bitnetc_model`).
pub struct Model {
    engine: Engine,
}

/// A sequence being generated (`bitnetc_session`).
pub struct SessionHandle {
    session: Session,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(msg: impl Into<String>) {
    let msg = msg.into().replace('\0', " ");
    LAST_ERROR.with(|e| *e.borrow_mut() = CString::new(msg).unwrap_or_default());
}

/// Runs `f`, turning an `Err((status, message))` or a panic into a status with the message kept
/// for `bitnetc_last_error`.
fn guard(f: impl FnOnce() -> Result<(), (Status, String)>) -> Status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => {
            set_error("");
            Status::Ok
        }
        Ok(Err((status, msg))) => {
            set_error(msg);
            status
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_error(format!("internal error: {what}"));
            Status::Panic
        }
    }
}

fn invalid(msg: &str) -> (Status, String) {
    (Status::InvalidArgument, msg.to_string())
}

/// # Safety
/// `p` must be null or point at a valid value for the returned lifetime.
unsafe fn non_null<'a, T>(p: *const T, what: &str) -> Result<&'a T, (Status, String)> {
    unsafe { p.as_ref() }.ok_or_else(|| invalid(&format!("{what} is NULL")))
}

/// # Safety
/// `p` must be null or point at `n` readable values.
unsafe fn slice<'a, T>(p: *const T, n: usize, what: &str) -> Result<&'a [T], (Status, String)> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(invalid(&format!("{what} is NULL")));
    }
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// The message of the last failure on this thread.
#[no_mangle]
pub extern "C" fn bitnetc_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Loads a model.
///
/// # Safety
/// `path` must be a NUL-terminated string and `out` a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn bitnetc_model_load(
    path: *const c_char,
    threads: u32,
    out: *mut *mut Model,
) -> Status {
    guard(|| {
        if path.is_null() || out.is_null() {
            return Err(invalid("path or out is NULL"));
        }
        let path = unsafe { CStr::from_ptr(path) }
            .to_str()
            .map_err(|_| invalid("path is not UTF-8"))?;
        let opts = EngineOptions {
            threads: threads as usize,
            ..EngineOptions::default()
        };
        let engine = Engine::load(path, &opts).map_err(|e| (Status::Load, format!("{e:#}")))?;
        unsafe { *out = Box::into_raw(Box::new(Model { engine })) };
        Ok(())
    })
}

/// Frees a model (NULL is ignored).
///
/// # Safety
/// `model` must come from `bitnetc_model_load` and not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn bitnetc_model_free(model: *mut Model) {
    if !model.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(model) })));
    }
}

/// Vocabulary size (0 for NULL).
///
/// # Safety
/// `model` must be NULL or a live model.
#[no_mangle]
pub unsafe extern "C" fn bitnetc_model_n_vocab(model: *const Model) -> u32 {
    unsafe { model.as_ref() }.map_or(0, |m| m.engine.model().config.n_vocab)
}

/// Tokenizes UTF-8 text.
///
/// # Safety
/// `model` live, `text` NUL-terminated, `ids` writable for `cap` values, `n_out` writable.
#[no_mangle]
pub unsafe extern "C" fn bitnetc_tokenize(
    model: *const Model,
    text: *const c_char,
    add_special: c_int,
    ids: *mut u32,
    cap: usize,
    n_out: *mut usize,
) -> Status {
    guard(|| {
        let m = unsafe { non_null(model, "model") }?;
        if text.is_null() || n_out.is_null() {
            return Err(invalid("text or n_out is NULL"));
        }
        let text = unsafe { CStr::from_ptr(text) }
            .to_str()
            .map_err(|_| invalid("text is not UTF-8"))?;
        let toks = m.engine.tokenize(text, add_special != 0);
        unsafe { *n_out = toks.len() };
        if toks.len() > cap {
            return Err(invalid(&format!(
                "{} tokens do not fit in {cap} ids",
                toks.len()
            )));
        }
        if !toks.is_empty() {
            if ids.is_null() {
                return Err(invalid("ids is NULL"));
            }
            unsafe { std::ptr::copy_nonoverlapping(toks.as_ptr(), ids, toks.len()) };
        }
        Ok(())
    })
}

/// A new, empty session.
///
/// # Safety
/// `model` live, `out` writable.
#[no_mangle]
pub unsafe extern "C" fn bitnetc_session_new(
    model: *const Model,
    n_ctx: u32,
    out: *mut *mut SessionHandle,
) -> Status {
    guard(|| {
        let m = unsafe { non_null(model, "model") }?;
        if out.is_null() {
            return Err(invalid("out is NULL"));
        }
        if n_ctx == 0 {
            return Err(invalid("n_ctx must be at least 1"));
        }
        let session = m.engine.new_session(n_ctx as usize);
        unsafe { *out = Box::into_raw(Box::new(SessionHandle { session })) };
        Ok(())
    })
}

/// Frees a session (NULL is ignored).
///
/// # Safety
/// `session` must come from `bitnetc_session_new` and not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn bitnetc_session_free(session: *mut SessionHandle) {
    if !session.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(session) })));
    }
}

/// C callback type.
pub type TokenCallback =
    Option<unsafe extern "C" fn(u32, *const c_char, usize, *mut c_void) -> c_int>;

/// Feeds a prompt and generates.
///
/// # Safety
/// Live `model` and `session` (the session used by no other thread), `prompt` readable for
/// `n_prompt` ids, `out_ids` writable for `out_cap` ids, `n_out` writable; `callback` (if any)
/// safe to call with `user`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn bitnetc_generate(
    model: *const Model,
    session: *mut SessionHandle,
    prompt: *const u32,
    n_prompt: usize,
    max_tokens: u32,
    temperature: f32,
    seed: u32,
    callback: TokenCallback,
    user: *mut c_void,
    out_ids: *mut u32,
    out_cap: usize,
    n_out: *mut usize,
) -> Status {
    guard(|| {
        let m = unsafe { non_null(model, "model") }?;
        let s = unsafe { session.as_mut() }.ok_or_else(|| invalid("session is NULL"))?;
        let prompt = unsafe { slice(prompt, n_prompt, "prompt") }?;
        if n_out.is_null() || (out_cap > 0 && out_ids.is_null()) {
            return Err(invalid("n_out or out_ids is NULL"));
        }
        let req = GenerateRequest {
            sampler: SamplerConfig {
                temperature,
                seed,
                ..SamplerConfig::default()
            },
            stop_at_eog: true,
            ..GenerateRequest::greedy(prompt.to_vec(), max_tokens as usize)
        };
        let tokenizer = &m.engine.model().tokenizer;
        let result = m
            .engine
            .generate(&mut s.session, &req, |id| match callback {
                Some(cb) => {
                    let bytes = tokenizer.token_bytes(id);
                    // SAFETY: the caller vouches for the callback and `user`.
                    unsafe { cb(id, bytes.as_ptr().cast(), bytes.len(), user) != 0 }
                }
                None => true,
            })
            .map_err(|e| (Status::Runtime, format!("{e:#}")))?;
        let ids = &result.generated_ids;
        unsafe { *n_out = ids.len() };
        let n = ids.len().min(out_cap);
        if n > 0 {
            unsafe { std::ptr::copy_nonoverlapping(ids.as_ptr(), out_ids, n) };
        }
        Ok(())
    })
}

/// Feeds ids and returns the next token's logits.
///
/// # Safety
/// Live `model` and `session`, `ids` readable for `n_ids`, `logits` writable for `cap` floats.
#[no_mangle]
pub unsafe extern "C" fn bitnetc_eval(
    model: *const Model,
    session: *mut SessionHandle,
    ids: *const u32,
    n_ids: usize,
    logits: *mut f32,
    cap: usize,
) -> Status {
    guard(|| {
        let m = unsafe { non_null(model, "model") }?;
        let s = unsafe { session.as_mut() }.ok_or_else(|| invalid("session is NULL"))?;
        let ids = unsafe { slice(ids, n_ids, "ids") }?;
        let n_vocab = m.engine.model().config.n_vocab as usize;
        if cap < n_vocab || logits.is_null() {
            return Err(invalid(&format!(
                "logits needs room for {n_vocab} floats (cap {cap})"
            )));
        }
        let out = m
            .engine
            .forward(&mut s.session, ids, LogitsFor::Last)
            .map_err(|e| (Status::Runtime, format!("{e:#}")))?;
        unsafe { std::ptr::copy_nonoverlapping(out.as_ptr(), logits, n_vocab) };
        Ok(())
    })
}
