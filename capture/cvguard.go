package capture

/*
#cgo !windows pkg-config: opencv4
#cgo CXXFLAGS: --std=c++11
#include <stdlib.h>
#include "cvguard.h"
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

// WriteImage writes m to path, the format chosen by the extension (.png,
// .jpg, .bmp, .tiff, ...), with optional OpenCV (flag, value) params such
// as gocv.IMWritePngCompression, 1. Unlike gocv.IMWrite, an unknown
// extension, bad params or an I/O failure is an error, not a cv::Exception
// that aborts the process.
func WriteImage(path string, m gocv.Mat, params ...int) error {
	if m.Ptr() == nil || m.Empty() {
		return fmt.Errorf("write image %s: empty image", safePath(path))
	}
	if len(params)%2 != 0 {
		return fmt.Errorf("write image %s: params must be (flag, value) pairs, got %d numbers", safePath(path), len(params))
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var cparams *C.int
	if len(params) > 0 {
		ps := make([]C.int, len(params))
		for i, v := range params {
			ps[i] = C.int(v)
		}
		cparams = &ps[0]
	}
	var errBuf [512]C.char
	switch C.segad_imwrite(cpath, unsafe.Pointer(m.Ptr()), cparams, C.int(len(params)), &errBuf[0], C.size_t(len(errBuf))) {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("write image %s: OpenCV could not write it (does the folder exist and is it writable?)", safePath(path))
	default:
		return fmt.Errorf("write image %s: OpenCV refused: %s", safePath(path), strings.TrimSpace(C.GoString(&errBuf[0])))
	}
}
