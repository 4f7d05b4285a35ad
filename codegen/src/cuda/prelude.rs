//! The helpers every generated CUDA kernel starts with.
//!
//! Only what NVRTC provides without headers is used (built-in vector types, `__dp4a`,
//! `__vsub4`, warp shuffles, math functions); f16 → f32 is one `cvt` instruction in inline PTX.

/// C source of the helpers.
pub const PRELUDE: &str = r#"// bitnetc generated CUDA C
#ifndef BITNETC_PRELUDE
#define BITNETC_PRELUDE
#ifdef __CUDACC__
__device__ __forceinline__ float bn_half_to_float(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
#endif
__device__ __forceinline__ float bn_bf16_to_float(unsigned short h) {
    return __uint_as_float(((unsigned)h) << 16);
}
// Sum over the 32 lanes of a warp; every lane gets the result.
__device__ __forceinline__ int bn_warp_sum_i(int v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float bn_warp_sum_f(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
// Signed dot product of the 16 ternary codes of one packed word with 16 int8 activations.
// Element 4j+b of the word sits at bits 8b+2j..8b+2j+1 as code 0/1/2 (weight -1/0/+1), so a
// shift by 2j and a byte mask leave four codes, one per byte; subtracting 1 per byte (no borrow
// across bytes) gives the signed weights for one __dp4a with activations 4j..4j+3.
__device__ __forceinline__ int bn_ternary_dot16(unsigned w, int4 a, int acc) {
    acc = __dp4a((int)__vsub4(w & 0x03030303u, 0x01010101u), a.x, acc);
    acc = __dp4a((int)__vsub4((w >> 2) & 0x03030303u, 0x01010101u), a.y, acc);
    acc = __dp4a((int)__vsub4((w >> 4) & 0x03030303u, 0x01010101u), a.z, acc);
    acc = __dp4a((int)__vsub4((w >> 6) & 0x03030303u, 0x01010101u), a.w, acc);
    return acc;
}
#endif
"#;
