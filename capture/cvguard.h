// C entry points into OpenCV's image codecs that cannot throw: OpenCV
// reports oversized or malformed images with cv::Exception, and a C++
// exception crossing cgo aborts the whole Go process.
#ifndef SEGAD_CVGUARD_H
#define SEGAD_CVGUARD_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// segad_imdecode decodes len bytes at buf into dst (a cv::Mat*, as gocv's
// Mat.Ptr() returns) with cv::imdecode's flags. It returns 0 on success
// (dst may still be empty: OpenCV found no decoder or the data is corrupt)
// and 1 when OpenCV threw; the exception text is copied into err
// (NUL-terminated, at most errlen bytes).
int segad_imdecode(const unsigned char *buf, size_t len, int flags, void *dst, char *err, size_t errlen);

// segad_imwrite writes src (a cv::Mat*) to path with cv::imwrite and the
// given (flag, value) params. It returns 0 when written, 1 when OpenCV
// returned false, 2 when it threw (unknown extension, bad params, I/O);
// the exception text goes to err as for segad_imdecode.
int segad_imwrite(const char *path, const void *src, const int *params, int nparams, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
