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
    return t_done("test_cpu_math");
}
