//! JIT-compiling one Cranelift function into executable memory on this host.

use std::time::{Duration, Instant};

use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::Function;
use cranelift_codegen::Context;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Linkage, Module};

use super::isa::Target;
use crate::CodegenError;

/// Owns the JIT memory of one function.
struct ModuleHolder(Option<JITModule>);

// SAFETY: after `finalize_definitions` the module is never used again except to free its memory
// on drop (which needs `&mut self`, so no concurrent access); the code it holds is immutable.
unsafe impl Send for ModuleHolder {}
unsafe impl Sync for ModuleHolder {}

impl Drop for ModuleHolder {
    fn drop(&mut self) {
        if let Some(m) = self.0.take() {
            // SAFETY: the only pointer into this memory is `JitFunction::ptr`, which is dropped
            // together with this holder.
            unsafe { m.free_memory() };
        }
    }
}

/// A compiled function: its entry point, its machine code and Cranelift's listing.
pub struct JitFunction {
    ptr: *const u8,
    /// Machine code (including the constant pool).
    pub code: Vec<u8>,
    /// Cranelift's listing of the lowered machine instructions (after register allocation).
    pub vcode: Option<String>,
    /// Time to compile (IR already built).
    pub compile_time: Duration,
    _module: ModuleHolder,
}

// SAFETY: the entry point refers to immutable code owned by `_module`.
unsafe impl Send for JitFunction {}
unsafe impl Sync for JitFunction {}

impl JitFunction {
    /// Compiles `func` for `target`, which must be this host.
    pub fn compile(
        func: Function,
        target: &Target,
        name: &str,
    ) -> Result<JitFunction, CodegenError> {
        if !target.info.host {
            return Err(CodegenError::Isa(
                "cannot JIT for a non-host target; use compile_only".into(),
            ));
        }
        let t0 = Instant::now();
        let jb = JITBuilder::with_isa(target.isa.clone(), default_libcall_names());
        let mut module = JITModule::new(jb);
        let jerr = |e: cranelift_module::ModuleError| CodegenError::Compile(e.to_string());
        let id = module
            .declare_function(name, Linkage::Local, &func.signature)
            .map_err(jerr)?;
        let mut ctx = Context::for_function(func);
        ctx.set_disasm(true);
        module.define_function(id, &mut ctx).map_err(jerr)?;
        let compiled = ctx
            .compiled_code()
            .ok_or_else(|| CodegenError::Compile("no compiled code".into()))?;
        let code = compiled.code_buffer().to_vec();
        let vcode = compiled.vcode.clone();
        module.finalize_definitions().map_err(jerr)?;
        let ptr = module.get_finalized_function(id);
        Ok(JitFunction {
            ptr,
            code,
            vcode,
            compile_time: t0.elapsed(),
            _module: ModuleHolder(Some(module)),
        })
    }

    /// The entry point.
    pub fn ptr(&self) -> *const u8 {
        self.ptr
    }
}

/// Compiles `func` for any `target` without making it executable: machine code and listing.
pub fn compile_to_code(
    func: Function,
    target: &Target,
) -> Result<(Vec<u8>, Option<String>), CodegenError> {
    let mut ctx = Context::for_function(func);
    ctx.set_disasm(true);
    let compiled = ctx
        .compile(&*target.isa, &mut ControlPlane::default())
        .map_err(|e| CodegenError::Compile(format!("{:?}", e.inner)))?;
    Ok((compiled.code_buffer().to_vec(), compiled.vcode.clone()))
}

/// Whether a Cranelift listing contains instruction mnemonic `name`.
pub fn listing_uses(vcode: Option<&str>, name: &str) -> bool {
    vcode.is_some_and(|v| v.lines().any(|l| l.split_whitespace().next() == Some(name)))
}
