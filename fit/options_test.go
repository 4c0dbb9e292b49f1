package fit

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/segad-edge/segad-edge/config"
)

func ptr[T any](v T) *T { return &v }

// TestHyperParamsCoverFitConfig: every key of the fit: section has its
// row in the one table, of the right type, so a new key cannot be read
// from the file and then forgotten.
func TestHyperParamsCoverFitConfig(t *testing.T) {
	ft := reflect.TypeOf(config.FitConfig{})
	rows := map[string]bool{}
	for _, h := range hyperParams {
		rows[h.key] = true
		v := fitKey(config.FitConfig{}, h.key)
		if !v.IsValid() {
			t.Errorf("table key %q is not a key of config.FitConfig", h.key)
			continue
		}
		var o TrainOptions
		if got, want := reflect.TypeOf(h.field(&o)).Elem(), v.Type().Elem(); got != want {
			t.Errorf("fit.%s is %s in the config but %s in TrainOptions", h.key, want, got)
		}
		if want := strings.ReplaceAll(h.key, "_", "-"); h.flag != want {
			t.Errorf("fit.%s: flag --%s, want --%s (the key's name)", h.key, h.flag, want)
		}
	}
	for i := 0; i < ft.NumField(); i++ {
		key, _, _ := strings.Cut(ft.Field(i).Tag.Get("yaml"), ",")
		if key != "recalls" && !rows[key] {
			t.Errorf("fit.%s has no row in hyperParams", key)
		}
	}
}

func TestApplyConfig(t *testing.T) {
	fc := config.FitConfig{Trees: ptr(50), Eta: ptr(0.1), Seed: ptr(7), Threads: ptr(2), Recalls: []float64{0.9}}
	tests := []struct {
		name        string
		given       []string
		fc          config.FitConfig
		want        func(o *TrainOptions)
		wantRecalls []float64
	}{
		{"nothing set keeps the paper's", nil, config.FitConfig{}, func(*TrainOptions) {}, DefaultRecalls},
		{"the file over the paper's", nil, fc, func(o *TrainOptions) {
			o.Params.NumParallelTree, o.Params.Eta, o.Seed, o.Params.NThread = 50, 0.1, 7, 2
		}, []float64{0.9}},
		{"a flag over the file", []string{"trees", "seed", "recall"}, fc, func(o *TrainOptions) {
			o.Params.Eta, o.Params.NThread = 0.1, 2
		}, DefaultRecalls},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultTrainOptions() // as the flags left it
			recalls := DefaultRecalls
			o.ApplyConfig(tc.fc, &recalls, func(f string) bool {
				for _, g := range tc.given {
					if g == f {
						return true
					}
				}
				return false
			})
			want := DefaultTrainOptions()
			tc.want(&want)
			if !reflect.DeepEqual(o, want) {
				t.Errorf("got %+v\nwant %+v", o, want)
			}
			if !reflect.DeepEqual(recalls, tc.wantRecalls) {
				t.Errorf("recalls %v, want %v", recalls, tc.wantRecalls)
			}
		})
	}
	if got := TrainOptionsFrom(config.FitConfig{MaxDepth: ptr(3)}); got.Params.MaxDepth != 3 || got.Rounds != DefaultTrainOptions().Rounds {
		t.Errorf("TrainOptionsFrom: %+v", got)
	}
}

// TestDocumentedFitDefaults holds the fit: values that README's
// configuration reference and config/example.yaml (commented out) show to
// the paper's values that apply when the keys are unset.
func TestDocumentedFitDefaults(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^fit: \{[^}]*\}`).Find(readme)
	if m == nil {
		t.Fatal("README.md: no fit: line in the configuration reference")
	}
	// The example shows them commented out: "  # key: value   # comment".
	var ex strings.Builder
	ex.WriteString("fit:\n")
	in := false
	for _, l := range strings.Split(string(config.Example), "\n") {
		switch {
		case l == "fit:":
			in = true
		case in && strings.HasPrefix(l, "  # "):
			ex.WriteString("  " + strings.TrimPrefix(l, "  # ") + "\n")
		case in:
			in = false
		}
	}
	for name, text := range map[string]string{"README.md": string(m), "config/example.yaml": ex.String()} {
		var doc struct {
			Fit config.FitConfig `yaml:"fit"`
		}
		if err := yaml.UnmarshalWithOptions([]byte(text), &doc, yaml.Strict()); err != nil {
			t.Errorf("%s: fit: %v", name, err)
			continue
		}
		v := reflect.ValueOf(doc.Fit)
		for i := 0; i < v.NumField(); i++ {
			if v.Field(i).IsNil() {
				t.Errorf("%s: fit: does not show %s", name, v.Type().Field(i).Tag.Get("yaml"))
			}
		}
		if got, want := TrainOptionsFrom(doc.Fit), DefaultTrainOptions(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: fit: shows %+v, but the paper's values are %+v", name, got, want)
		}
		if !reflect.DeepEqual(doc.Fit.Recalls, DefaultRecalls) {
			t.Errorf("%s: fit.recalls shows %v, default %v", name, doc.Fit.Recalls, DefaultRecalls)
		}
	}
}
