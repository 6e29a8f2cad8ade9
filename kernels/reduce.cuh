// mergec CUDA prelude, canonical reductions (see ir::kernel): within a block of 4096
// elements, element j goes to lane j % 8, each lane summed sequentially in f64 from 0.0;
// the block's value is ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)). A rendered kernel keeps one
// thread per (unit, lane); lane partials meet in shared memory after __syncthreads and
// lane 0 of each unit combines them here.

// The canonical tree over 8 consecutive lane partials.
static __device__ __forceinline__ double mg_combine8(const double* l) {
    return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

// Running max (is_max != 0) or min of a lane: `has` says whether `*e` holds a value yet.
// semantics::max/min are associative and commutative, so lanes may see elements in any
// grouping; the first value is kept as is (a lone NaN keeps its payload, as the
// reference's Acc does).
static __device__ __forceinline__ void mg_ext_add(float* e, int* has, float x, int is_max) {
    if (*has) {
        *e = is_max ? mg_max(*e, x) : mg_min(*e, x);
    } else {
        *e = x;
        *has = 1;
    }
}

// Combines 8 consecutive lanes' extremes (lanes without elements are skipped); the
// result is widened to f64 (NaN if no lane saw an element, which never happens).
static __device__ __forceinline__ double mg_ext_combine8(const float* e, const int* has, int is_max) {
    float acc = 0.0f;
    int any = 0;
    for (int l = 0; l < 8; ++l) {
        if (has[l]) mg_ext_add(&acc, &any, e[l], is_max);
    }
    return any ? (double)acc : (double)mg_nan();
}
