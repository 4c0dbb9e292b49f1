package capture

/*
#cgo !windows pkg-config: opencv4
#cgo CXXFLAGS: --std=c++11
#include <stdlib.h>
#include "align.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"
	"os"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"gocv.io/x/gocv"
)

// Registration motions (`capture.align.motion`).
const (
	MotionTranslation = "translation" // shift only
	MotionEuclidean   = "euclidean"   // shift and rotation (a part on a conveyor)
	MotionAffine      = "affine"      // shift, rotation, scale and shear (a camera not square to the part)
)

// Registration methods (`capture.align.method`).
const (
	MethodECC      = "ecc"      // intensity-based, coarse to fine: precise, small motion
	MethodFeatures = "features" // ORB keypoints + RANSAC, then one ECC level: large motion
)

// ErrNotLocated marks a frame whose part fixturing could not find: the
// registration failed, scored below min_score or moved beyond search. The
// model fails the part closed with reason code not_located.
var ErrNotLocated = errors.New("part not located")

// MaxAlignAngle is the largest rotation (degrees, either way) a located
// part may have. ECC's basin of convergence ends around there, and a part
// turned further is more likely lying wrong (flipped, on its side) than
// jittered: it is failed closed rather than warped a long way.
const MaxAlignAngle = 20.0

// alignWorkSide is the longer side of the grey image the registration runs
// on. At 64 px ECC (two pyramid levels, 64 and 32) stays under the 1.5 ms
// budget for a 256x256 frame, about half the time at 96 px; ECC is
// sub-pixel, and the known-motion tests still recover shifts within 0.05 px
// of 256 and turns within 0.05 degrees.
const alignWorkSide = 64

// alignMinLevel is the smallest side of a pyramid level: below it there is
// too little structure left for the coarse estimate.
const alignMinLevel = 24

// AlignConfig is fixturing (`capture.align`): every preprocessed frame is
// registered to a reference part image and warped into the reference pose
// before the detectors, so the static mask, the variation model and
// PatchCore's memory see the part where they learned it. Empty Reference
// switches it off. See docs/fixturing.md.
type AlignConfig struct {
	// Reference is the image of a good part in the pose the models were
	// trained in; it is preprocessed like every frame (ROI, resize, colour).
	Reference string `yaml:"reference"`
	// Motion: translation, euclidean (default) or affine.
	Motion string `yaml:"motion"`
	// Method: ecc (default) or features.
	Method string `yaml:"method"`
	// MinScore is the lowest registration score (ECC correlation, 0..1)
	// that counts as located (default 0.8).
	MinScore float64 `yaml:"min_score"`
	// Search is the largest shift, as a fraction of the frame's width and
	// height, that counts as located (default 0.15).
	Search float64 `yaml:"search"`
	// Smooth is the sigma of the Gaussian blur applied to the reference and
	// every frame at the working size before registration, as a fraction of
	// the working image's longer side (default DefaultAlignSmooth). It
	// washes out texture that differs between good parts so registration
	// follows the part's body; 0.004 (under 0.3 px) switches the blur off.
	Smooth float64 `yaml:"smooth"`
}

// DefaultAlignSmooth is capture.align.smooth's default: 3.2 px at the 64 px
// working size, enough to wash out texture a few pixels across, while the
// known-motion tests still recover shifts and turns within their tolerance
// (at 0.1 an affine turn of 2.5 degrees came out as 2.95). On the MVTec tire
// it changed neither the poses found nor the acceptance figures beyond their
// noise (docs/fixturing.md): the tires' own poses differ.
const DefaultAlignSmooth = 0.05

// Enabled reports whether fixturing is configured.
func (a AlignConfig) Enabled() bool { return a.Reference != "" }

// Defaults fills the unset keys.
func (a *AlignConfig) Defaults() {
	if a.Motion == "" {
		// Parts on a conveyor turn as well as shift; euclidean costs about
		// as much as translation (benchmarks in README).
		a.Motion = MotionEuclidean
	}
	if a.Method == "" {
		a.Method = MethodECC
	}
	if a.MinScore == 0 {
		a.MinScore = 0.8
	}
	if a.Search == 0 {
		a.Search = 0.15
	}
	if a.Smooth == 0 {
		a.Smooth = DefaultAlignSmooth
	}
}

// validate returns one error per bad key (key: problem). The reference is
// read and decoded through the guarded reader, so a missing, corrupt or
// oversized file is a configuration error, not a failure of the first frame.
func (a AlignConfig) validate() []error {
	errs := a.validateKeys()
	if a.Enabled() {
		m, err := ReadImage(a.Reference)
		if err != nil {
			errs = append(errs, fmt.Errorf("align.reference: %v (a readable image of a good part in the trained pose)", err))
		} else {
			m.Close()
		}
	}
	return errs
}

// validateKeys checks the keys without touching the reference file.
func (a AlignConfig) validateKeys() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("align.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	switch a.Motion {
	case MotionTranslation, MotionEuclidean, MotionAffine:
	default:
		bad("motion", "unknown motion %q: want translation, euclidean or affine", a.Motion)
	}
	switch a.Method {
	case MethodECC, MethodFeatures:
	default:
		bad("method", "unknown method %q: want ecc or features", a.Method)
	}
	if math.IsNaN(a.MinScore) || a.MinScore <= 0 || a.MinScore > 1 {
		bad("min_score", "%v is outside (0, 1]", a.MinScore)
	}
	if math.IsNaN(a.Search) || a.Search <= 0 || a.Search > 0.5 {
		bad("search", "%v is outside (0, 0.5] (a fraction of the frame size)", a.Search)
	}
	if math.IsNaN(a.Smooth) || a.Smooth <= 0 || a.Smooth > 0.25 {
		bad("smooth", "%v is outside (0, 0.25] (a fraction of the working image's longer side)", a.Smooth)
	}
	return errs
}

// Alignment is where fixturing found the part in one frame. Warp maps
// reference (Frame.Image) coordinates to coordinates in the preprocessed
// frame before it was warped; the audit overlay uses it to draw maps in
// the original frame.
type Alignment struct {
	// DX, DY: the part's shift from the reference, in preprocessed pixels,
	// measured at the image centre. Angle: its rotation in degrees,
	// counter-clockwise on screen (OpenCV's getRotationMatrix2D sense).
	DX, DY, Angle float64
	// Score is the registration's quality: ECC's correlation coefficient
	// of the frame warped into the reference pose with the reference, at
	// the working size (0..1; 0 when registration failed).
	Score float64
	// Warp is the 2x3 row-major affine map from reference to frame pixels.
	Warp [6]float64
	// Size is the preprocessed frame's size, the pixels Warp is in.
	Size image.Point
	// Err, when set, wraps ErrNotLocated: the part was not found and
	// Frame.Image is the unwarped frame.
	Err error
}

// Located reports whether the part was found.
func (a *Alignment) Located() bool { return a != nil && a.Err == nil }

// aligner registers preprocessed frames to one reference. It is read-only
// after construction and shared by every source and decode with the same
// settings (see referenceCache).
type aligner struct {
	cfg    AlignConfig
	size   image.Point // preprocessed frame size
	work   image.Point // working size (level 0 of the pyramid)
	levels []alignLevel
	motion int     // cv::MOTION_*
	sigma  float64 // blur of the working image, working pixels (align.smooth)
	// features method: the reference's ORB keypoints (preprocessed pixels)
	// and descriptors (rows of 32 bytes).
	refPts  []gocv.Point2f
	refDesc []byte
}

// alignLevel is one pyramid level of the reference: grey bytes, tightly packed.
type alignLevel struct {
	w, h int
	pix  []byte
}

// referenceCache holds one aligner per reference file and preprocessing, so
// the reference is read once per process and not once per decoded frame
// (DecodeFrame builds a preprocessor per call). The file's size and
// modification time are part of the key: a replaced reference is re-read.
var referenceCache struct {
	sync.Mutex
	m map[string]*aligner
}

// maxCachedReferences bounds referenceCache; references are a few KiB of Go
// memory, so dropping the oldest simply lets the GC have them.
const maxCachedReferences = 16

// newAligner returns the (cached) aligner for pc, or nil when fixturing is off.
func newAligner(pc PreprocessConfig, base *preprocessor) (*aligner, error) {
	a := pc.Align
	if !a.Enabled() {
		return nil, nil
	}
	a.Defaults()
	// The keys only: the reference is read once, on a cache miss below, by
	// loadAligner (DecodeFrame builds a preprocessor for every upload).
	if errs := a.validateKeys(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	st, err := os.Stat(a.Reference)
	if err != nil {
		return nil, fmt.Errorf("align.reference: %w", err)
	}
	key := fmt.Sprintf("%q|%d|%d|%+v|%dx%d|%s|%v|%s|%s", a.Reference, st.Size(), st.ModTime().UnixNano(), a,
		pc.Width, pc.Height, pc.Interpolation, pc.ROI, pc.Color, a.Method)
	referenceCache.Lock()
	defer referenceCache.Unlock()
	if al := referenceCache.m[key]; al != nil {
		return al, nil
	}
	al, err := loadAligner(a, base)
	if err != nil {
		return nil, err
	}
	if referenceCache.m == nil || len(referenceCache.m) >= maxCachedReferences {
		referenceCache.m = map[string]*aligner{}
	}
	referenceCache.m[key] = al
	return al, nil
}

// loadAligner reads the reference through the guarded reader and
// preprocesses it exactly like a frame, then builds its grey pyramid.
func loadAligner(a AlignConfig, base *preprocessor) (*aligner, error) {
	orig, err := ReadImage(a.Reference)
	if err != nil {
		return nil, fmt.Errorf("align.reference: %w", err)
	}
	defer orig.Close()
	img, err := base.apply(orig)
	if err != nil {
		return nil, fmt.Errorf("align.reference %s: preprocess: %w", safePath(a.Reference), err)
	}
	defer img.Close()
	al := &aligner{cfg: a, size: base.size, motion: cvMotion(a.Motion)}
	// The working image has the camera's aspect (the reference's, after the
	// ROI), not the preprocessed frame's: a part turning in front of the
	// camera is a rotation there, while a 300x400 frame resized to 256x256
	// turns it into a shear that euclidean motion cannot follow.
	view := image.Pt(orig.Cols(), orig.Rows())
	if base.roi != nil {
		view = base.roi.Size()
	}
	al.work = workSize(view)
	al.sigma = a.Smooth * float64(max(al.work.X, al.work.Y))
	grey := toGrey(img)
	defer grey.Close()
	pyr, variance := al.pyramid(grey)
	for _, m := range pyr {
		b, err := m.DataPtrUint8()
		if err != nil || !m.IsContinuous() {
			closeAll(pyr)
			return nil, fmt.Errorf("align.reference %s: pyramid level not continuous", safePath(a.Reference))
		}
		al.levels = append(al.levels, alignLevel{w: m.Cols(), h: m.Rows(), pix: append([]byte(nil), b...)})
	}
	closeAll(pyr)
	if variance < 4 {
		return nil, fmt.Errorf("align.reference %s: the image is (nearly) uniform: registration needs a textured part", safePath(a.Reference))
	}
	if a.Method == MethodFeatures {
		pts, desc, err := orbFeatures(grey)
		if err != nil {
			return nil, fmt.Errorf("align.reference %s: %w", safePath(a.Reference), err)
		}
		if len(pts) < minFeatureMatches {
			return nil, fmt.Errorf("align.reference %s: only %d ORB keypoints, need %d for method features (use method ecc)", safePath(a.Reference), len(pts), minFeatureMatches)
		}
		al.refPts, al.refDesc = pts, desc
	}
	return al, nil
}

func cvMotion(m string) int {
	switch m {
	case MotionTranslation:
		return gocv.MotionTranslation
	case MotionAffine:
		return gocv.MotionAffine
	}
	return gocv.MotionEuclidean
}

// workSize scales size so its longer side is at most alignWorkSide.
func workSize(size image.Point) image.Point {
	long := max(size.X, size.Y)
	s := float64(alignWorkSide) / float64(long)
	return image.Pt(max(1, int(math.Round(float64(size.X)*s))), max(1, int(math.Round(float64(size.Y)*s))))
}

func toGrey(img gocv.Mat) gocv.Mat {
	g := gocv.NewMat()
	gocv.CvtColor(img, &g, gocv.ColorBGRToGray)
	return g
}

// pyramid returns the working-size grey image and its halvings, finest
// first. INTER_AREA halves exactly, which the warp conversion between
// levels assumes.
func (al *aligner) pyramid(grey gocv.Mat) ([]gocv.Mat, float64) {
	first := gocv.NewMat()
	switch {
	case al.work == al.size:
		grey.CopyTo(&first)
	case al.work.X <= al.size.X && al.work.Y <= al.size.Y:
		gocv.Resize(grey, &first, al.work, 0, 0, gocv.InterpolationArea)
	default: // a side grows (a frame smaller than the working size)
		gocv.Resize(grey, &first, al.work, 0, 0, gocv.InterpolationLinear)
	}
	// The blank check reads the image before the blur: a strong blur of a
	// good part would look uniform.
	variance := varianceOf(matBytes(first))
	if al.sigma >= 0.3 {
		// Below 0.3 px the kernel is nearly the identity: skip the pass.
		gocv.GaussianBlur(first, &first, image.Point{}, al.sigma, al.sigma, gocv.BorderReplicate)
	}
	out := []gocv.Mat{first}
	for len(out) < 4 {
		last := out[len(out)-1]
		w, h := last.Cols()/2, last.Rows()/2
		if min(w, h) < alignMinLevel {
			break
		}
		next := gocv.NewMat()
		gocv.Resize(last, &next, image.Pt(w, h), 0, 0, gocv.InterpolationArea)
		out = append(out, next)
	}
	return out, variance
}

func closeAll(ms []gocv.Mat) {
	for i := range ms {
		ms[i].Close()
	}
}

func varianceOf(p []byte) float64 {
	var s, s2 float64
	for _, v := range p {
		f := float64(v)
		s += f
		s2 += f * f
	}
	n := float64(len(p))
	return s2/n - (s/n)*(s/n)
}

// ECC's iteration budget per level, coarse to fine: the coarse levels do
// the travelling, the fine ones only polish.
var eccIters = []int{5, 10, 15, 20}

const eccEps = 1e-2

// eccGauss is the Gaussian smoothing ECC applies to both images (pixels,
// odd): the pyramid's INTER_AREA already low-passes, so a small kernel.
const eccGauss = 3

// locate registers img (a preprocessed 8UC3 frame) to the reference and, if
// the part was found, replaces img with the frame warped into the reference
// pose. It never fails: a part it cannot find gets an Alignment whose Err
// wraps ErrNotLocated, and img is left as it was.
func (al *aligner) locate(img *gocv.Mat) *Alignment {
	grey := toGrey(*img)
	defer grey.Close()
	pyr, variance := al.pyramid(grey)
	defer closeAll(pyr)
	res := &Alignment{Size: al.size}
	if variance < 4 {
		res.Err = fmt.Errorf("%w: the frame is blank (no texture to register)", ErrNotLocated)
		return res
	}
	w := [6]float64{1, 0, 0, 0, 1, 0} // working coordinates, level 0
	top := len(pyr) - 1
	if al.cfg.Method == MethodFeatures {
		fw, err := al.featureWarp(grey)
		if err != nil {
			res.Err = fmt.Errorf("%w: %v", ErrNotLocated, err)
			return res
		}
		w = fw  // featureWarp works in working pixels
		top = 0 // features give a close start: polish at the finest level only
	}
	var rho float64
	for lvl := top; lvl >= 0; lvl-- {
		lw := w
		for k := 0; k < lvl; k++ {
			lw = scaleWarp(lw, image.Pt(pyr[k].Cols(), pyr[k].Rows()), image.Pt(pyr[k+1].Cols(), pyr[k+1].Rows()))
		}
		var err error
		start := lw
		rho, err = al.ecc(lvl, pyr[lvl], &lw)
		if err != nil && lvl > 0 {
			// A coarse level has too little left of a fine-textured part to
			// converge on; the finer levels start from where it began and
			// decide.
			lw = start
		} else if err != nil {
			res.Err = fmt.Errorf("%w: registration did not converge (%v)", ErrNotLocated, err)
			return res
		}
		for k := lvl; k > 0; k-- {
			lw = scaleWarp(lw, image.Pt(pyr[k].Cols(), pyr[k].Rows()), image.Pt(pyr[k-1].Cols(), pyr[k-1].Rows()))
		}
		w = lw
	}
	res.Warp = scaleWarp(w, al.work, al.size)
	res.DX, res.DY, _ = poseOf(res.Warp, al.size)
	// The turn in the working image, whose pixels are square.
	_, _, res.Angle = poseOf(w, al.work)
	res.Score = math.Max(0, rho)
	if err := al.check(res); err != nil {
		res.Err = err
		return res
	}
	warped, err := warpInto(*img, res.Warp, al.size)
	if err != nil {
		res.Err = fmt.Errorf("%w: %v", ErrNotLocated, err)
		return res
	}
	img.Close()
	*img = warped
	return res
}

// check applies min_score and the search bounds.
func (al *aligner) check(a *Alignment) error {
	c := al.cfg
	switch {
	case math.IsNaN(a.Score) || a.Score < c.MinScore:
		return fmt.Errorf("%w: registration score %.3f is below min_score %.3f (wrong or missing part?)", ErrNotLocated, a.Score, c.MinScore)
	case math.Abs(a.DX) > c.Search*float64(al.size.X) || math.Abs(a.DY) > c.Search*float64(al.size.Y):
		return fmt.Errorf("%w: shift (%.1f, %.1f) px exceeds search %.2f of the %dx%d frame (part out of place or half out of view?)",
			ErrNotLocated, a.DX, a.DY, c.Search, al.size.X, al.size.Y)
	case math.Abs(a.Angle) > MaxAlignAngle:
		return fmt.Errorf("%w: rotation %.1f degrees exceeds %.0f", ErrNotLocated, a.Angle, MaxAlignAngle)
	}
	if al.motion == gocv.MotionAffine {
		// Scale and shear bounded like the shift: a part that grew by a
		// third is a different part or a moved camera.
		sx := math.Hypot(a.Warp[0], a.Warp[3])
		sy := math.Hypot(a.Warp[1], a.Warp[4])
		lo, hi := 1/(1+c.Search), 1+c.Search
		if sx < lo || sx > hi || sy < lo || sy > hi {
			return fmt.Errorf("%w: scale (%.2f, %.2f) is outside %.2f..%.2f", ErrNotLocated, sx, sy, lo, hi)
		}
	}
	return nil
}

// ecc runs the guarded findTransformECC of one pyramid level.
func (al *aligner) ecc(lvl int, in gocv.Mat, w *[6]float64) (float64, error) {
	ref := al.levels[lvl]
	iters := eccIters[min(lvl, len(eccIters)-1)]
	var rho C.double
	var cw [6]C.double
	for i := range w {
		cw[i] = C.double(w[i])
	}
	var errBuf [512]C.char
	rc := C.segad_ecc((*C.uchar)(unsafe.Pointer(&ref.pix[0])), C.int(ref.w), C.int(ref.h), unsafe.Pointer(in.Ptr()),
		C.int(al.motion), C.int(iters), C.double(eccEps), C.int(eccGauss), &cw[0], &rho, &errBuf[0], C.size_t(len(errBuf)))
	runtime.KeepAlive(ref.pix)
	if rc != 0 {
		return 0, errors.New(firstLine(C.GoString(&errBuf[0])))
	}
	for i := range w {
		w[i] = float64(cw[i])
	}
	if r := float64(rho); math.IsNaN(r) || math.IsInf(r, 0) {
		return 0, fmt.Errorf("correlation %v", r)
	}
	return float64(rho), nil
}

// firstLine shortens OpenCV's multi-line exception text for logs.
func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

func matBytes(m gocv.Mat) []byte {
	b, err := m.DataPtrUint8()
	if err != nil {
		return nil
	}
	return b
}

// scaleWarp converts a reference-to-frame warp from images of size from to
// images of size to (same content, resized). Pixel centres map as
// x' = s*x + (s-1)/2, which is what INTER_AREA and INTER_LINEAR do.
func scaleWarp(w [6]float64, from, to image.Point) [6]float64 {
	sx, sy := float64(to.X)/float64(from.X), float64(to.Y)/float64(from.Y)
	ox, oy := (sx-1)/2, (sy-1)/2
	// A' = S A S^-1; t' = S t + o - A' o.
	a00, a01, a10, a11 := w[0], w[1]*sx/sy, w[3]*sy/sx, w[4]
	tx := sx*w[2] + ox - (a00*ox + a01*oy)
	ty := sy*w[5] + oy - (a10*ox + a11*oy)
	return [6]float64{a00, a01, tx, a10, a11, ty}
}

// poseOf reads shift (at the image centre) and rotation from a warp.
func poseOf(w [6]float64, size image.Point) (dx, dy, angle float64) {
	cx, cy := float64(size.X-1)/2, float64(size.Y-1)/2
	dx = w[0]*cx + w[1]*cy + w[2] - cx
	dy = w[3]*cx + w[4]*cy + w[5] - cy
	angle = math.Atan2(w[1], w[0]) * 180 / math.Pi
	return dx, dy, angle
}

// warpMat builds OpenCV's 2x3 CV_64F matrix.
func warpMat(w [6]float64) gocv.Mat {
	m := gocv.NewMatWithSize(2, 3, gocv.MatTypeCV64F)
	for i, v := range w {
		m.SetDoubleAt(i/3, i%3, v)
	}
	return m
}

// warpInto resamples img into the reference pose: out(x) = img(W x).
// INTER_LINEAR keeps the cost at one pass; BORDER_REPLICATE fills the strip
// the part moved away from with the frame's own edge, because a constant
// black strip is a strong, straight edge that the variation model and
// PatchCore score as an anomaly in every border segment.
func warpInto(img gocv.Mat, w [6]float64, size image.Point) (gocv.Mat, error) {
	m := warpMat(w)
	defer m.Close()
	out := gocv.NewMat()
	gocv.WarpAffineWithParams(img, &out, m, size, gocv.InterpolationLinear|gocv.WarpInverseMap, gocv.BorderReplicate, color.RGBA{})
	if out.Empty() {
		out.Close()
		return gocv.Mat{}, errors.New("warp gave an empty image")
	}
	return out, nil
}

// WarpAt is Warp for images of another size with the same content (an
// anomaly map, a mask): the reference-to-frame map in that size's pixels.
func (a *Alignment) WarpAt(size image.Point) [6]float64 {
	if a.Size == size || a.Size.X <= 0 || a.Size.Y <= 0 {
		return a.Warp
	}
	return scaleWarp(a.Warp, a.Size, size)
}

// UnwarpToFrame maps an image in the reference pose (a heatmap or mask
// overlay of Frame.Image's size) back into the frame's own pose, for audit
// overlays drawn on the original frame; m may have any size (a map at its
// own resolution). Pixels outside the reference's view are zero (border
// constant). Linear interpolation: use UnwarpNearest for label images.
func (a *Alignment) UnwarpToFrame(m gocv.Mat) (gocv.Mat, error) {
	if !a.Located() {
		return gocv.Mat{}, errors.New("unwarp: frame was not located")
	}
	wm := warpMat(a.WarpAt(image.Pt(m.Cols(), m.Rows())))
	defer wm.Close()
	out := gocv.NewMat()
	// Without WARP_INVERSE_MAP, warpAffine treats Warp as the forward map
	// (reference to frame), which is the inverse of the warp applied in locate.
	gocv.WarpAffineWithParams(m, &out, wm, image.Pt(m.Cols(), m.Rows()), gocv.InterpolationLinear, gocv.BorderConstant, color.RGBA{})
	if out.Empty() {
		out.Close()
		return gocv.Mat{}, errors.New("unwarp gave an empty image")
	}
	return out, nil
}

// UnwarpNearest is UnwarpToFrame for label images (a segment mask):
// nearest neighbour, and border, the label outside the reference's view.
func (a *Alignment) UnwarpNearest(m gocv.Mat, border uint8) (gocv.Mat, error) {
	if !a.Located() {
		return gocv.Mat{}, errors.New("unwarp: frame was not located")
	}
	wm := warpMat(a.WarpAt(image.Pt(m.Cols(), m.Rows())))
	defer wm.Close()
	out := gocv.NewMat()
	gocv.WarpAffineWithParams(m, &out, wm, image.Pt(m.Cols(), m.Rows()), gocv.InterpolationNearestNeighbor, gocv.BorderConstant,
		color.RGBA{R: border, G: border, B: border, A: border})
	if out.Empty() {
		out.Close()
		return gocv.Mat{}, errors.New("unwarp gave an empty image")
	}
	return out, nil
}

// SetOpenCVThreads sets OpenCV's worker thread count (cv::setNumThreads)
// and returns the previous one. Benchmarks use it to measure one core.
func SetOpenCVThreads(n int) int { return int(C.segad_set_num_threads(C.int(n))) }
