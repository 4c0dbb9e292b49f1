package demo

import (
	"bytes"
	"encoding/json"
	"image"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/segad"
)

const testSize = DefaultPartSize

func render(t *testing.T, g *PartGen, index uint64, kind DefectKind) ([]byte, PartInfo) {
	t.Helper()
	buf := make([]byte, 3*g.Size()*g.Size())
	info, err := g.RenderBGR(buf, index, kind)
	if err != nil {
		t.Fatal(err)
	}
	return buf, info
}

// diffPixels lists the pixels where any channel differs by more than tol.
func diffPixels(a, b []byte, tol int) []int {
	var out []int
	for i := 0; i < len(a)/3; i++ {
		for c := 0; c < 3; c++ {
			d := int(a[3*i+c]) - int(b[3*i+c])
			if d > tol || d < -tol {
				out = append(out, i)
				break
			}
		}
	}
	return out
}

func TestRenderIsDeterministic(t *testing.T) {
	a, b := NewPartGen(42, testSize), NewPartGen(42, testSize)
	for _, kind := range []DefectKind{PartGood, DefectCrack, DefectWireBentTooMuch} {
		ma, ia, err := a.Render(kind)
		if err != nil {
			t.Fatal(err)
		}
		mb, ib, err := b.Render(kind)
		if err != nil {
			t.Fatal(err)
		}
		pa, _ := ma.DataPtrUint8()
		pb, _ := mb.DataPtrUint8()
		if !bytes.Equal(pa, pb) || ia.Index != ib.Index || ia.BBox != ib.BBox {
			t.Errorf("%s: two generators with seed 42 rendered different parts", kind)
		}
		// The Mat holds exactly what RenderBGR writes.
		direct, _ := render(t, NewPartGen(42, testSize), ia.Index, kind)
		if !bytes.Equal(pa, direct) {
			t.Errorf("%s: Render's Mat differs from RenderBGR of the same index", kind)
		}
		ma.Close()
		mb.Close()
	}
	base, _ := render(t, NewPartGen(42, testSize), 0, PartGood)
	for _, tc := range []struct {
		name  string
		seed  uint64
		index uint64
	}{{"other seed", 43, 0}, {"other index", 42, 1}} {
		other, _ := render(t, NewPartGen(tc.seed, testSize), tc.index, PartGood)
		if n := len(diffPixels(base, other, 8)); n < len(base)/3/10 {
			t.Errorf("%s: only %d pixels differ by more than 8 levels: parts do not vary", tc.name, n)
		}
	}
}

// TestDefectsLieInTheirSegments renders each part good and defective (same
// seed and index, so the same jitter, wires, lighting and noise) and checks
// that the pixels the defect changed lie inside its intended segments of the
// static mask and inside its reported bounding box.
func TestDefectsLieInTheirSegments(t *testing.T) {
	g := NewPartGen(7, testSize)
	mask := g.Mask()
	n := testSize
	for _, kind := range DefectKinds() {
		t.Run(string(kind), func(t *testing.T) {
			dt, _ := LookupDefect(kind)
			for idx := uint64(0); idx < 8; idx++ {
				good, _ := render(t, g, idx, PartGood)
				bad, info := render(t, g, idx, kind)
				if info.Kind != kind || info.Category != dt.Category || info.Unseen != dt.Unseen {
					t.Fatalf("info %+v does not match the defect table %+v", info, dt)
				}
				for _, s := range info.Segments {
					if !slices.Contains(dt.Segments, s) {
						t.Errorf("part %d: segment %d not among the kind's segments %v", idx, s, dt.Segments)
					}
				}
				px := diffPixels(good, bad, 6)
				if len(px) < 8 {
					t.Fatalf("part %d: the defect changed only %d pixels", idx, len(px))
				}
				inSeg, inBox := 0, 0
				box := info.BBox.Inset(-2)
				for _, p := range px {
					if slices.Contains(info.Segments, int(mask.Labels[p])) {
						inSeg++
					}
					if image.Pt(p%n, p/n).In(box) {
						inBox++
					}
				}
				if f := float64(inSeg) / float64(len(px)); f < 0.9 {
					t.Errorf("part %d: %.0f%% of %d changed pixels inside segments %v, want >= 90%%", idx, 100*f, len(px), info.Segments)
				}
				if inBox != len(px) {
					t.Errorf("part %d: %d of %d changed pixels outside the bbox %v", idx, len(px)-inBox, len(px), info.BBox)
				}
			}
		})
	}
	// A good part is the same part rendered as good: no defect pixels.
	a, ia := render(t, g, 3, PartGood)
	b, _ := render(t, g, 3, PartGood)
	if !bytes.Equal(a, b) || !ia.BBox.Empty() || len(ia.Segments) != 0 {
		t.Errorf("good part: bbox %v segments %v", ia.BBox, ia.Segments)
	}
}

// segStats returns per segment the mean of B, G, R and of gray, with the
// mask shifted by (sx, sy) pixels.
func segStats(img []byte, m *segad.Mask, sx, sy int) (mean [][4]float64, within float64) {
	k := m.NumSegments()
	sum := make([][4]float64, k)
	sq := make([]float64, k)
	cnt := make([]float64, k)
	for y := 0; y < m.Height; y++ {
		for x := 0; x < m.Width; x++ {
			mx, my := x-sx, y-sy
			if mx < 0 || my < 0 || mx >= m.Width || my >= m.Height {
				continue
			}
			l := m.Labels[my*m.Width+mx]
			i := 3 * (y*m.Width + x)
			gray := (float64(img[i]) + float64(img[i+1]) + float64(img[i+2])) / 3
			for c := 0; c < 3; c++ {
				sum[l][c] += float64(img[i+c])
			}
			sum[l][3] += gray
			sq[l] += gray * gray
			cnt[l]++
		}
	}
	mean = make([][4]float64, k)
	for l := range sum {
		for c := range sum[l] {
			mean[l][c] = sum[l][c] / cnt[l]
		}
		within += sq[l] - cnt[l]*mean[l][3]*mean[l][3] // within-segment sum of squares
	}
	return mean, within
}

// TestMaskAlignsWithMaterials checks that the static 7-segment mask labels
// the materials the renderer draws: each segment's mean colour is its
// material's, and shifting the mask by a few pixels makes segments less
// uniform (the mask sits where the part is).
func TestMaskAlignsWithMaterials(t *testing.T) {
	g := NewPartGen(11, testSize)
	m := g.Mask()
	if m.Width != testSize || m.NumSegments() != 7 || !slices.Equal(m.Names, segad.VADSegmentNames) {
		t.Fatalf("mask %dx%d with names %v", m.Width, m.Height, m.Names)
	}
	for idx := uint64(0); idx < 4; idx++ {
		img, _ := render(t, g, idx, PartGood)
		mean, within := segStats(img, m, 0, 0)
		gray := func(l int) float64 { return mean[l][3] }
		redness := func(l int) float64 { return mean[l][2] - mean[l][0] } // R - B
		checks := []struct {
			what string
			ok   bool
		}{
			{"background is dark (< 60)", gray(segad.VADBackground) < 60},
			{"housing is mid-dark plastic (70..125)", gray(segad.VADOuterHalfCircle) > 70 && gray(segad.VADOuterHalfCircle) < 125},
			{"border is brass (R - B > 50)", redness(segad.VADPiezoBorder) > 50},
			{"piezo middle is light ceramic (> 170)", gray(segad.VADPiezoMiddle) > 170},
			{"solder dots are bright (> 150)", gray(segad.VADSolderDots) > 150},
			{"pins are metal grey (brighter than background by > 40, < 170)", gray(segad.VADPins) > gray(segad.VADBackground)+40 && gray(segad.VADPins) < 170},
			{"wires area holds copper (redder than the ceramic by > 15)", redness(segad.VADWires) > redness(segad.VADPiezoMiddle)+15},
		}
		for _, c := range checks {
			if !c.ok {
				t.Errorf("part %d: %s; segment means (B,G,R,gray) %v", idx, c.what, mean)
			}
		}
		for _, s := range []image.Point{{4, 0}, {-4, 0}, {0, 4}, {0, -4}} {
			if _, w := segStats(img, m, s.X, s.Y); w <= within {
				t.Errorf("part %d: mask shifted by %v fits the image as well as unshifted (%.3g <= %.3g)", idx, s, w, within)
			}
		}
	}
}

func TestKindTables(t *testing.T) {
	seen, unseen := SeenDefectKinds(), UnseenDefectKinds()
	if len(seen)+len(unseen) != len(DefectKinds()) || len(unseen) == 0 || len(seen) == 0 {
		t.Fatalf("seen %v unseen %v all %v", seen, unseen, DefectKinds())
	}
	cats := map[string]int{}
	for _, d := range DefectTypes() {
		cats[d.Category]++
		if len(d.Segments) == 0 || d.Description == "" {
			t.Errorf("%s: no segments or description", d.Kind)
		}
		if k, err := ParseDefectKind(string(d.Kind)); err != nil || k != d.Kind {
			t.Errorf("ParseDefectKind(%q) = %q, %v", d.Kind, k, err)
		}
	}
	if cats[CategoryLogical] < 4 || cats[CategoryStructural] < 4 {
		t.Errorf("categories %v: want both logical and structural defects", cats)
	}
}

func TestBadInput(t *testing.T) {
	g := NewPartGen(1, testSize)
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		run  func() error
		want string
	}{
		{"unknown kind", func() error { _, _, err := g.Render("dented"); return err }, `unknown part kind "dented"`},
		{"short buffer", func() error { _, err := g.RenderBGR(make([]byte, 10), 0, PartGood); return err }, "buffer holds 10 bytes"},
		{"parse kind", func() error { _, err := ParseDefectKind("scratch"); return err }, "unknown part kind"},
		{"empty dataset", func() error { _, err := WriteDataset(dir, 0, 0, 1); return err }, "no parts requested"},
		{"dataset unknown kind", func() error { _, err := WriteDatasetKinds(dir, 1, 1, 1, []DefectKind{"dented"}); return err }, `"dented"`},
		{"sequence unknown kind", func() error { _, err := WriteSequence(dir, []DefectKind{"dented"}, 1); return err }, `"dented"`},
		{"video fps", func() error {
			_, err := WriteVideo(filepath.Join(dir, "v.avi"), []DefectKind{PartGood}, 1, 0)
			return err
		}, "fps"},
		{"unwritable dataset", func() error {
			f := filepath.Join(dir, "file")
			os.WriteFile(f, nil, 0o644)
			_, err := WriteDataset(filepath.Join(f, "sub"), 1, 0, 1)
			return err
		}, "file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestWriteDataset(t *testing.T) {
	dir := t.TempDir()
	man, err := WriteDataset(dir, 3, 1, 5)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := filepath.Glob(filepath.Join(dir, "good", "*.png"))
	if len(good) != 3 {
		t.Errorf("good/ holds %d images, want 3", len(good))
	}
	entries, err := os.ReadDir(filepath.Join(dir, "bad"))
	if err != nil {
		t.Fatal(err)
	}
	var folders []string
	for _, e := range entries {
		folders = append(folders, e.Name())
	}
	var want []string
	for _, k := range SeenDefectKinds() {
		want = append(want, string(k))
	}
	slices.Sort(want)
	if !slices.Equal(folders, want) {
		t.Errorf("bad/ folders %v, want the seen kinds %v (unseen held out)", folders, want)
	}
	if len(man.Parts) != 3+len(want) {
		t.Errorf("manifest lists %d parts", len(man.Parts))
	}
	// The PNG is lossless: it reads back as exactly the rendered part.
	p := man.Parts[len(man.Parts)-1]
	img := gocv.IMRead(filepath.Join(dir, p.File), gocv.IMReadColor)
	defer img.Close()
	pix, _ := img.DataPtrUint8()
	direct, _ := render(t, NewPartGen(5, testSize), p.Index, p.Kind)
	if !bytes.Equal(pix, direct) {
		t.Errorf("%s does not read back as part %d", p.File, p.Index)
	}
	mask, err := segad.LoadMask(filepath.Join(dir, MaskName), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mask.Labels, PartMask(testSize).Labels) || !slices.Equal(mask.Names, segad.VADSegmentNames) {
		t.Errorf("written mask differs from PartMask (names %v)", mask.Names)
	}
	var back Manifest
	data, _ := os.ReadFile(filepath.Join(dir, ManifestName))
	if err := json.Unmarshal(data, &back); err != nil || len(back.Parts) != len(man.Parts) || back.Parts[4].Kind != man.Parts[4].Kind {
		t.Errorf("manifest does not round-trip: %v", err)
	}
}

func TestWriteSequenceAndVideo(t *testing.T) {
	kinds := StreamKinds(12, 0.5, 3)
	if again := StreamKinds(12, 0.5, 3); !slices.Equal(kinds, again) {
		t.Fatal("StreamKinds is not deterministic")
	}
	nBad := 0
	for _, k := range kinds {
		if k != PartGood {
			nBad++
		}
	}
	if nBad != 6 {
		t.Errorf("%d bad of 12 at share 0.5", nBad)
	}
	dir := t.TempDir()
	man, err := WriteSequence(filepath.Join(dir, "frames"), kinds[:4], 3)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if _, err := os.Stat(filepath.Join(dir, "frames", man.Parts[i].File)); err != nil || man.Parts[i].Kind != kinds[i] {
			t.Errorf("frame %d: %v kind %s", i, err, man.Parts[i].Kind)
		}
	}
	cap, err := gocv.OpenVideoCapture(filepath.Join(dir, "frames", "%04d.png"))
	if err != nil {
		t.Fatal(err)
	}
	frames := 0
	m := gocv.NewMat()
	for cap.Read(&m) && !m.Empty() {
		frames++
	}
	cap.Close()
	if frames != 4 {
		t.Errorf("the sequence reads back as %d frames, want 4", frames)
	}

	path := filepath.Join(dir, "stream.avi")
	if _, err := WriteVideo(path, kinds[:5], 3, 5); err != nil {
		t.Fatal(err)
	}
	vc, err := gocv.VideoCaptureFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer vc.Close()
	frames = 0
	for vc.Read(&m) && !m.Empty() {
		if m.Cols() != testSize || m.Rows() != testSize {
			t.Fatalf("video frame %dx%d", m.Cols(), m.Rows())
		}
		frames++
	}
	m.Close()
	if frames != 5 {
		t.Errorf("the video reads back as %d frames, want 5", frames)
	}
	if _, err := os.Stat(path + ".parts.json"); err != nil {
		t.Error(err)
	}
}
