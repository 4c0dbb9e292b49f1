package daemon

import (
	"bytes"
	"image"
	"image/color"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/result"
)

// TestHTTPInspectFixturing: with capture.align, an upload to /inspect is
// registered through the same preprocessing as the line's source: a part
// moved by (8, -6) camera pixels is inspected and its result carries the
// pose; a blank upload fails closed with not_located.
func TestHTTPInspectFixturing(t *testing.T) {
	ref := partImage(newRand(), false)
	defer ref.Close()
	refPath := filepath.Join(t.TempDir(), "ref.png")
	if err := capture.WriteImage(refPath, ref); err != nil {
		t.Fatal(err)
	}
	d, _, _ := newTestDaemon(t, 1, "meanstd_blur.onnx", "1000", func(c *config.Config) {
		c.Capture.Align = capture.AlignConfig{Reference: refPath, Motion: capture.MotionTranslation}
		c.Capture.Defaults() // as config.Load does: copies capture.align into the preprocessing
	})
	defer d.Close()
	srv := httptest.NewServer(d.Handler("tok"))
	defer srv.Close()
	post := func(m gocv.Mat) result.Result {
		buf, err := gocv.IMEncode(gocv.PNGFileExt, m)
		if err != nil {
			t.Fatal(err)
		}
		defer buf.Close()
		req, _ := http.NewRequest("POST", srv.URL+"/inspect", bytes.NewReader(buf.GetBytes()))
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var r result.Result
		if err := r.UnmarshalJSON(b); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		return r
	}
	shift := gocv.NewMatWithSize(2, 3, gocv.MatTypeCV64F)
	defer shift.Close()
	for i, v := range []float64{1, 0, 8, 0, 1, -6} {
		shift.SetDoubleAt(i/3, i%3, v)
	}
	moved := gocv.NewMat()
	defer moved.Close()
	gocv.WarpAffineWithParams(ref, &moved, shift, image.Pt(ref.Cols(), ref.Rows()), gocv.InterpolationLinear, gocv.BorderReplicate, color.RGBA{})
	r := post(moved)
	if r.Verdict == result.VerdictError || r.Pose == nil {
		t.Fatalf("moved part: verdict %s (%s), pose %v", r.Verdict, r.Reason, r.Pose)
	}
	// The frame is the detector's input size; the shift scales with it.
	in := d.insp.Model().Preprocess(d.cfg.Capture.Preprocess)
	wantX, wantY := 8*float64(in.Width)/float64(ref.Cols()), -6*float64(in.Height)/float64(ref.Rows())
	if math.Abs(r.Pose.DX-wantX) > 0.5 || math.Abs(r.Pose.DY-wantY) > 0.5 || r.Pose.Score < 0.8 {
		t.Fatalf("pose %+v, want (%.2f, %.2f) with a score over 0.8", *r.Pose, wantX, wantY)
	}
	blank := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(90, 110, 120, 0), ref.Rows(), ref.Cols(), gocv.MatTypeCV8UC3)
	defer blank.Close()
	if r := post(blank); r.Verdict != result.VerdictError || r.ReasonCode != result.ReasonNotLocated {
		t.Fatalf("blank upload: verdict %s code %q (%s), want error not_located", r.Verdict, r.ReasonCode, r.Reason)
	}
}
