package capture

/*
#include <stdlib.h>
#include "align.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"unsafe"

	"gocv.io/x/gocv"
)

// minFeatureMatches is the fewest ratio-test matches the features method
// fits a motion to; fewer is a part it cannot see.
const minFeatureMatches = 8

// orbFeatures detects ORB keypoints on a grey image and returns their
// positions and descriptors (32 bytes each), copied into Go memory.
func orbFeatures(grey gocv.Mat) ([]gocv.Point2f, []byte, error) {
	// 500 features, 8 levels (1.2): ORB's defaults, with a smaller edge
	// threshold and patch so small (256 px) frames keep keypoints near the
	// border.
	orb := gocv.NewORBWithParams(500, 1.2, 8, 15, 0, 2, gocv.ORBScoreTypeHarris, 15, 10)
	defer orb.Close()
	mask := gocv.NewMat()
	defer mask.Close()
	kps, desc := orb.DetectAndCompute(grey, mask)
	defer desc.Close()
	if len(kps) == 0 || desc.Empty() {
		return nil, nil, nil
	}
	if desc.Rows() != len(kps) || desc.Cols() != 32 || desc.Type() != gocv.MatTypeCV8U {
		return nil, nil, fmt.Errorf("ORB gave %dx%d descriptors of type %v for %d keypoints", desc.Rows(), desc.Cols(), desc.Type(), len(kps))
	}
	b, err := desc.DataPtrUint8()
	if err != nil {
		return nil, nil, fmt.Errorf("ORB descriptors: %w", err)
	}
	pts := make([]gocv.Point2f, len(kps))
	for i, k := range kps {
		pts[i] = gocv.Point2f{X: float32(k.X), Y: float32(k.Y)}
	}
	return pts, append([]byte(nil), b...), nil
}

// featureWarp estimates the reference-to-frame warp (working pixels)
// from ORB matches: a ratio test (0.8), then RANSAC (3 px) for euclidean
// (a similarity with its scale removed) and affine, and the median shift of
// the matches for translation.
func (al *aligner) featureWarp(grey gocv.Mat) ([6]float64, error) {
	var none [6]float64
	pts, desc, err := orbFeatures(grey)
	if err != nil {
		return none, err
	}
	if len(pts) < minFeatureMatches {
		return none, fmt.Errorf("only %d ORB keypoints in the frame (blank or featureless?)", len(pts))
	}
	qd, err := gocv.NewMatFromBytes(len(al.refPts), 32, gocv.MatTypeCV8U, al.refDesc)
	if err != nil {
		return none, err
	}
	defer qd.Close()
	td, err := gocv.NewMatFromBytes(len(pts), 32, gocv.MatTypeCV8U, desc)
	if err != nil {
		return none, err
	}
	defer td.Close()
	bf := gocv.NewBFMatcherWithParams(gocv.NormHamming, false)
	defer bf.Close()
	var from, to []float32
	for _, m := range bf.KnnMatch(qd, td, 2) {
		if len(m) < 2 || float64(m[0].Distance) > 0.8*float64(m[1].Distance) {
			continue
		}
		r, f := al.refPts[m[0].QueryIdx], pts[m[0].TrainIdx]
		from = append(from, r.X, r.Y)
		to = append(to, f.X, f.Y)
	}
	n := len(from) / 2
	// Fit in working pixels (the camera's aspect, square pixels): a
	// similarity there is the part's rotation, in the resized frame not.
	sx, sy := float32(al.work.X)/float32(al.size.X), float32(al.work.Y)/float32(al.size.Y)
	for _, pts := range [][]float32{from, to} {
		for i := 0; i < len(pts); i += 2 {
			pts[i] = sx*pts[i] + (sx-1)/2
			pts[i+1] = sy*pts[i+1] + (sy-1)/2
		}
	}
	if n < minFeatureMatches {
		return none, fmt.Errorf("only %d feature matches with the reference, need %d (wrong part?)", n, minFeatureMatches)
	}
	if al.motion == gocv.MotionTranslation {
		dx, dy := make([]float64, n), make([]float64, n)
		for i := 0; i < n; i++ {
			dx[i], dy[i] = float64(to[2*i]-from[2*i]), float64(to[2*i+1]-from[2*i+1])
		}
		return [6]float64{1, 0, median(dx), 0, 1, median(dy)}, nil
	}
	var cw [6]C.double
	var errBuf [512]C.char
	partial := C.int(0)
	if al.motion == gocv.MotionEuclidean {
		partial = 1
	}
	inl := C.segad_estimate_affine((*C.float)(unsafe.Pointer(&from[0])), (*C.float)(unsafe.Pointer(&to[0])), C.int(n), partial, C.double(3*sx),
		&cw[0], &errBuf[0], C.size_t(len(errBuf)))
	if inl < 0 {
		return none, fmt.Errorf("fit to feature matches: %s", firstLine(C.GoString(&errBuf[0])))
	}
	if int(inl) < minFeatureMatches {
		return none, fmt.Errorf("only %d of %d feature matches agree on one motion (wrong part?)", int(inl), n)
	}
	var w [6]float64
	for i := range w {
		w[i] = float64(cw[i])
	}
	if partial == 1 {
		// estimateAffinePartial2D fits a similarity; euclidean motion has no
		// scale, so keep the rotation and let ECC polish the rest.
		s := math.Hypot(w[0], w[3])
		if s == 0 || math.IsNaN(s) {
			return none, errors.New("degenerate feature fit")
		}
		w[0], w[1], w[3], w[4] = w[0]/s, w[1]/s, w[3]/s, w[4]/s
	}
	return w, nil
}

func median(v []float64) float64 {
	sort.Float64s(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}
