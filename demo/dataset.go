package demo

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/capture"
)

// pngLevel1 is what one might pass to make PNG writing faster; it is slower:
// OpenCV's default is already level 1 with zlib's RLE strategy, and naming a
// level switches to the default strategy (BenchmarkEncodePart: about 2x
// slower on these noisy images). The writer therefore uses plain IMWrite.
var pngLevel1 = []int{gocv.IMWritePngCompression, 1}

// DatasetPart is one written image and what it shows.
type DatasetPart struct {
	// File is the image path relative to the dataset folder.
	File string `json:"file"`
	PartInfo
}

// Manifest lists a written dataset or stream, for demo summaries (seen vs
// unseen) and for tests; it is written as parts.json.
type Manifest struct {
	Seed  uint64        `json:"seed"`
	Size  int           `json:"size"`
	Parts []DatasetPart `json:"parts"`
}

// ManifestName is the manifest's file name inside a written folder.
const ManifestName = "parts.json"

// MaskName is the 7-segment mask's file name inside a written folder
// (with its segment names sidecar, see segad.Mask.WritePNG).
const MaskName = "mask.png"

// WriteDataset writes a training set for `segad fit --good DIR/good --bad
// DIR/bad`: nGood good parts as good/good_NNNN.png and nBadPerKind parts of
// every seen defect kind as bad/<kind>/<kind>_NNNN.png (unseen kinds are
// held out), plus mask.png and parts.json. The images depend only on seed.
func WriteDataset(dir string, nGood, nBadPerKind int, seed uint64) (*Manifest, error) {
	return WriteDatasetKinds(dir, nGood, nBadPerKind, seed, SeenDefectKinds())
}

// WriteDatasetKinds is WriteDataset with the defect kinds chosen, e.g.
// DefectKinds() for a test set that includes the unseen kinds.
func WriteDatasetKinds(dir string, nGood, nBadPerKind int, seed uint64, kinds []DefectKind) (*Manifest, error) {
	if nGood < 0 || nBadPerKind < 0 || nGood+nBadPerKind*len(kinds) == 0 {
		return nil, fmt.Errorf("write dataset %s: %w (good %d, bad per kind %d, %d kinds)", dir, errNoParts, nGood, nBadPerKind, len(kinds))
	}
	var jobs []DatasetPart
	for i := 0; i < nGood; i++ {
		jobs = append(jobs, DatasetPart{File: filepath.Join("good", fmt.Sprintf("good_%04d.png", i)),
			PartInfo: PartInfo{Index: uint64(i), Kind: PartGood}})
	}
	for k, kind := range kinds {
		if _, ok := LookupDefect(kind); !ok {
			return nil, fmt.Errorf("write dataset %s: unknown defect kind %q: want one of %v", dir, kind, DefectKinds())
		}
		for j := 0; j < nBadPerKind; j++ {
			// Bad parts get their own index range: no bad part is a copy of
			// a good one with a defect added (that would leak in training).
			idx := uint64(1_000_000*(k+1) + j)
			jobs = append(jobs, DatasetPart{File: filepath.Join("bad", string(kind), fmt.Sprintf("%s_%04d.png", kind, j)),
				PartInfo: PartInfo{Index: idx, Kind: kind}})
		}
	}
	return writeParts(dir, seed, DefaultPartSize, jobs)
}

// writeParts renders and writes jobs in parallel (one generator per
// worker; parts are independent of order) and writes mask and manifest.
func writeParts(dir string, seed uint64, size int, jobs []DatasetPart) (*Manifest, error) {
	dirs := map[string]bool{}
	for _, j := range jobs {
		dirs[filepath.Dir(filepath.Join(dir, j.File))] = true
	}
	for d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("write parts: %w", err)
		}
	}
	workers := min(runtime.GOMAXPROCS(0), len(jobs))
	var wg sync.WaitGroup
	errs := make([]error, workers)
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			g := NewPartGen(seed, size)
			for i := range next {
				if errs[w] != nil {
					continue // drain
				}
				j := &jobs[i]
				m, info, err := g.RenderPart(j.Index, j.Kind)
				if err != nil {
					errs[w] = err
					continue
				}
				path := filepath.Join(dir, j.File)
				err = capture.WriteImage(path, m)
				m.Close()
				if err != nil {
					errs[w] = fmt.Errorf("write part image (disk full or folder not writable?): %w", err)
					continue
				}
				j.PartInfo = info
			}
		}(w)
	}
	for i := range jobs {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	man := &Manifest{Seed: seed, Size: size, Parts: jobs}
	if err := writeMaskAndManifest(dir, size, man); err != nil {
		return nil, err
	}
	slog.Info("demo: parts written", "dir", dir, "parts", len(jobs), "seed", seed)
	return man, nil
}

func writeMaskAndManifest(dir string, size int, man *Manifest) error {
	if err := PartMask(size).WritePNG(filepath.Join(dir, MaskName)); err != nil {
		return fmt.Errorf("write part mask in %s: %w", dir, err)
	}
	data, err := json.MarshalIndent(man, "", " ")
	if err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestName), data, 0o644); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	return nil
}

// StreamKinds returns a shuffled sequence of n part kinds for a demo
// stream: about badShare of them defective, spread evenly over every defect
// kind (seen and unseen), the rest good. Deterministic for seed.
func StreamKinds(n int, badShare float64, seed uint64) []DefectKind {
	rng := rand.New(rand.NewPCG(seed, 0x57e4))
	all := DefectKinds()
	nBad := int(float64(n)*badShare + 0.5)
	out := make([]DefectKind, 0, n)
	for i := 0; i < nBad; i++ {
		out = append(out, all[i%len(all)])
	}
	for len(out) < n {
		out = append(out, PartGood)
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// streamIndexBase keeps stream parts apart from dataset parts of the same
// seed (datasets use indices below 1e9).
const streamIndexBase = 1 << 40

// WriteSequence writes kinds as an image sequence dir/%04d.png numbered from
// 0 (capture's `sequence` kind opens frames/%04d.png only when numbering
// starts at 0 or 1), with mask.png and parts.json. Part i of the stream is
// part streamIndexBase+i of the seed, so it is no copy of a training part.
func WriteSequence(dir string, kinds []DefectKind, seed uint64) (*Manifest, error) {
	if len(kinds) == 0 {
		return nil, fmt.Errorf("write sequence %s: %w", dir, errNoParts)
	}
	jobs := make([]DatasetPart, len(kinds))
	for i, k := range kinds {
		if _, err := ParseDefectKind(string(k)); err != nil {
			return nil, fmt.Errorf("write sequence %s: %w", dir, err)
		}
		jobs[i] = DatasetPart{File: fmt.Sprintf("%04d.png", i), PartInfo: PartInfo{Index: streamIndexBase + uint64(i), Kind: k}}
	}
	return writeParts(dir, seed, DefaultPartSize, jobs)
}

// WriteVideo writes kinds as a Motion-JPEG AVI at fps (the codec every
// OpenCV build with FFMPEG or its built-in AVI writer can both write and
// read back), and parts.json with mask.png next to it (named
// <video>.parts.json and <video>.mask.png). Frame i is stream part i, as in
// WriteSequence.
func WriteVideo(path string, kinds []DefectKind, seed uint64, fps float64) (*Manifest, error) {
	if len(kinds) == 0 {
		return nil, fmt.Errorf("write video %s: %w", path, errNoParts)
	}
	if fps <= 0 {
		return nil, fmt.Errorf("write video %s: fps %v must be positive", path, fps)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("write video: %w", err)
	}
	size := DefaultPartSize
	vw, err := gocv.VideoWriterFile(path, "MJPG", fps, size, size, true)
	if err != nil {
		return nil, fmt.Errorf("write video %s: %w", path, err)
	}
	if !vw.IsOpened() {
		vw.Close()
		return nil, fmt.Errorf("write video %s: OpenCV could not open an MJPG writer (is the folder writable?)", path)
	}
	g := NewPartGen(seed, size)
	man := &Manifest{Seed: seed, Size: size}
	for i, k := range kinds {
		m, info, err := g.RenderPart(streamIndexBase+uint64(i), k)
		if err != nil {
			vw.Close()
			return nil, fmt.Errorf("write video %s: frame %d: %w", path, i, err)
		}
		err = vw.Write(m)
		m.Close()
		if err != nil {
			vw.Close()
			return nil, fmt.Errorf("write video %s: frame %d: %w", path, i, err)
		}
		man.Parts = append(man.Parts, DatasetPart{File: fmt.Sprintf("frame %d", i), PartInfo: info})
	}
	if err := vw.Close(); err != nil {
		return nil, fmt.Errorf("write video %s: %w", path, err)
	}
	if err := PartMask(size).WritePNG(path + ".mask.png"); err != nil {
		return nil, fmt.Errorf("write video mask: %w", err)
	}
	data, err := json.MarshalIndent(man, "", " ")
	if err != nil {
		return nil, fmt.Errorf("write video manifest: %w", err)
	}
	if err := os.WriteFile(path+".parts.json", data, 0o644); err != nil {
		return nil, fmt.Errorf("write video manifest: %w", err)
	}
	return man, nil
}
