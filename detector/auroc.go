package detector

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/infer"
	"github.com/segad-edge/segad-edge/metrics"
)

// AUROCResult is the image-level evaluation of a model on a labelled folder.
type AUROCResult struct {
	Good, Bad int
	// AUROC of the map maximum, good vs bad.
	AUROC float64
}

// OpenModel opens a model written by this package through the infer stage,
// with the preprocessing it was fitted with (RGB, 1/255, size x size) and
// no extra post-processing (the graph blurs already). infer.Init must have
// run.
func OpenModel(name, path string, size int) (*infer.Detector, error) {
	return infer.Open(infer.DetectorConfig{Name: name, Model: path, PreprocessConfig: ModelPreprocess(size)})
}

// RunImage decodes an encoded image with capture's preprocessing and runs d
// on it: the daemon's path for one frame. The returned map is a copy.
func RunImage(d *infer.Detector, data []byte, what string) ([]float32, error) {
	s := d.InputSize()
	f := capture.DecodeFrame(data, framePreprocess(s.Width))
	defer f.Close()
	if f.Err != nil {
		return nil, fmt.Errorf("%s: not a readable image file: %w", what, f.Err)
	}
	pix, w, h, stride, err := f.Pixels()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	out, err := d.Run(infer.Image{Width: w, Height: h, Stride: stride, Pix: pix})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return append([]float32(nil), out.Map...), nil
}

// FolderAUROC runs the ONNX model file through the infer stage on every image
// of an MVTec-style test folder (test/<class>/[rgb/]*.png, class "good" is
// negative, every other class positive) and returns the image-level AUROC of
// the map maximum (metrics.AUROC, sklearn semantics).
func FolderAUROC(modelPath string, size int, testDir string) (AUROCResult, error) {
	classes, err := os.ReadDir(testDir)
	if err != nil {
		return AUROCResult{}, fmt.Errorf("evaluate on %s: %w", testDir, err)
	}
	d, err := OpenModel("eval", modelPath, size)
	if err != nil {
		return AUROCResult{}, fmt.Errorf("evaluate: %w", err)
	}
	defer d.Close()
	var scores []float64
	var labels []bool
	var res AUROCResult
	names := make([]string, 0, len(classes))
	for _, c := range classes {
		if c.IsDir() {
			names = append(names, c.Name())
		}
	}
	sort.Strings(names)
	for _, c := range names {
		dir := filepath.Join(testDir, c)
		if st, err := os.Stat(filepath.Join(dir, "rgb")); err == nil && st.IsDir() {
			dir = filepath.Join(dir, "rgb")
		}
		paths, err := ListImages(dir, 1)
		if err != nil {
			return AUROCResult{}, fmt.Errorf("evaluate: %w", err)
		}
		for _, p := range paths {
			data, err := capture.ReadImageFile(p) // bounded by capture.limits.max_bytes
			if err != nil {
				return AUROCResult{}, fmt.Errorf("evaluate: %w", err)
			}
			m, err := RunImage(d, data, "evaluate "+p)
			if err != nil {
				return AUROCResult{}, err
			}
			scores = append(scores, float64(maxOf(m)))
			labels = append(labels, c != "good")
			if c == "good" {
				res.Good++
			} else {
				res.Bad++
			}
		}
	}
	res.AUROC, err = metrics.AUROC(scores, labels)
	if err != nil {
		return AUROCResult{}, fmt.Errorf("evaluate on %s: %w", testDir, err)
	}
	return res, nil
}

func maxOf(m []float32) float32 {
	best := m[0]
	for _, v := range m[1:] {
		if v > best {
			best = v
		}
	}
	return best
}
