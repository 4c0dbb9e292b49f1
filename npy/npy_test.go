package npy

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestReadNumpyFiles reads files NumPy wrote (scripts/golden/npy_fixtures.py)
// and compares them with the values NumPy listed in C order.
func TestReadNumpyFiles(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "npy_fixtures.json"))
	if err != nil {
		t.Fatalf("fixtures (run scripts/golden/generate.sh): %v", err)
	}
	var doc struct {
		Cases []struct {
			File   string    `json:"file"`
			Shape  []int     `json:"shape"`
			Descr  string    `json:"descr"`
			Values []float64 `json:"values"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Cases) < 8 {
		t.Fatalf("only %d fixtures", len(doc.Cases))
	}
	for _, c := range doc.Cases {
		t.Run(c.File, func(t *testing.T) {
			a, err := Read(filepath.Join("testdata", c.File))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(a.Shape, c.Shape) || a.Descr != c.Descr {
				t.Fatalf("shape %v descr %s, numpy says %v %s", a.Shape, a.Descr, c.Shape, c.Descr)
			}
			if a.Len() != len(c.Values) {
				t.Fatalf("Len %d, want %d", a.Len(), len(c.Values))
			}
			for i, want := range c.Values {
				var got float64
				if a.Kind == Float {
					got = float64(a.Float32[i])
					want = float64(float32(want))
				} else {
					got = float64(a.Int[i])
				}
				if got != want {
					t.Fatalf("element %d = %v, numpy %v", i, got, want)
				}
			}
		})
	}
}

func TestWriteRoundTrip(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "m.npy")
	data := []float32{1.5, -2, 3.25, 0, 1e-30, 7}
	if err := WriteFloat32(p, []int{2, 3}, data); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(p)
	// NumPy aligns the data to 64 bytes; its own reader relies on nothing
	// else, but other tools (np.memmap users) do.
	if (len(raw)-4*len(data))%64 != 0 {
		t.Fatalf("data starts at %d, not 64-aligned", len(raw)-4*len(data))
	}
	a, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Float32, data) || !slices.Equal(a.Shape, []int{2, 3}) {
		t.Fatalf("round trip: %v %v", a.Shape, a.Float32)
	}
	if err := WriteFloat32(p, []int{4}, data); err == nil || !strings.Contains(err.Error(), "holds 4 elements, data has 6") {
		t.Fatalf("shape mismatch: %v", err)
	}
}

func rawHeader(dict string) []byte {
	b := []byte(magic + "\x01\x00")
	b = append(b, byte(len(dict)), byte(len(dict)>>8))
	return append(b, dict...)
}

func TestReadErrors(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "preamble"},
		{"bad magic", []byte("PK\x03\x04zipzipzip"), "bad magic"},
		{"version 9", []byte(magic + "\x09\x00\x00\x00"), "unsupported .npy format version 9.0"},
		{"truncated header", append([]byte(magic+"\x01\x00"), 100, 0, '{'), "npy header"},
		{"structured", rawHeader("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }"), "structured dtypes"},
		{"complex", rawHeader("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }"), `unsupported npy dtype "<c8"`},
		{"object", rawHeader("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"), "unsupported npy dtype"},
		{"missing shape", rawHeader("{'descr': '<f4', 'fortran_order': False, }"), `lacks key "shape"`},
		{"forged huge shape", rawHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000), }"), "exceeds"},
		{"truncated data", rawHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (1000, 1000), }"), "truncated: shape [1000 1000] of <f4 needs 4000000 bytes, file has 0"},
		{"v2 header too long", []byte(magic + "\x02\x00\xff\xff\xff\x7f"), "exceeds the 65536 byte limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadFrom(bytes.NewReader(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := Read(filepath.Join(t.TempDir(), "nope.npy")); err == nil || !strings.Contains(err.Error(), "nope.npy") {
		t.Fatalf("missing file: %v", err)
	}
}

// FuzzReadFrom: malformed files give errors, never panics, and a decoded
// array always has exactly as many elements as its shape says.
func FuzzReadFrom(f *testing.F) {
	for _, name := range []string{"f4.npy", "f8.npy", "u1.npy", "f4_fortran.npy", "bool.npy", "f4_1d.npy"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err == nil {
			f.Add(b)
		}
	}
	f.Add(rawHeader("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 0, 3), }"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ReadFrom(bytes.NewReader(b))
		if err != nil {
			return
		}
		n := len(a.Float32) + len(a.Int)
		if n != a.Len() {
			t.Fatalf("shape %v but %d elements", a.Shape, n)
		}
	})
}

func TestMap2D(t *testing.T) {
	tests := []struct {
		name    string
		a       Array
		w, h    int
		wantErr bool
	}{
		{"HxW", Array{Shape: []int{2, 3}, Kind: Float, Float32: make([]float32, 6)}, 3, 2, false},
		{"1x1xHxW", Array{Shape: []int{1, 1, 2, 3}, Kind: Float, Float32: make([]float32, 6)}, 3, 2, false},
		{"batch of 2", Array{Shape: []int{2, 2, 3}, Kind: Float, Float32: make([]float32, 12)}, 0, 0, true},
		{"1-D", Array{Shape: []int{6}, Kind: Float, Float32: make([]float32, 6)}, 0, 0, true},
		{"integer labels", Array{Shape: []int{2, 3}, Descr: "<i8", Kind: Int, Int: make([]int64, 6)}, 0, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, h, data, err := tc.a.Map2D()
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err == nil && (w != tc.w || h != tc.h || len(data) != w*h) {
				t.Fatalf("got %dx%d (%d values), want %dx%d", w, h, len(data), tc.w, tc.h)
			}
		})
	}
}
