package audit

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/result"
	"github.com/segad-edge/segad-edge/segad"
)

// TestAuditErrorFrames: every kind of frame the pipeline can hand the
// audit (zero Mat of an error frame, released Mat of a dropped one, empty,
// gray, 16-bit, BGRA, float) is saved without crashing: the JSON record
// always, the image only when there is one that can be shown.
func TestAuditErrorFrames(t *testing.T) {
	mask := segad.VADTemplate(32, 32, segad.DefaultVADGeometry())
	mp := make([]float32, 32*32)
	mk := func(typ gocv.MatType) gocv.Mat {
		return gocv.NewMatWithSizeFromScalar(gocv.NewScalar(100, 100, 100, 255), 48, 64, typ)
	}
	cases := []struct {
		name     string
		mat      func() gocv.Mat
		maps     [][]float32
		image    bool
		imageErr bool
	}{
		{"zero mat (error frame)", func() gocv.Mat { return gocv.Mat{} }, nil, false, false},
		{"empty mat", gocv.NewMat, nil, false, false},
		{"released (dropped frame)", func() gocv.Mat {
			f := capture.Frame{Original: mk(gocv.MatTypeCV8UC3)}
			f.ReleaseImages()
			return f.Original
		}, nil, false, false},
		{"bgr", func() gocv.Mat { return mk(gocv.MatTypeCV8UC3) }, [][]float32{mp}, true, false},
		{"gray", func() gocv.Mat { return mk(gocv.MatTypeCV8UC1) }, [][]float32{mp}, true, false},
		{"bgra", func() gocv.Mat { return mk(gocv.MatTypeCV8UC4) }, [][]float32{mp}, true, false},
		{"16-bit gray", func() gocv.Mat { return mk(gocv.MatTypeCV16UC1) }, [][]float32{mp}, true, false},
		{"float", func() gocv.Mat { return mk(gocv.MatTypeCV32FC3) }, nil, false, true},
		{"map of the wrong size", func() gocv.Mat { return mk(gocv.MatTypeCV8UC3) }, [][]float32{mp[:10]}, true, false},
	}
	a, err := Open(t.TempDir(), 0, 0, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := c.mat()
			defer func() {
				if m.Ptr() != nil {
					m.Close()
				}
			}()
			res := &result.Result{ID: fmt.Sprintf("r%d", i), DecidedAt: time.Now(), Verdict: result.VerdictError, ReasonCode: result.ReasonCapture}
			err := a.Save(res, m, c.maps, 32, 32, mask)
			if (err != nil) != c.imageErr {
				t.Fatalf("Save: %v (want an error: %v)", err, c.imageErr)
			}
			day := filepath.Join(a.dir, res.DecidedAt.UTC().Format("2006-01-02"))
			js, err := os.ReadFile(filepath.Join(day, res.ID+".json"))
			if err != nil {
				t.Fatalf("no JSON record: %v", err)
			}
			var back result.Result
			if err := json.Unmarshal(js, &back); err != nil || back.ReasonCode != result.ReasonCapture {
				t.Fatalf("JSON record %s: %v", js, err)
			}
			_, err = os.Stat(filepath.Join(day, res.ID+".jpg"))
			if (err == nil) != c.image {
				t.Errorf("image written: %v, want %v", err == nil, c.image)
			}
		})
	}
}
