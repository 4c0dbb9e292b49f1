package fit

import (
	"reflect"
	"strings"

	"github.com/segad-edge/segad-edge/config"
)

// hyperParams is the one table of the forest's hyper-parameters: each key of
// the config's fit: section (config.FitConfig), the `segad fit` flag that
// overrides it, and where its value lives in TrainOptions. Recalls, the
// one fit: key that is not a forest parameter, is handled by ApplyConfig
// beside it.
var hyperParams = []struct {
	key, flag string
	field     func(o *TrainOptions) any // *int or *float64, of the key's type
}{
	{"trees", "trees", func(o *TrainOptions) any { return &o.Params.NumParallelTree }},
	{"rounds", "rounds", func(o *TrainOptions) any { return &o.Rounds }},
	{"eta", "eta", func(o *TrainOptions) any { return &o.Params.Eta }},
	{"max_depth", "max-depth", func(o *TrainOptions) any { return &o.Params.MaxDepth }},
	{"subsample", "subsample", func(o *TrainOptions) any { return &o.Params.Subsample }},
	{"colsample_bytree", "colsample-bytree", func(o *TrainOptions) any { return &o.Params.ColsampleByTree }},
	{"colsample_bynode", "colsample-bynode", func(o *TrainOptions) any { return &o.Params.ColsampleByNode }},
	{"reg_alpha", "reg-alpha", func(o *TrainOptions) any { return &o.Params.RegAlpha }},
	{"scale_pos_weight", "scale-pos-weight", func(o *TrainOptions) any { return &o.Params.ScalePosWeight }},
	{"seed", "seed", func(o *TrainOptions) any { return &o.Seed }},
	{"threads", "threads", func(o *TrainOptions) any { return &o.Params.NThread }},
}

// recallsFlag is the flag that overrides fit.recalls.
const recallsFlag = "recall"

// TrainOptionsFrom returns the paper's BRF (DefaultTrainOptions) with the
// keys fc sets; unset keys keep the paper's values.
func TrainOptionsFrom(fc config.FitConfig) TrainOptions {
	o := DefaultTrainOptions()
	o.ApplyConfig(fc, nil, nil)
	return o
}

// ApplyConfig is where `segad fit` merges its settings: every key of the
// config's fit: section that fc sets replaces o's value, unless its flag was
// given on the command line (flagGiven, e.g. cobra's cmd.Flags().Changed;
// nil: none was), so a flag wins over the file and the file over the
// paper's values. fit.recalls goes to *recalls the same way (recalls may be
// nil when the caller has none).
func (o *TrainOptions) ApplyConfig(fc config.FitConfig, recalls *[]float64, flagGiven func(flag string) bool) {
	given := func(flag string) bool { return flagGiven != nil && flagGiven(flag) }
	for _, h := range hyperParams {
		v := fitKey(fc, h.key)
		if !v.IsValid() || v.IsNil() || given(h.flag) {
			continue
		}
		reflect.ValueOf(h.field(o)).Elem().Set(v.Elem())
	}
	if recalls != nil && len(fc.Recalls) > 0 && !given(recallsFlag) {
		*recalls = fc.Recalls
	}
}

// fitKey is the field of fc with yaml key key (a nil pointer when unset;
// the zero Value when config.FitConfig has no such key, which the tests
// rule out).
func fitKey(fc config.FitConfig, key string) reflect.Value {
	v := reflect.ValueOf(fc)
	for i := 0; i < v.NumField(); i++ {
		if name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ","); name == key {
			return v.Field(i)
		}
	}
	return reflect.Value{}
}
