#include "cvguard.h"

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <cstdint>
#include <cstring>
#include <exception>
#include <new>
#include <vector>

static void copy_err(char *err, size_t errlen, const char *msg) {
    if (err == nullptr || errlen == 0) {
        return;
    }
    std::strncpy(err, msg, errlen - 1);
    err[errlen - 1] = '\0';
}

extern "C" int segad_imdecode(const unsigned char *buf, size_t len, int flags, void *dst, char *err, size_t errlen) {
    if (dst == nullptr || buf == nullptr || len == 0 || len > (size_t)INT32_MAX) {
        copy_err(err, errlen, "segad_imdecode: no buffer, no destination or buffer over 2 GiB");
        return 1;
    }
    try {
        // A Mat header over the caller's bytes: no copy (gocv's IMDecode
        // copies the whole file into a std::vector first).
        cv::Mat raw(1, (int)len, CV_8UC1, (void *)buf);
        cv::imdecode(raw, flags, (cv::Mat *)dst);
        return 0;
    } catch (const cv::Exception &e) {
        copy_err(err, errlen, e.what());
    } catch (const std::bad_alloc &) {
        copy_err(err, errlen, "out of memory while decoding");
    } catch (const std::exception &e) {
        copy_err(err, errlen, e.what());
    } catch (...) {
        copy_err(err, errlen, "unknown C++ exception while decoding");
    }
    return 1;
}

extern "C" int segad_imwrite(const char *path, const void *src, const int *params, int nparams, char *err, size_t errlen) {
    if (path == nullptr || src == nullptr) {
        copy_err(err, errlen, "segad_imwrite: no path or no image");
        return 2;
    }
    try {
        std::vector<int> p;
        if (params != nullptr && nparams > 0) {
            p.assign(params, params + nparams);
        }
        return cv::imwrite(path, *(const cv::Mat *)src, p) ? 0 : 1;
    } catch (const cv::Exception &e) {
        copy_err(err, errlen, e.what());
    } catch (const std::bad_alloc &) {
        copy_err(err, errlen, "out of memory while encoding");
    } catch (const std::exception &e) {
        copy_err(err, errlen, e.what());
    } catch (...) {
        copy_err(err, errlen, "unknown C++ exception while encoding");
    }
    return 2;
}
