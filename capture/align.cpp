#include "align.h"

#include <opencv2/calib3d.hpp>
#include <opencv2/core.hpp>
#include <opencv2/video/tracking.hpp>

#include <cstring>
#include <exception>
#include <new>
#include <vector>

static void align_err(char *err, size_t errlen, const char *msg) {
    if (err == nullptr || errlen == 0) {
        return;
    }
    std::strncpy(err, msg, errlen - 1);
    err[errlen - 1] = '\0';
}

extern "C" int segad_ecc(const unsigned char *tmpl, int tw, int th, const void *input, int motion, int iters,
                         double eps, int gauss, double *warp, double *rho, char *err, size_t errlen) {
    if (tmpl == nullptr || input == nullptr || warp == nullptr || rho == nullptr || tw <= 0 || th <= 0) {
        align_err(err, errlen, "segad_ecc: missing template, input or warp");
        return 1;
    }
    try {
        // A header over the caller's bytes: the reference pyramid lives in
        // Go memory for the duration of the call only.
        cv::Mat t(th, tw, CV_8UC1, (void *)tmpl);
        cv::Mat w(2, 3, CV_32F);
        for (int i = 0; i < 6; i++) {
            w.at<float>(i / 3, i % 3) = (float)warp[i];
        }
        cv::TermCriteria crit(cv::TermCriteria::COUNT + cv::TermCriteria::EPS, iters, eps);
        *rho = cv::findTransformECC(t, *(const cv::Mat *)input, w, motion, crit, cv::noArray(), gauss);
        for (int i = 0; i < 6; i++) {
            warp[i] = w.at<float>(i / 3, i % 3);
        }
        return 0;
    } catch (const cv::Exception &e) {
        align_err(err, errlen, e.what());
    } catch (const std::bad_alloc &) {
        align_err(err, errlen, "out of memory during registration");
    } catch (const std::exception &e) {
        align_err(err, errlen, e.what());
    } catch (...) {
        align_err(err, errlen, "unknown C++ exception during registration");
    }
    return 1;
}

extern "C" int segad_estimate_affine(const float *from, const float *to, int n, int partial, double thresh,
                                     double *warp, char *err, size_t errlen) {
    if (from == nullptr || to == nullptr || warp == nullptr || n < 3) {
        return 0;
    }
    try {
        std::vector<cv::Point2f> a(n), b(n);
        for (int i = 0; i < n; i++) {
            a[i] = cv::Point2f(from[2 * i], from[2 * i + 1]);
            b[i] = cv::Point2f(to[2 * i], to[2 * i + 1]);
        }
        std::vector<uchar> inl;
        cv::Mat m = partial ? cv::estimateAffinePartial2D(a, b, inl, cv::RANSAC, thresh)
                            : cv::estimateAffine2D(a, b, inl, cv::RANSAC, thresh);
        if (m.empty()) {
            return 0;
        }
        for (int i = 0; i < 6; i++) {
            warp[i] = m.at<double>(i / 3, i % 3);
        }
        return cv::countNonZero(inl);
    } catch (const cv::Exception &e) {
        align_err(err, errlen, e.what());
    } catch (const std::exception &e) {
        align_err(err, errlen, e.what());
    } catch (...) {
        align_err(err, errlen, "unknown C++ exception while fitting the feature matches");
    }
    return -1;
}

extern "C" int segad_set_num_threads(int n) {
    int prev = cv::getNumThreads();
    cv::setNumThreads(n);
    return prev;
}
