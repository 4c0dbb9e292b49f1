package demo

import (
	"testing"

	"gocv.io/x/gocv"
)

// BenchmarkRenderPart is one 512x512 part rendered into a Go buffer (the
// dataset writer's per-part cost before PNG encoding).
func BenchmarkRenderPart(b *testing.B) {
	g := NewPartGen(1, DefaultPartSize)
	buf := make([]byte, 3*g.Size()*g.Size())
	kinds := append([]DefectKind{PartGood}, DefectKinds()...)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := g.RenderBGR(buf, uint64(i), kinds[i%len(kinds)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodePart is the PNG encoding that follows rendering in
// WriteDataset: an explicit level 1 (baseline, the obvious speed-up) next
// to OpenCV's default, which the writer uses.
func BenchmarkEncodePart(b *testing.B) {
	g := NewPartGen(1, DefaultPartSize)
	m, _, err := g.RenderPart(0, PartGood)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	for _, bc := range []struct {
		name   string
		params []int
	}{{"png_level1_baseline", pngLevel1}, {"png_opencv_default", nil}} {
		b.Run(bc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				var buf *gocv.NativeByteBuffer
				var err error
				if bc.params == nil {
					buf, err = gocv.IMEncode(gocv.PNGFileExt, m)
				} else {
					buf, err = gocv.IMEncodeWithParams(gocv.PNGFileExt, m, bc.params)
				}
				if err != nil {
					b.Fatal(err)
				}
				buf.Close()
			}
		})
	}
}

// BenchmarkWriteDataset100 writes 100 parts (50 good, 5 of each seen kind)
// with all cores, PNG files included: 10x this is the 1000-part dataset.
func BenchmarkWriteDataset100(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if _, err := WriteDataset(b.TempDir(), 50, 50/len(SeenDefectKinds()), 1); err != nil {
			b.Fatal(err)
		}
	}
}
