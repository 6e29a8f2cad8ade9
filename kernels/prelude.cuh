// mergec CUDA prelude: the scalar semantics every rendered kernel shares.
// Each function matches `interp::semantics` / `ir::reference` bit for bit (no fast math:
// NVRTC runs with --fmad=false, precise division and square root, no flush to zero).
// Plain C-compatible C++: no references, templates or overloads, so the host emulation
// shim (kernels/shim.h) compiles the same text with the host compiler.

typedef unsigned long long mg_u64;
typedef unsigned int mg_u32;
typedef unsigned short mg_u16;

// The canonical NaN (Rust's f32::NAN) that semantics::max/min return.
static __device__ __forceinline__ float mg_nan(void) { return __uint_as_float(0x7fc00000u); }

static __device__ __forceinline__ int mg_isnan(float x) {
    return (__float_as_uint(x) & 0x7fffffffu) > 0x7f800000u;
}

static __device__ __forceinline__ float mg_bool(int b) { return b ? 1.0f : 0.0f; }

// Signs and orders are integer operations, never left to the compiler's float rules.
// Seen with CUDA 13.0 on an H200: NVVM folded the sign flip of a 0/1 mask into a select
// between the float constants -1.0 and -0.0, and the code ptxas made from that (inlined
// into a max reduction) produced +0 where -0 was due. The asm keeps NVVM from folding;
// max/min compare integer keys.
static __device__ __forceinline__ float mg_neg(float x) {
    mg_u32 u = __float_as_uint(x);
#ifdef __CUDA_ARCH__
    asm("xor.b32 %0, %0, 0x80000000;" : "+r"(u));
#else
    u ^= 0x80000000u;
#endif
    return __uint_as_float(u);
}

static __device__ __forceinline__ float mg_abs(float x) {
    mg_u32 u = __float_as_uint(x);
#ifdef __CUDA_ARCH__
    asm("and.b32 %0, %0, 0x7fffffff;" : "+r"(u));
#else
    u &= 0x7fffffffu;
#endif
    return __uint_as_float(u);
}

// A strictly increasing integer key of a non-NaN float (-0 below +0).
static __device__ __forceinline__ int mg_order(float x) {
    int i = (int)__float_as_uint(x);
    return i < 0 ? -(i & 0x7fffffff) - 1 : i;
}

// semantics::max: IEEE 754-2019 maximum (NaN if either is NaN; +0 beats -0).
static __device__ __forceinline__ float mg_max(float a, float b) {
    if (mg_isnan(a) || mg_isnan(b)) return mg_nan();
    return mg_order(a) >= mg_order(b) ? a : b;
}

// semantics::min: IEEE 754-2019 minimum (NaN if either is NaN; -0 beats +0).
static __device__ __forceinline__ float mg_min(float a, float b) {
    if (mg_isnan(a) || mg_isnan(b)) return mg_nan();
    return mg_order(a) <= mg_order(b) ? a : b;
}

// semantics::sign: -1, 1, or x itself for +-0 and NaN.
static __device__ __forceinline__ float mg_sign(float x) {
    if (x > 0.0f) return 1.0f;
    if (x < 0.0f) return -1.0f;
    return x;
}

// semantics::sigmoid: 1 / (1 + exp(-x)).
static __device__ __forceinline__ float mg_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// reference::magnitude_key: |x| as bits, NaN above everything.
static __device__ __forceinline__ mg_u32 mg_mk(float x) {
    return mg_isnan(x) ? 0xffffffffu : (__float_as_uint(x) & 0x7fffffffu);
}

// A key ordering floats like f32::total_cmp (-NaN < -inf < ... < -0 < +0 < ... < +NaN).
static __device__ __forceinline__ mg_u32 mg_total_key(float x) {
    mg_u32 b = __float_as_uint(x);
    return (b >> 31) ? ~b : (b | 0x80000000u);
}

// Inst::TopSel: 1 iff mk(x) > t || (mk(x) == t && i < cut).
static __device__ __forceinline__ float mg_topsel(float x, mg_u64 t, mg_u64 cut, mg_u64 i) {
    mg_u64 k = (mg_u64)mg_mk(x);
    return mg_bool(k > t || (k == t && i < cut));
}

// ---- storage dtypes (the `half` crate's conversions, bit for bit) ----

// half::bf16::to_f32: NaNs get their quiet bit set.
static __device__ __forceinline__ float mg_bf16_to_f32(mg_u16 h) {
    mg_u32 i = h;
    if ((i & 0x7fffu) > 0x7f80u) i |= 0x0040u;
    return __uint_as_float(i << 16);
}

// half::bf16::from_f32: round to nearest even; NaNs keep their high payload, made quiet.
static __device__ __forceinline__ mg_u16 mg_f32_to_bf16(float v) {
    mg_u32 x = __float_as_uint(v);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (mg_u16)((x >> 16) | 0x0040u);
    mg_u32 round_bit = 0x00008000u;
    if ((x & round_bit) != 0u && (x & (3u * round_bit - 1u)) != 0u) return (mg_u16)((x >> 16) + 1u);
    return (mg_u16)(x >> 16);
}

// half::f16::to_f32 (exact; NaNs get their quiet bit set).
static __device__ __forceinline__ float mg_f16_to_f32(mg_u16 h) {
    mg_u32 i = h;
    mg_u32 sign = (i & 0x8000u) << 16;
    mg_u32 exp = i & 0x7c00u;
    mg_u32 man = i & 0x03ffu;
    if ((i & 0x7fffu) == 0u) return __uint_as_float(i << 16);
    if (exp == 0x7c00u) {
        if (man == 0u) return __uint_as_float(sign | 0x7f800000u);
        return __uint_as_float(sign | 0x7fc00000u | (man << 13));
    }
    if (exp == 0u) {
        // Subnormal: man * 2^-24, exact in f32.
        float m = (float)man * __uint_as_float(0x33800000u);
        return __uint_as_float(sign | __float_as_uint(m));
    }
    return __uint_as_float(sign | (((i & 0x7fffu) + 0x1c000u) << 13));
}

// half::f16::from_f32: round to nearest even, overflow to infinity, NaNs made quiet.
static __device__ __forceinline__ mg_u16 mg_f32_to_f16(float v) {
    mg_u32 x = __float_as_uint(v);
    mg_u32 sign = x & 0x80000000u;
    mg_u32 exp = x & 0x7f800000u;
    mg_u32 man = x & 0x007fffffu;
    if (exp == 0x7f800000u) {
        mg_u32 nan_bit = man == 0u ? 0u : 0x0200u;
        return (mg_u16)((sign >> 16) | 0x7c00u | nan_bit | (man >> 13));
    }
    mg_u32 half_sign = sign >> 16;
    int half_exp = (int)(exp >> 23) - 127 + 15;
    if (half_exp >= 0x1f) return (mg_u16)(half_sign | 0x7c00u);
    if (half_exp <= 0) {
        if (14 - half_exp > 24) return (mg_u16)half_sign;
        mg_u32 m = man | 0x00800000u;
        mg_u32 half_man = m >> (14 - half_exp);
        mg_u32 round_bit = 1u << (13 - half_exp);
        if ((m & round_bit) != 0u && (m & (3u * round_bit - 1u)) != 0u) half_man += 1u;
        return (mg_u16)(half_sign | half_man);
    }
    mg_u32 bits = half_sign | ((mg_u32)half_exp << 10) | (man >> 13);
    mg_u32 round_bit = 0x00001000u;
    if ((man & round_bit) != 0u && (man & (3u * round_bit - 1u)) != 0u) bits += 1u;
    return (mg_u16)bits;
}
