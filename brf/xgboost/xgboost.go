// Package xgboost binds the few functions of libxgboost's C API that training
// and benchmarking need. The library is opened with dlopen at first use, not
// linked, so binaries that import this package still start (and score with the
// native evaluator in package brf) on machines without libxgboost.
//
// The C API's typedefs are declared here, so building needs no XGBoost
// headers either. Tested with Debian's libxgboost0 1.7.4.
package xgboost

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>

typedef uint64_t bst_ulong;
typedef void *DMatrixHandle;
typedef void *BoosterHandle;

static const char *(*p_XGBGetLastError)(void);
static void (*p_XGBoostVersion)(int *, int *, int *);
static int (*p_XGDMatrixCreateFromMat)(const float *, bst_ulong, bst_ulong, float, DMatrixHandle *);
static int (*p_XGDMatrixSetFloatInfo)(DMatrixHandle, const char *, const float *, bst_ulong);
static int (*p_XGDMatrixFree)(DMatrixHandle);
static int (*p_XGBoosterCreate)(const DMatrixHandle *, bst_ulong, BoosterHandle *);
static int (*p_XGBoosterFree)(BoosterHandle);
static int (*p_XGBoosterSetParam)(BoosterHandle, const char *, const char *);
static int (*p_XGBoosterUpdateOneIter)(BoosterHandle, int, DMatrixHandle);
static int (*p_XGBoosterSaveModelToBuffer)(BoosterHandle, const char *, bst_ulong *, const char **);
static int (*p_XGBoosterLoadModelFromBuffer)(BoosterHandle, const void *, bst_ulong);
static int (*p_XGBoosterPredictFromDense)(BoosterHandle, const char *, const char *, DMatrixHandle,
                                          const bst_ulong **, bst_ulong *, const float **);

// xgb_open loads the library and every symbol; it returns NULL or a message.
static const char *xgb_open(const char *path) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) return dlerror();
#define SYM(name) if (!(*(void **)(&p_##name) = dlsym(h, #name))) return "missing symbol " #name;
	SYM(XGBGetLastError)
	SYM(XGBoostVersion)
	SYM(XGDMatrixCreateFromMat)
	SYM(XGDMatrixSetFloatInfo)
	SYM(XGDMatrixFree)
	SYM(XGBoosterCreate)
	SYM(XGBoosterFree)
	SYM(XGBoosterSetParam)
	SYM(XGBoosterUpdateOneIter)
	SYM(XGBoosterSaveModelToBuffer)
	SYM(XGBoosterLoadModelFromBuffer)
	SYM(XGBoosterPredictFromDense)
#undef SYM
	return NULL;
}

static const char *xgb_last_error(void) { return p_XGBGetLastError(); }
static void xgb_version(int *a, int *b, int *c) { p_XGBoostVersion(a, b, c); }
static int xgb_dmatrix_from_mat(const float *d, bst_ulong r, bst_ulong c, float missing, DMatrixHandle *out) {
	return p_XGDMatrixCreateFromMat(d, r, c, missing, out);
}
static int xgb_dmatrix_set_float(DMatrixHandle h, const char *f, const float *a, bst_ulong n) {
	return p_XGDMatrixSetFloatInfo(h, f, a, n);
}
static int xgb_dmatrix_free(DMatrixHandle h) { return p_XGDMatrixFree(h); }
static int xgb_booster_create(DMatrixHandle d, int n, BoosterHandle *out) {
	DMatrixHandle ds[1] = {d};
	return p_XGBoosterCreate(ds, (bst_ulong)n, out);
}
static int xgb_booster_free(BoosterHandle h) { return p_XGBoosterFree(h); }
static int xgb_booster_set_param(BoosterHandle h, const char *k, const char *v) { return p_XGBoosterSetParam(h, k, v); }
static int xgb_booster_update(BoosterHandle h, int it, DMatrixHandle d) { return p_XGBoosterUpdateOneIter(h, it, d); }
static int xgb_booster_save(BoosterHandle h, const char *cfg, bst_ulong *n, const char **out) {
	return p_XGBoosterSaveModelToBuffer(h, cfg, n, out);
}
static int xgb_booster_load(BoosterHandle h, const void *buf, bst_ulong n) { return p_XGBoosterLoadModelFromBuffer(h, buf, n); }
// xgb_predict_dense returns the first output value's address in *out and the
// number of values in *n.
static int xgb_predict_dense(BoosterHandle h, const char *values, const char *cfg, const float **out, bst_ulong *n) {
	const bst_ulong *shape; bst_ulong dim;
	int rc = p_XGBoosterPredictFromDense(h, values, cfg, NULL, &shape, &dim, out);
	if (rc != 0) return rc;
	*n = 1;
	for (bst_ulong i = 0; i < dim; i++) *n *= shape[i];
	return 0;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"unsafe"
)

// EnvLib names the environment variable that overrides the library path.
const EnvLib = "SEGAD_XGBOOST_LIB"

// candidates are tried in order when EnvLib is unset: the unversioned name
// from libxgboost-dev, then Debian's runtime package libxgboost0.
var candidates = []string{"libxgboost.so", "libxgboost.so.0"}

var (
	openOnce sync.Once
	openErr  error
	// trainMu serialises training: XGBoost seeds a process-wide random engine
	// when a booster is configured, so concurrent trainings would disturb each
	// other's sampling and break determinism.
	trainMu sync.Mutex
)

// Open loads libxgboost (once per process) and reports why it cannot. Every
// other function calls it, so calling it directly is only needed to check at
// start-up.
func Open() error {
	openOnce.Do(func() {
		tried := candidates
		if p := os.Getenv(EnvLib); p != "" {
			tried = []string{p}
		}
		openErr = openLib(tried)
	})
	return openErr
}

// openLib tries each path in turn and stops at the first that loads.
func openLib(tried []string) error {
	var msgs []string
	for _, p := range tried {
		cp := C.CString(p)
		msg := C.xgb_open(cp)
		C.free(unsafe.Pointer(cp))
		if msg == nil {
			return nil
		}
		msgs = append(msgs, C.GoString(msg))
	}
	return fmt.Errorf("load XGBoost library (tried %s): %s; install it with `apt-get install libxgboost0` (Debian/Ubuntu; libxgboost-dev adds libxgboost.so) or set %s to the library's path",
		strings.Join(tried, ", "), strings.Join(msgs, "; "), EnvLib)
}

// Version returns the loaded library's version, e.g. "1.7.4".
func Version() (string, error) {
	if err := Open(); err != nil {
		return "", err
	}
	var a, b, c C.int
	C.xgb_version(&a, &b, &c)
	return fmt.Sprintf("%d.%d.%d", a, b, c), nil
}

func lastError(what string) error {
	return fmt.Errorf("xgboost %s: %s", what, C.GoString(C.xgb_last_error()))
}

// Params are the booster parameters Train sets. DefaultParams holds the
// paper's BRF (appendix A.1 and the reference code).
type Params struct {
	NumParallelTree int     // trees per round (the forest): 200
	Eta             float64 // learning rate: 0.3 (XGBoost divides it by NumParallelTree)
	MaxDepth        int     // 5
	Subsample       float64 // 0.6
	ColsampleByTree float64 // 0.6
	ColsampleByNode float64 // 0.6
	RegAlpha        float64 // L1 on leaf weights: 1.0
	Objective       string  // "binary:logitraw": the raw margin is SegAD's score
	ScalePosWeight  float64 // n_good / n_bad (see ScalePosWeight); 0 leaves XGBoost's default 1
	TreeMethod      string  // "hist"
	Seed            int     // sampling seed; same seed and data give the same model bytes
	NThread         int     // 0: XGBoost's default (all cores)
	// Extra holds further parameters passed verbatim, after the ones above.
	Extra map[string]string
}

// DefaultRounds is the paper's number of boosting rounds (n_estimators); with
// 200 parallel trees it makes the 2000-tree BRF.
const DefaultRounds = 10

// DefaultParams returns the paper's hyper-parameters; set ScalePosWeight
// from the training labels (ScalePosWeight helps).
func DefaultParams() Params {
	return Params{
		NumParallelTree: 200, Eta: 0.3, MaxDepth: 5,
		Subsample: 0.6, ColsampleByTree: 0.6, ColsampleByNode: 0.6,
		RegAlpha: 1.0, Objective: "binary:logitraw", TreeMethod: "hist",
	}
}

// ScalePosWeight returns n_good / n_bad for 0/1 labels (1 = bad, the positive
// class), as the reference code sets it. It errs when a class is missing.
func ScalePosWeight(labels []float32) (float64, error) {
	var good, bad int
	for i, l := range labels {
		switch l {
		case 0:
			good++
		case 1:
			bad++
		default:
			return 0, fmt.Errorf("label %d is %v: want 0 (good) or 1 (bad)", i, l)
		}
	}
	if good == 0 || bad == 0 {
		return 0, fmt.Errorf("labels hold %d good and %d bad images: both classes are needed", good, bad)
	}
	return float64(good) / float64(bad), nil
}

func (p Params) pairs() [][2]string {
	f := func(v float64) string { return fmt.Sprintf("%g", v) }
	kv := [][2]string{
		{"booster", "gbtree"},
		{"num_parallel_tree", fmt.Sprint(p.NumParallelTree)},
		{"eta", f(p.Eta)},
		{"max_depth", fmt.Sprint(p.MaxDepth)},
		{"subsample", f(p.Subsample)},
		{"colsample_bytree", f(p.ColsampleByTree)},
		{"colsample_bynode", f(p.ColsampleByNode)},
		{"reg_alpha", f(p.RegAlpha)},
		{"objective", p.Objective},
		{"tree_method", p.TreeMethod},
		{"seed", fmt.Sprint(p.Seed)},
		{"verbosity", "0"},
	}
	if p.ScalePosWeight > 0 {
		kv = append(kv, [2]string{"scale_pos_weight", f(p.ScalePosWeight)})
	}
	if p.NThread > 0 {
		kv = append(kv, [2]string{"nthread", fmt.Sprint(p.NThread)})
	}
	keys := make([]string, 0, len(p.Extra))
	for k := range p.Extra {
		keys = append(keys, k)
	}
	sort.Strings(keys) // a fixed order, for reproducible training
	for _, k := range keys {
		kv = append(kv, [2]string{k, p.Extra[k]})
	}
	return kv
}

func setParam(h C.BoosterHandle, k, v string) error {
	ck, cv := C.CString(k), C.CString(v)
	defer C.free(unsafe.Pointer(ck))
	defer C.free(unsafe.Pointer(cv))
	if C.xgb_booster_set_param(h, ck, cv) != 0 {
		return lastError(fmt.Sprintf("set parameter %s=%s", k, v))
	}
	return nil
}

// Train fits a booster on nRows x nCols features (row-major; NaN = missing,
// as SegAD's NaN skew/kurtosis) and 0/1 labels, and returns the model as
// XGBoost JSON, which brf.LoadBytes reads.
func Train(features []float32, nRows, nCols int, labels []float32, params Params, rounds int) ([]byte, error) {
	return TrainWeighted(features, nRows, nCols, labels, nil, params, rounds)
}

// TrainWeighted is Train with a weight per row (XGBoost's "weight" field;
// nil weighs every row 1), e.g. to let a few real defects count more than
// many synthetic ones.
func TrainWeighted(features []float32, nRows, nCols int, labels, weights []float32, params Params, rounds int) ([]byte, error) {
	switch {
	case weights != nil && len(weights) != nRows:
		return nil, fmt.Errorf("xgboost train: %d weights for %d rows", len(weights), nRows)
	case nRows <= 0 || nCols <= 0:
		return nil, fmt.Errorf("xgboost train: %d rows x %d columns: need at least one of each", nRows, nCols)
	case len(features) != nRows*nCols:
		return nil, fmt.Errorf("xgboost train: %d feature values for %d rows x %d columns", len(features), nRows, nCols)
	case len(labels) != nRows:
		return nil, fmt.Errorf("xgboost train: %d labels for %d rows", len(labels), nRows)
	case rounds <= 0:
		return nil, fmt.Errorf("xgboost train: %d rounds: need at least 1", rounds)
	}
	if err := Open(); err != nil {
		return nil, err
	}
	trainMu.Lock()
	defer trainMu.Unlock()
	// XGBoost keeps its last error per OS thread; stay on one.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	var dm C.DMatrixHandle
	if C.xgb_dmatrix_from_mat((*C.float)(&features[0]), C.bst_ulong(nRows), C.bst_ulong(nCols), C.float(math.NaN()), &dm) != 0 {
		return nil, lastError("create training matrix")
	}
	defer C.xgb_dmatrix_free(dm)
	field := C.CString("label")
	defer C.free(unsafe.Pointer(field))
	if C.xgb_dmatrix_set_float(dm, field, (*C.float)(&labels[0]), C.bst_ulong(nRows)) != 0 {
		return nil, lastError("set labels")
	}
	if weights != nil {
		wf := C.CString("weight")
		defer C.free(unsafe.Pointer(wf))
		if C.xgb_dmatrix_set_float(dm, wf, (*C.float)(&weights[0]), C.bst_ulong(nRows)) != 0 {
			return nil, lastError("set weights")
		}
	}
	var bh C.BoosterHandle
	if C.xgb_booster_create(dm, 1, &bh) != 0 {
		return nil, lastError("create booster")
	}
	defer C.xgb_booster_free(bh)
	for _, kv := range params.pairs() {
		if err := setParam(bh, kv[0], kv[1]); err != nil {
			return nil, err
		}
	}
	for i := 0; i < rounds; i++ {
		if C.xgb_booster_update(bh, C.int(i), dm) != 0 {
			return nil, lastError(fmt.Sprintf("boosting round %d", i))
		}
	}
	cfg := C.CString(`{"format": "json"}`)
	defer C.free(unsafe.Pointer(cfg))
	var n C.bst_ulong
	var out *C.char
	if C.xgb_booster_save(bh, cfg, &n, &out) != 0 {
		return nil, lastError("save model")
	}
	return C.GoBytes(unsafe.Pointer(out), C.int(n)), nil
}

// Booster is a model loaded into libxgboost, for XGBoost's own predictions:
// the parity check and the baseline that brf's native evaluator is measured
// against. Close frees it. Its methods are safe for concurrent use.
type Booster struct {
	mu    sync.Mutex
	h     C.BoosterHandle
	nCols int
	buf   *C.float // C copy of the input rows: no Go pointers cross into C
	cap   int      // rows buf holds
	arr   *C.char  // __array_interface__ JSON for buf's current shape
	rows  int      // rows arr describes
	cfg   *C.char  // prediction config: margin, all trees, NaN missing
}

// NewBooster loads model bytes (JSON as Train returns, or any format XGBoost
// reads) for rows of nCols features. nThread > 0 limits XGBoost's threads (1
// for a single-core comparison).
func NewBooster(model []byte, nCols, nThread int) (*Booster, error) {
	if len(model) == 0 || nCols <= 0 {
		return nil, fmt.Errorf("xgboost booster: %d model bytes, %d columns", len(model), nCols)
	}
	if err := Open(); err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b := &Booster{nCols: nCols}
	if C.xgb_booster_create(nil, 0, &b.h) != 0 {
		return nil, lastError("create booster")
	}
	cm := C.CBytes(model)
	rc := C.xgb_booster_load(b.h, cm, C.bst_ulong(len(model)))
	C.free(cm)
	if rc != 0 {
		err := lastError("load model")
		C.xgb_booster_free(b.h)
		return nil, err
	}
	if nThread > 0 {
		if err := setParam(b.h, "nthread", fmt.Sprint(nThread)); err != nil {
			C.xgb_booster_free(b.h)
			return nil, err
		}
	}
	// type 1 = output_margin; XGBoost's JSON reader accepts NaN.
	b.cfg = C.CString(`{"type": 1, "training": false, "iteration_begin": 0, "iteration_end": 0, "strict_shape": false, "cache_id": 0, "missing": NaN}`)
	return b, nil
}

// Close frees the booster and its buffers; the Booster is unusable after.
func (b *Booster) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.h == nil {
		return nil
	}
	C.xgb_booster_free(b.h)
	C.free(unsafe.Pointer(b.buf))
	C.free(unsafe.Pointer(b.arr))
	C.free(unsafe.Pointer(b.cfg))
	b.h, b.buf, b.arr, b.cfg = nil, nil, nil, nil
	return nil
}

// PredictMargin returns XGBoost's output_margin for each row of rows
// (row-major, len = n*nCols), through XGBoosterPredictFromDense (in-place
// prediction, no DMatrix). out is reused when long enough.
func (b *Booster) PredictMargin(rows []float32, out []float32) ([]float32, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.h == nil {
		return nil, errors.New("xgboost predict: booster is closed")
	}
	if len(rows) == 0 || len(rows)%b.nCols != 0 {
		return nil, fmt.Errorf("xgboost predict: %d values is not a whole number of %d-feature rows", len(rows), b.nCols)
	}
	n := len(rows) / b.nCols
	if n > b.cap {
		C.free(unsafe.Pointer(b.buf))
		b.buf = (*C.float)(C.malloc(C.size_t(len(rows)) * 4))
		b.cap = n
		b.rows = 0
	}
	if n != b.rows {
		C.free(unsafe.Pointer(b.arr))
		b.arr = C.CString(fmt.Sprintf(`{"data": [%d, true], "shape": [%d, %d], "strides": null, "typestr": "<f4", "version": 3}`,
			uintptr(unsafe.Pointer(b.buf)), n, b.nCols))
		b.rows = n
	}
	copy(unsafe.Slice((*float32)(unsafe.Pointer(b.buf)), len(rows)), rows)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var res *C.float
	var cnt C.bst_ulong
	if C.xgb_predict_dense(b.h, b.arr, b.cfg, &res, &cnt) != 0 {
		return nil, lastError("predict")
	}
	if int(cnt) != n {
		return nil, fmt.Errorf("xgboost predict: %d outputs for %d rows (a multi-output model?)", cnt, n)
	}
	if cap(out) < n {
		out = make([]float32, n)
	}
	out = out[:n]
	copy(out, unsafe.Slice((*float32)(unsafe.Pointer(res)), n))
	return out, nil
}
