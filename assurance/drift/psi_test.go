package drift

import (
	"encoding/json"
	"math"
	"os"
	"testing"

	"github.com/segad-edge/segad-edge/bundle"
)

// golden is testdata/psi.json, written by scripts/golden/psi.py (numpy,
// scipy): reference bins, PSI values and binomial tails.
type golden struct {
	EPS   float64 `json:"eps"`
	Cases []struct {
		Name   string     `json:"name"`
		Bins   int        `json:"bins"`
		Train  []*float64 `json:"train"`
		Window []*float64 `json:"window"`
		Edges  []float64  `json:"edges"`
		Shares []float64  `json:"shares"`
		NaN    float64    `json:"nan"`
		PSI    float64    `json:"psi"`
	} `json:"cases"`
	Tails []struct {
		K, N int
		P    float64
		Tail float64
	} `json:"tails"`
}

func loadGolden(t *testing.T) golden {
	t.Helper()
	data, err := os.ReadFile("testdata/psi.json")
	if err != nil {
		t.Fatalf("%v (regenerate with scripts/golden/psi.py)", err)
	}
	var g golden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Cases) < 10 || len(g.Tails) < 20 {
		t.Fatalf("golden file holds %d cases and %d tails: truncated?", len(g.Cases), len(g.Tails))
	}
	return g
}

func values(p []*float64) []float64 {
	out := make([]float64, len(p))
	for i, v := range p {
		out[i] = math.NaN()
		if v != nil {
			out[i] = *v
		}
	}
	return out
}

func near(a, b, rel float64) bool {
	return math.Abs(a-b) <= rel*math.Max(1e-12, math.Max(math.Abs(a), math.Abs(b)))
}

// TestDistributionAndPSIMatchNumpy holds Distribution (the reference bins
// segad fit writes) and PSI (what the monitor computes from its window
// counts) against numpy on the same values: skewed, tied, integer, NaN,
// constant and tiny samples included.
func TestDistributionAndPSIMatchNumpy(t *testing.T) {
	g := loadGolden(t)
	if g.EPS != Epsilon {
		t.Fatalf("golden epsilon %v, Go epsilon %v", g.EPS, Epsilon)
	}
	for _, c := range g.Cases {
		t.Run(c.Name, func(t *testing.T) {
			edges, shares, nan := Distribution(values(c.Train), c.Bins)
			if len(edges) != len(c.Edges) {
				t.Fatalf("%d edges %v, numpy %d %v", len(edges), edges, len(c.Edges), c.Edges)
			}
			for i := range edges {
				if !near(edges[i], c.Edges[i], 1e-12) {
					t.Errorf("edge %d: %v, numpy %v", i, edges[i], c.Edges[i])
				}
			}
			for i := range shares {
				if !near(shares[i], c.Shares[i], 1e-12) {
					t.Errorf("share %d: %v, numpy %v", i, shares[i], c.Shares[i])
				}
			}
			if !near(nan, c.NaN, 1e-12) {
				t.Errorf("NaN share %v, numpy %v", nan, c.NaN)
			}
			// The window through the monitor's own counting (Bin and the
			// NaN bin), then PSI from the counts numpy's shares gave.
			f := &bundle.DriftFeature{Name: "x", Edges: c.Edges, Shares: c.Shares, NaN: c.NaN}
			counts := make([]int, len(c.Shares)+1)
			w := values(c.Window)
			for _, v := range w {
				if math.IsNaN(v) {
					counts[len(c.Shares)]++
				} else {
					counts[Bin(c.Edges, v)]++
				}
			}
			if got := PSI(f, counts, len(w)); !near(got, c.PSI, 1e-9) {
				t.Errorf("PSI %.12g, numpy %.12g", got, c.PSI)
			}
		})
	}
}

// TestBinomialTailMatchesScipy holds the reject-rate test's p-value
// against scipy.stats.binom.sf.
func TestBinomialTailMatchesScipy(t *testing.T) {
	g := loadGolden(t)
	for _, c := range g.Tails {
		got := BinomialTail(c.K, c.N, c.P)
		// Tails far below anything an alarm compares with (1e-300) only
		// need to be tiny; the rest agree to 1e-9 relative.
		if c.Tail < 1e-250 && got < 1e-250 {
			continue
		}
		if !near(got, c.Tail, 1e-9) {
			t.Errorf("P(X >= %d | n %d, p %g) = %.12g, scipy %.12g", c.K, c.N, c.P, got, c.Tail)
		}
	}
}
