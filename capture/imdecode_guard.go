package capture

/*
#cgo !windows pkg-config: opencv4
#cgo CXXFLAGS: --std=c++11
#include <stdlib.h>
#include "imdecode_guard.h"
*/
import "C"

import (
	"fmt"
	"strings"
	"unsafe"

	"gocv.io/x/gocv"
)

// guardedIMDecode is the one call into OpenCV's image decoder in the whole
// repository. gocv.IMDecode and gocv.IMRead let a cv::Exception (oversized
// image, malformed header, out of memory) cross cgo, which aborts the
// process; the C++ shim catches it and it comes back here as an error.
// The returned Mat may be empty (no decoder, corrupt data); the caller owns
// it either way when err is nil.
func guardedIMDecode(data []byte, flags gocv.IMReadFlag) (gocv.Mat, error) {
	if len(data) == 0 {
		return gocv.Mat{}, ErrEmptyFile
	}
	m := gocv.NewMat()
	var errBuf [512]C.char
	rc := C.segad_imdecode((*C.uchar)(unsafe.Pointer(&data[0])), C.size_t(len(data)), C.int(flags),
		unsafe.Pointer(m.Ptr()), &errBuf[0], C.size_t(len(errBuf)))
	if rc != 0 {
		m.Close()
		return gocv.Mat{}, fmt.Errorf("OpenCV refused the image: %s: %w", strings.TrimSpace(C.GoString(&errBuf[0])), ErrCorrupt)
	}
	return m, nil
}
