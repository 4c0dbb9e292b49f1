// Guarded entry points for fixturing (align.go). cv::findTransformECC
// throws cv::Exception when the iteration does not converge (a blank frame,
// a wrong part) and gocv.FindTransformECC lets it cross cgo, which aborts
// the process; these wrappers turn every exception into an error code.
#ifndef SEGAD_ALIGN_H
#define SEGAD_ALIGN_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// segad_ecc runs cv::findTransformECC of input (a cv::Mat*, 8UC1) against
// the template tmpl (tw x th 8-bit grey bytes, tightly packed) with the
// given motion (cv::MOTION_*), at most iters iterations, stopping when the
// update is below eps, smoothing with a Gaussian of gauss pixels (odd, or
// 0 for none). warp holds the 2x3 row-major initial warp (template to
// input coordinates) and receives the result; rho the correlation. It
// returns 0 on success and 1 when OpenCV threw (text in err).
int segad_ecc(const unsigned char *tmpl, int tw, int th, const void *input, int motion, int iters, double eps,
              int gauss, double *warp, double *rho, char *err, size_t errlen);

// segad_estimate_affine fits a 2x3 warp mapping n points from (x,y pairs)
// onto to with RANSAC: partial != 0 for a similarity (rotation, uniform
// scale, shift; cv::estimateAffinePartial2D), else a full affine
// (cv::estimateAffine2D). It returns the inlier count (0: no fit) or -1
// when OpenCV threw (text in err).
int segad_estimate_affine(const float *from, const float *to, int n, int partial, double thresh, double *warp,
                          char *err, size_t errlen);

// segad_set_num_threads sets cv::setNumThreads and returns the previous
// value (benchmarks measure one core with it).
int segad_set_num_threads(int n);

#ifdef __cplusplus
}
#endif

#endif
