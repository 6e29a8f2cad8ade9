// mergec CUDA prelude, counter-based randomness: semantics::mix64 and uniform_at.

// The SplitMix64 finaliser.
static __device__ __forceinline__ mg_u64 mg_mix64(mg_u64 z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// Uniform in [0, 1) with 24 random bits, for element i of the stream `key`.
static __device__ __forceinline__ float mg_uniform_at(mg_u64 key, mg_u64 i) {
    mg_u64 bits = mg_mix64(key + (i + 1ull) * 0x9e3779b97f4a7c15ull);
    return (float)(bits >> 40) * (1.0f / 16777216.0f);
}
