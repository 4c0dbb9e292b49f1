package detector

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/capture"
)

// TestFitLeavesOutNotLocated: with fixturing, a training image whose part
// is not located (here a blank frame) is left out of the fit while such
// images are at most a tenth; more stop the fit with their count.
func TestFitLeavesOutNotLocated(t *testing.T) {
	paths := trainSubset(t, 20)
	dir := t.TempDir()
	blank := func(i int) string {
		m := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(20, 20, 20, 0), 400, 300, gocv.MatTypeCV8UC3)
		defer m.Close()
		p := filepath.Join(dir, fmt.Sprintf("blank%d.png", i))
		if err := capture.WriteImage(p, m); err != nil {
			t.Fatal(err)
		}
		return p
	}
	align := capture.AlignConfig{Reference: paths[0], Motion: capture.MotionEuclidean, MinScore: 0.6}
	align.Defaults()
	for _, tc := range []struct {
		blanks int
		want   string // "" = fitted
	}{
		{0, ""},
		{2, ""},
		{3, "3 of 23 training images not located"},
	} {
		t.Run(fmt.Sprint(tc.blanks), func(t *testing.T) {
			ps := append([]string(nil), paths...)
			for i := 0; i < tc.blanks; i++ {
				ps = append(ps, blank(i))
			}
			v, err := FitVariation(context.Background(), ps, VariationConfig{Align: align})
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "not located") {
					t.Fatalf("fit: %v, want an error with %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.NImages != len(paths) {
				t.Fatalf("fitted on %d images, want the %d tires", v.NImages, len(paths))
			}
		})
	}
}
