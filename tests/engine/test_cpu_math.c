/* fb_expf (the engine's vectorisable exp) against libm's double-precision exp. */
#include <float.h>

#include "engine/cpu/cpu_math.h"
#include "testlib.h"

int main(void) {
    double worst = 0;
    float wx = 0;
    long n = 0;
    for (float x = -87.0f; x < 88.0f; x += 0.00731f, n++) {
        double ref = exp((double)x);
        double ulp = ref * FLT_EPSILON; /* one ulp at ref's binade, roughly */
        double err = fabs((double)fb_expf(x) - ref) / ulp;
        if (err > worst) { worst = err; wx = x; }
    }
    fprintf(stderr, "fb_expf: worst error %.2f ulp at x = %g over %ld points\n", worst, wx, n);
    CHECK(worst < 4.0, "max error %.2f ulp at %g", worst, wx);
    CHECK(fb_expf(0.0f) == 1.0f, "exp(0) = %g", fb_expf(0.0f));
    CHECK(fb_expf(-200.0f) == 0.0f, "underflow to 0");
    CHECK(isinf(fb_expf(200.0f)), "overflow to inf");
    CHECK(isnan(fb_expf(NAN)), "NaN stays NaN");
    CHECK(fb_expf(-INFINITY) == 0.0f, "exp(-inf) = 0");
    /* fb_expf_le0: the softmax form, for x ≤ 0 (checked up to 88) */
    worst = 0;
    n = 0;
    for (float x = -87.0f; x < 88.0f; x += 0.00731f, n++) {
        double ref = exp((double)x);
        double err = fabs((double)fb_expf_le0(x) - ref) / (ref * FLT_EPSILON);
        if (err > worst) { worst = err; wx = x; }
    }
    fprintf(stderr, "fb_expf_le0: worst error %.2f ulp at x = %g over %ld points\n", worst, wx, n);
    CHECK(worst < 4.0, "fb_expf_le0 max error %.2f ulp at %g", worst, wx);
    CHECK(fb_expf_le0(0.0f) == 1.0f, "fb_expf_le0(0) = %g", fb_expf_le0(0.0f));
    CHECK(fb_expf_le0(-100.0f) == 0.0f, "fb_expf_le0 underflow to 0");
    CHECK(fb_expf_le0(-INFINITY) == 0.0f, "fb_expf_le0(-inf) = 0");
    CHECK(isnan(fb_expf_le0(NAN)), "fb_expf_le0: NaN stays NaN");
#if defined(__AVX512F__)
    /* fb_expf_le0_v16: the same on 16 lanes (intrinsics, fused multiply-adds) */
    worst = 0;
    n = 0;
    for (float x0 = -87.0f; x0 < 88.0f; x0 += 16 * 0.00731f) {
        float xs[16], ys[16];
        for (int j = 0; j < 16; j++) xs[j] = x0 + j * 0.00731f;
        _mm512_storeu_ps(ys, fb_expf_le0_v16(_mm512_loadu_ps(xs)));
        for (int j = 0; j < 16; j++, n++) {
            double ref = exp((double)xs[j]);
            double err = fabs((double)ys[j] - ref) / (ref * FLT_EPSILON);
            if (err > worst) { worst = err; wx = xs[j]; }
        }
    }
    fprintf(stderr, "fb_expf_le0_v16: worst error %.2f ulp at x = %g over %ld points\n", worst, wx, n);
    CHECK(worst < 4.0, "fb_expf_le0_v16 max error %.2f ulp at %g", worst, wx);
    {
        float xs[16] = {0.0f, -100.0f, -INFINITY, NAN, -87.29f, -87.31f, -1e-30f, -0.5f}, ys[16];
        _mm512_storeu_ps(ys, fb_expf_le0_v16(_mm512_loadu_ps(xs)));
        CHECK(ys[0] == 1.0f && ys[1] == 0.0f && ys[2] == 0.0f && isnan(ys[3]) && ys[5] == 0.0f && ys[6] == 1.0f,
              "fb_expf_le0_v16 edges: %g %g %g %g %g %g", ys[0], ys[1], ys[2], ys[3], ys[5], ys[6]);
        const double r4 = exp((double)xs[4]);
        CHECK(fabs(ys[4] - r4) <= 4 * FLT_EPSILON * r4, "fb_expf_le0_v16(%g) = %g, want %g", xs[4], ys[4], r4);
    }
#endif
    return t_done("test_cpu_math");
}
