package detector

import (
	"github.com/segad-edge/segad-edge/capture"

	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/advancedclimatesystems/gonnx/onnx"
)

// PatchCoreConfig holds the fitting parameters of the PatchCore kind.
type PatchCoreConfig struct {
	// Backbone is the pretrained ONNX feature extractor (its input must take
	// ImageNet-normalised RGB NCHW unless Normalize is false).
	Backbone string
	// Layers are the names of intermediate tensors of the backbone used as
	// features, finest first (the first layer's grid is the patch grid).
	Layers []string
	// Size is the square input size (default 256).
	Size int
	// Align is the line's fixturing (capture.align): training images are
	// registered to its reference and warped into its pose, as frames are
	// at run time. Zero: off.
	Align capture.AlignConfig
	// CoresetRatio is the share of memory-bank candidates kept by the greedy
	// k-centre coreset (default 0.01).
	CoresetRatio float64
	// ProjDim, when > 0, applies a fixed Gaussian random projection to that
	// many dimensions to the features, in fitting and in the graph.
	ProjDim int
	// CoresetProjDim is the dimension of the random projection used only to
	// select the coreset (anomalib does the same); 0 selects in full feature
	// space when negative. Default (0) 32: selection cost is linear in it.
	CoresetProjDim int
	// MaxPatches bounds the pre-coreset bank: when images x patches exceeds
	// it, each image contributes an equal random subset of its patches.
	// Default 262144 (128 MiB at 128 dims).
	MaxPatches int
	// Search is the memory-bank search written into the graph: SearchTwoStage
	// (default, int8 first stage), SearchTwoStageFloat or SearchExact.
	// Two-stage falls back to exact when SearchDim
	// is not below the bank's dimension or SearchK not below its size.
	Search string
	// SearchDim is the PCA subspace dimension of the two-stage search's
	// first stage (default 64).
	SearchDim int
	// SearchK is how many candidates per patch the first stage keeps for the
	// exact second stage (default 6).
	SearchK int
	// Sigma of the final Gaussian blur (default 4, as anomalib).
	Sigma float64
	// NoNormalize skips the ImageNet normalisation inside the graph.
	NoNormalize bool
	// MinImages is the smallest accepted training set (default DefaultMinImages).
	MinImages int
	// Seed drives patch subsampling, projections and the coreset start.
	Seed int64
	// Threads is ORT's intra-op thread count while extracting features (0: ORT default).
	Threads int
	// Progress receives progress bars when not nil.
	Progress io.Writer
}

func (c *PatchCoreConfig) defaults() {
	if c.Size == 0 {
		c.Size = 256
	}
	if c.CoresetRatio == 0 {
		c.CoresetRatio = 0.01
	}
	if c.CoresetProjDim == 0 {
		c.CoresetProjDim = 32
	}
	if c.MaxPatches == 0 {
		c.MaxPatches = 262144
	}
	if c.Search == "" {
		c.Search = SearchTwoStage
	}
	if c.SearchDim == 0 {
		c.SearchDim = defaultSearchDim
	}
	if c.SearchK == 0 {
		c.SearchK = defaultSearchK
	}
	if c.Sigma == 0 {
		c.Sigma = 4
	}
	if c.MinImages == 0 {
		c.MinImages = DefaultMinImages
	}
}

// PatchCore is a fitted PatchCore model: the backbone, the feature layout
// and the memory bank.
type PatchCore struct {
	Config PatchCoreConfig
	bb     *backbone

	// Grid is the patch grid (the first layer's height and width).
	GridH, GridW int
	// Channels per layer, as found at Size.
	Channels []int
	// FeatDim is the concatenated feature dimension before projection.
	FeatDim int
	// Proj is the ProjDim x FeatDim projection (row-major), nil without one.
	Proj []float32
	// Bank is the memory bank, BankSize rows of Dim() values.
	Bank     []float32
	BankSize int
	// NImages and Candidates count the training images and pre-coreset patches.
	NImages, Candidates int

	search *search // two-stage search; nil for the exact one
}

// Dim is the dimension of the memory bank rows.
func (p *PatchCore) Dim() int {
	if p.Proj != nil {
		return p.Config.ProjDim
	}
	return p.FeatDim
}

// featureModel writes the graph used while fitting: normalisation, the
// backbone and dequantisation, one float output per layer ("feat0", ...).
// The same nodes start the written model, so fitting sees the features
// inference computes.
func (bb *backbone) featureModel(size int, normalize bool) ([]byte, []string, error) {
	var b graphBuilder
	feats := bb.addBackbone(&b, normalize)
	var outs []*onnx.ValueInfoProto
	var names []string
	for i, f := range feats {
		n := "feat" + strconv.Itoa(i)
		b.nodeTo("Identity", []string{f}, n)
		outs = append(outs, &onnx.ValueInfoProto{Name: n})
		names = append(names, n)
	}
	s := int64(size)
	m := b.model("segad_backbone_features", []*onnx.ValueInfoProto{floatValueInfo("input", 1, 3, s, s)}, outs, nil, bb.opsets)
	data, err := marshalModel(m)
	return data, names, err
}

// layerFeat is one layer's float feature map, [C,H,W].
type layerFeat struct {
	data    []float32
	c, h, w int
}

// extractor runs the feature graph on images.
type extractor struct {
	r     *runner
	size  int
	names []string
}

func newExtractor(bb *backbone, cfg PatchCoreConfig) (*extractor, error) {
	model, names, err := bb.featureModel(cfg.Size, !cfg.NoNormalize)
	if err != nil {
		return nil, err
	}
	s := int64(cfg.Size)
	r, err := newRunner("backbone "+bb.path, model, "input", []int64{1, 3, s, s}, names, cfg.Threads)
	if err != nil {
		return nil, fmt.Errorf("backbone %s with feature outputs %s: %w", bb.path, strings.Join(bb.layers, ","), err)
	}
	return &extractor{r: r, size: cfg.Size, names: names}, nil
}

func (e *extractor) features(input []float32) ([]layerFeat, error) {
	data, shapes, err := e.r.run(input)
	if err != nil {
		return nil, err
	}
	out := make([]layerFeat, len(data))
	for i, sh := range shapes {
		if len(sh) != 4 || sh[0] != 1 {
			return nil, fmt.Errorf("feature tensor %d has shape %v, want [1,C,H,W]", i, sh)
		}
		out[i] = layerFeat{data: data[i], c: int(sh[1]), h: int(sh[2]), w: int(sh[3])}
	}
	return out, nil
}

// embed is the Go reference of the graph's feature aggregation: 3x3 average
// pooling (stride 1, zero padding counted, as torch AvgPool2d(3,1,1)),
// bilinear upsampling (align_corners=False) of every layer to the first
// layer's grid, channel concatenation. Result is [D][N] (channel-major, N =
// grid cells), the layout the graph's MatMul uses.
func embed(feats []layerFeat) ([]float32, int, int, int) {
	h, w := feats[0].h, feats[0].w
	d := 0
	for _, f := range feats {
		d += f.c
	}
	n := h * w
	out := make([]float32, d*n)
	off := 0
	for _, f := range feats {
		pooled := avgPool3(f)
		for c := 0; c < f.c; c++ {
			src := pooled[c*f.h*f.w : (c+1)*f.h*f.w]
			dst := out[(off+c)*n : (off+c+1)*n]
			if f.h == h && f.w == w {
				copy(dst, src)
			} else {
				bilinear(src, f.h, f.w, dst, h, w)
			}
		}
		off += f.c
	}
	return out, d, h, w
}

func avgPool3(f layerFeat) []float32 {
	out := make([]float32, len(f.data))
	for c := 0; c < f.c; c++ {
		base := c * f.h * f.w
		for y := 0; y < f.h; y++ {
			for x := 0; x < f.w; x++ {
				var s float32
				for dy := -1; dy <= 1; dy++ {
					yy := y + dy
					if yy < 0 || yy >= f.h {
						continue
					}
					for dx := -1; dx <= 1; dx++ {
						xx := x + dx
						if xx < 0 || xx >= f.w {
							continue
						}
						s += f.data[base+yy*f.w+xx]
					}
				}
				out[base+y*f.w+x] = s / 9
			}
		}
	}
	return out
}

// bilinear resizes one channel with torch's align_corners=False rule
// (ONNX Resize linear, half_pixel).
func bilinear(src []float32, sh, sw int, dst []float32, dh, dw int) {
	coord := func(o, in, out int) (int, int, float32) {
		s := (float64(o)+0.5)*float64(in)/float64(out) - 0.5
		if s < 0 {
			s = 0
		}
		i0 := int(s)
		if i0 > in-1 {
			i0 = in - 1
		}
		i1 := min(i0+1, in-1)
		return i0, i1, float32(s - float64(i0))
	}
	for y := 0; y < dh; y++ {
		y0, y1, ly := coord(y, sh, dh)
		for x := 0; x < dw; x++ {
			x0, x1, lx := coord(x, sw, dw)
			top := src[y0*sw+x0]*(1-lx) + src[y0*sw+x1]*lx
			bot := src[y1*sw+x0]*(1-lx) + src[y1*sw+x1]*lx
			dst[y*dw+x] = top*(1-ly) + bot*ly
		}
	}
}

// project multiplies the [D][N] embedding by P (k x D) giving [k][N].
func project(p []float32, k int, e []float32, d, n int) []float32 {
	out := make([]float32, k*n)
	for i := 0; i < k; i++ {
		row := out[i*n : (i+1)*n]
		for j := 0; j < d; j++ {
			pv := p[i*d+j]
			col := e[j*n : (j+1)*n]
			for c := range row {
				row[c] += pv * col[c]
			}
		}
	}
	return out
}

// gaussianProjection returns a k x d matrix of N(0, 1/k) entries, which keeps
// squared distances unbiased (Johnson-Lindenstrauss).
func gaussianProjection(rng *rand.Rand, k, d int) []float32 {
	p := make([]float32, k*d)
	s := 1 / math.Sqrt(float64(k))
	for i := range p {
		p[i] = float32(rng.NormFloat64() * s)
	}
	return p
}

// FitPatchCore fits PatchCore on the good images at paths. Features are
// streamed image by image into a pre-coreset bank bounded by MaxPatches, then
// the greedy k-centre coreset picks the memory bank.
func FitPatchCore(ctx context.Context, paths []string, cfg PatchCoreConfig) (*PatchCore, error) {
	cfg.defaults()
	if len(paths) < cfg.MinImages {
		return nil, fmt.Errorf("fit patchcore: %d good images given, at least %d needed", len(paths), cfg.MinImages)
	}
	if cfg.CoresetRatio <= 0 || cfg.CoresetRatio > 1 {
		return nil, fmt.Errorf("fit patchcore: coreset ratio %g must be in (0,1]", cfg.CoresetRatio)
	}
	if err := validSearch(cfg.Search); err != nil {
		return nil, fmt.Errorf("fit patchcore: %w", err)
	}
	if cfg.Search != SearchExact && (cfg.SearchDim < 0 || cfg.SearchK < 0) {
		return nil, fmt.Errorf("fit patchcore: two-stage search dimension %d and candidates %d must be positive", cfg.SearchDim, cfg.SearchK)
	}
	bb, err := loadBackbone(cfg.Backbone, cfg.Layers)
	if err != nil {
		return nil, fmt.Errorf("fit patchcore: %w", err)
	}
	ex, err := newExtractor(bb, cfg)
	if err != nil {
		return nil, fmt.Errorf("fit patchcore: %w", err)
	}
	defer ex.r.close()
	rng := rand.New(rand.NewSource(cfg.Seed))
	p := &PatchCore{Config: cfg, bb: bb, NImages: len(paths)}

	var sizes sizeChecker
	var cand []float32 // pre-coreset bank, row-major [patch][dim]
	perImage := 0
	bar := newBar(cfg.Progress, len(paths), "patchcore: extracting features")
	skips := notLocatedSkips{total: len(paths)}
	for i, path := range paths {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("fit patchcore: %w", err)
		}
		f, err := loadAligned(path, cfg.Size, cfg.Align)
		if skip, serr := skips.skip(err, path); skip {
			bar.Add(1)
			continue
		} else if serr != nil {
			return nil, fmt.Errorf("fit patchcore: %w", serr)
		}
		if err != nil {
			return nil, fmt.Errorf("fit patchcore: %w", err)
		}
		if err := sizes.check(path, f); err != nil {
			return nil, fmt.Errorf("fit patchcore: %w", err)
		}
		in, err := f.float()
		if err != nil {
			return nil, fmt.Errorf("fit patchcore: %s: %w", path, err)
		}
		feats, err := ex.features(in)
		if err != nil {
			return nil, fmt.Errorf("fit patchcore: backbone features of %s: %w", path, err)
		}
		e, d, gh, gw := embed(feats)
		n := gh * gw
		if i == 0 {
			if err := p.setLayout(feats, d, gh, gw, rng); err != nil {
				return nil, fmt.Errorf("fit patchcore: %w", err)
			}
			perImage = min(n, max(1, cfg.MaxPatches/len(paths)))
			cand = make([]float32, 0, perImage*len(paths)*p.Dim())
		}
		if p.Proj != nil {
			e = project(p.Proj, cfg.ProjDim, e, d, n)
			d = cfg.ProjDim
		}
		pick := rng.Perm(n)[:perImage]
		for _, c := range pick {
			for j := 0; j < d; j++ {
				cand = append(cand, e[j*n+c])
			}
		}
		bar.Add(1)
	}
	bar.Finish()
	dim := p.Dim()
	p.Candidates = len(cand) / dim
	k := max(1, int(math.Ceil(cfg.CoresetRatio*float64(p.Candidates))))
	sel := cand
	selDim := dim
	if cfg.CoresetProjDim > 0 && cfg.CoresetProjDim < dim {
		sel = projectRows(gaussianProjection(rng, cfg.CoresetProjDim, dim), cfg.CoresetProjDim, cand, dim)
		selDim = cfg.CoresetProjDim
	}
	idx, err := greedyCoreset(ctx, sel, selDim, k, rng.Intn(p.Candidates), newBar(cfg.Progress, k, "patchcore: coreset"))
	if err != nil {
		return nil, fmt.Errorf("fit patchcore: %w", err)
	}
	p.BankSize = k
	p.Bank = make([]float32, 0, k*dim)
	for _, i := range idx {
		p.Bank = append(p.Bank, cand[i*dim:(i+1)*dim]...)
	}
	if err := p.prepareSearch(); err != nil {
		return nil, fmt.Errorf("fit patchcore: %w", err)
	}
	slog.Info("patchcore fitted", "images", len(paths), "candidates", p.Candidates, "bank", k, "dim", dim,
		"grid", fmt.Sprintf("%dx%d", p.GridH, p.GridW), "backbone", cfg.Backbone, "search", p.searchMode())
	return p, nil
}

// setLayout records the feature geometry found on the first image.
func (p *PatchCore) setLayout(feats []layerFeat, d, gh, gw int, rng *rand.Rand) error {
	p.GridH, p.GridW, p.FeatDim = gh, gw, d
	for i, f := range feats {
		if f.h > gh || f.w > gw {
			return fmt.Errorf("layer %s (%dx%d) is finer than the first layer %s (%dx%d): list the finest layer first",
				p.Config.Layers[i], f.h, f.w, p.Config.Layers[0], gh, gw)
		}
		p.Channels = append(p.Channels, f.c)
	}
	if p.Config.Size%gh != 0 || p.Config.Size%gw != 0 {
		return fmt.Errorf("patch grid %dx%d does not divide the input size %d", gh, gw, p.Config.Size)
	}
	if p.Config.ProjDim > 0 {
		p.Proj = gaussianProjection(rng, p.Config.ProjDim, d)
	}
	return nil
}

// projectRows projects row-major rows [n][d] with P (k x d) to [n][k].
func projectRows(p []float32, k int, rows []float32, d int) []float32 {
	n := len(rows) / d
	out := make([]float32, n*k)
	parallelFor(n, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			x := rows[r*d : (r+1)*d]
			for i := 0; i < k; i++ {
				out[r*k+i] = dot(p[i*d:(i+1)*d], x)
			}
		}
	})
	return out
}

// Map computes the anomaly map in Go from backbone features (the reference
// the written graph is checked against): embedding, projection, distance to
// the memory bank by the model's search (see nearest), sqrt, nearest
// upsampling, blur.
func (p *PatchCore) Map(feats []layerFeat) []float32 {
	e, d, gh, gw := embed(feats)
	n := gh * gw
	if p.Proj != nil {
		e = project(p.Proj, p.Config.ProjDim, e, d, n)
		d = p.Config.ProjDim
	}
	grid := make([]float32, n)
	parallelFor(n, func(lo, hi int) {
		x := make([]float32, d)
		sc := p.newScratch()
		for c := lo; c < hi; c++ {
			for j := 0; j < d; j++ {
				x[j] = e[j*n+c]
			}
			grid[c] = float32(math.Sqrt(float64(p.nearest(x, sc))))
		}
	})
	s := p.Config.Size
	up := make([]float32, s*s)
	for y := 0; y < s; y++ {
		for xx := 0; xx < s; xx++ {
			up[y*s+xx] = grid[(y*gh/s)*gw+xx*gw/s]
		}
	}
	return gaussianBlur(up, s, s, p.Config.Sigma)
}

// upBlurMatrix is nearest upsampling from g to s samples (asymmetric,
// floor: source g*y/s) followed by the 1-D Gaussian of gaussianBlur with
// reflect border, as one s x g matrix: row y holds the weight of each grid
// cell in output sample y.
func upBlurMatrix(s, g int, sigma float64) []float32 {
	k := gaussianKernel1D(sigma)
	half := len(k) / 2
	acc := make([]float64, s*g)
	for y := 0; y < s; y++ {
		for j, kv := range k {
			src := reflectIndex(y+j-half, s) * g / s
			acc[y*g+src] += float64(kv)
		}
	}
	out := make([]float32, len(acc))
	for i, v := range acc {
		out[i] = float32(v)
	}
	return out
}

// transpose returns the transpose of a rows x cols row-major matrix.
func transpose(m []float32, rows, cols int) []float32 {
	out := make([]float32, len(m))
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			out[c*rows+r] = m[r*cols+c]
		}
	}
	return out
}

// ONNX writes the model: input "input" [1,3,S,S] RGB [0,1], output
// "anomaly_map" [1,1,S,S]. The memory-bank search is the configured one
// (addSearch), then Sqrt, and nearest upsampling to SxS with the separable
// Gaussian blur folded into two matrix products.
func (p *PatchCore) ONNX() ([]byte, error) {
	var b graphBuilder
	feats := p.bb.addBackbone(&b, !p.Config.NoNormalize)
	gh, gw := int64(p.GridH), int64(p.GridW)
	n := gh * gw
	emptyF := b.floatInit("empty", []int64{0}, nil)
	var pooled []string
	for i, f := range feats {
		x := b.node("AveragePool", []string{f},
			attrInts("kernel_shape", 3, 3), attrInts("strides", 1, 1), attrInts("pads", 1, 1, 1, 1), attrInt("count_include_pad", 1))
		if i > 0 {
			sizes := b.int64Init("grid_sizes", []int64{1, int64(p.Channels[i]), gh, gw})
			x = b.node("Resize", []string{x, emptyF, emptyF, sizes},
				attrString("mode", "linear"), attrString("coordinate_transformation_mode", "half_pixel"))
		}
		pooled = append(pooled, x)
	}
	e := pooled[0]
	if len(pooled) > 1 {
		e = b.node("Concat", pooled, attrInt("axis", 1))
	}
	e = b.node("Reshape", []string{e, b.int64Init("embed_shape", []int64{int64(p.FeatDim), n})})
	d := p.Dim()
	if p.Proj != nil {
		e = b.node("MatMul", []string{b.floatInit("projection", []int64{int64(d), int64(p.FeatDim)}, p.Proj), e})
	}
	dist := b.node("Sqrt", []string{p.addSearch(&b, e, n)})
	// Nearest upsampling and the separable reflect-border blur are both
	// linear, so per axis they fold into one S x grid matrix U: map = Uh G Uw^T,
	// two tiny MatMuls instead of a Resize and two 33-tap Convs on SxS
	// (which ONNX Runtime pads to 16 channels: ~1.5 ms of a frame).
	s := int64(p.Config.Size)
	g := b.node("Reshape", []string{dist, b.int64Init("grid_shape", []int64{gh, gw})})
	uh := b.floatInit("upblur_rows", []int64{s, gh}, upBlurMatrix(p.Config.Size, p.GridH, p.Config.Sigma))
	uwT := transpose(upBlurMatrix(p.Config.Size, p.GridW, p.Config.Sigma), p.Config.Size, p.GridW)
	m := b.node("MatMul", []string{b.node("MatMul", []string{uh, g}), b.floatInit("upblur_cols_t", []int64{gw, s}, uwT)})
	b.nodeTo("Reshape", []string{m, b.int64Init("map_shape", []int64{1, 1, s, s})}, "anomaly_map")

	cfg := p.Config
	meta := map[string]string{
		"segad.kind":             "patchcore",
		"segad.size":             strconv.Itoa(cfg.Size),
		"segad.sigma":            strconv.FormatFloat(cfg.Sigma, 'g', -1, 64),
		"segad.backbone":         filepath.Base(cfg.Backbone),
		"segad.backbone_sha256":  p.bb.sha256,
		"segad.layers":           strings.Join(cfg.Layers, ","),
		"segad.normalize":        strconv.FormatBool(!cfg.NoNormalize),
		"segad.grid":             fmt.Sprintf("%dx%d", p.GridH, p.GridW),
		"segad.feature_dim":      strconv.Itoa(p.FeatDim),
		"segad.proj_dim":         strconv.Itoa(cfg.ProjDim),
		"segad.coreset_ratio":    strconv.FormatFloat(cfg.CoresetRatio, 'g', -1, 64),
		"segad.coreset_proj_dim": strconv.Itoa(cfg.CoresetProjDim),
		"segad.max_patches":      strconv.Itoa(cfg.MaxPatches),
		"segad.candidates":       strconv.Itoa(p.Candidates),
		"segad.bank_size":        strconv.Itoa(p.BankSize),
		"segad.images":           strconv.Itoa(p.NImages),
		"segad.seed":             strconv.FormatInt(cfg.Seed, 10),
		"segad.search":           p.searchMode(),
		"segad.preprocessing":    preprocessingNote,
		"segad.map":              "PatchCore: avgpool3 features, bilinear to grid, concat, min L2 distance to coreset bank, nearest up, Gaussian blur (reflect)",
	}
	if p.search != nil {
		meta["segad.search_dim"] = strconv.Itoa(p.search.dim)
		meta["segad.search_k"] = strconv.Itoa(p.search.k)
		meta["segad.search_projection"] = "PCA of the memory bank"
		meta["segad.search_stage1"] = "float32"
		if p.search.quant {
			meta["segad.search_stage1"] = "int8 (centred, step " + strconv.FormatFloat(float64(p.search.step), 'g', -1, 32) + ")"
		}
	}
	model := b.model("segad_patchcore",
		[]*onnx.ValueInfoProto{floatValueInfo("input", 1, 3, s, s)},
		[]*onnx.ValueInfoProto{floatValueInfo("anomaly_map", 1, 1, s, s)}, meta, p.bb.opsets)
	return marshalModel(model)
}
