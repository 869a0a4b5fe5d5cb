/* attnviz's CPU kernel for the blockwise capture (see attnviz/cpu_kernel.py).
 *
 * One block of attention logits (m query rows x n keys, row-major float32, keys laid out as
 * `prefix` tokens then `rows` x `cols` patch tokens in row-major order) is turned, in two passes
 * over each row, into
 *   - the row's exp(logit - row max), left in place, NOT divided by the row sum;
 *   - the probability mass on each key column (summed over key rows), per_col (m x cols);
 *   - the probability mass on the prefix keys, prefix_mass (m);
 *   - 1 / row sum, inv_sum (m), so that the caller gets P @ v as (E @ v) * inv_sum.
 * torch's softmax followed by the column sums reads and writes the block four times and spends
 * most of its time in a precise exp; this is the pass the fused attention kernel never makes.
 *
 * Plain C with GCC/Clang vector extensions: built at first use with the system compiler,
 * nothing else needed.  NaN logits give NaN outputs for their row (as torch's softmax does).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef float v8sf __attribute__((vector_size(32)));
typedef int32_t v8si __attribute__((vector_size(32)));

/* exp(x) for x <= 0 (a logit minus its row max), relative error ~2e-7: Cody-Waite reduction
 * x = k ln2 + r with |r| <= ln2 / 2, a degree-6 polynomial for exp(r) (Cephes' coefficients),
 * 2^k from the exponent bits.  0 below -87.3, where float32's exp underflows; NaN stays NaN. */
static inline float exp_nonpositive(float x) {
    const float log2e = 1.44269504088896341f, ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
    float xc = x < -87.3f ? -87.3f : x;
    float k = __builtin_roundf(xc * log2e);
    float r = xc - k * ln2_hi;
    r = r - k * ln2_lo;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t i; float f; } scale;
    scale.i = ((int32_t)k + 127) << 23;
    float e = p * scale.f;
    return x < -87.3f ? 0.0f : e;
}

/* The largest of row[0 .. n), 16 lanes at a time (compilers do not vectorise a float max
 * reduction without -ffinite-math-only, which would break -inf logits). */
static float row_max(const float *row, int64_t n) {
    const float lo = -INFINITY;
    v8sf a = {lo, lo, lo, lo, lo, lo, lo, lo}, b = a;
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        v8sf x, y;
        memcpy(&x, row + j, sizeof x);
        memcpy(&y, row + j + 8, sizeof y);
        v8si gx = x > a, gy = y > b;
        a = (v8sf)(((v8si)x & gx) | ((v8si)a & ~gx));
        b = (v8sf)(((v8si)y & gy) | ((v8si)b & ~gy));
    }
    float best = lo;
    for (int l = 0; l < 8; ++l) {
        best = a[l] > best ? a[l] : best;
        best = b[l] > best ? b[l] : best;
    }
    for (; j < n; ++j) best = row[j] > best ? row[j] : best;
    return best;
}

int attnviz_softmax_columns(float *logits, int64_t m, int64_t n, int64_t prefix, int64_t rows, int64_t cols,
                            float *per_col, float *prefix_mass, float *inv_sum) {
    if (m < 0 || cols < 1 || rows < 1 || prefix < 0 || n != prefix + rows * cols) return 1;
    for (int64_t i = 0; i < m; ++i) {
        float *row = logits + i * n;
        float *acc = per_col + i * cols;
        const float top = row_max(row, n);
        float head = 0.0f;
        for (int64_t j = 0; j < prefix; ++j) {
            float e = exp_nonpositive(row[j] - top);
            row[j] = e;
            head += e;
        }
        for (int64_t c = 0; c < cols; ++c) acc[c] = 0.0f;
        for (int64_t r = 0; r < rows; ++r) {
            float *seg = row + prefix + r * cols;
            for (int64_t c = 0; c < cols; ++c) {
                float e = exp_nonpositive(seg[c] - top);
                seg[c] = e;
                acc[c] += e;
            }
        }
        float total = head;
        for (int64_t c = 0; c < cols; ++c) total += acc[c];
        const float inv = 1.0f / total;
        for (int64_t c = 0; c < cols; ++c) acc[c] *= inv;
        prefix_mass[i] = head * inv;
        inv_sum[i] = inv;
    }
    return 0;
}
