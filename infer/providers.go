package infer

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"

	ort "github.com/yalue/onnxruntime_go"
)

// sessionOptions builds ORT session options from an ordered provider list.
// Each GPU provider that cannot be appended (a CPU-only ORT build, no driver)
// is logged with the reason and skipped; ORT itself always keeps its CPU
// provider as the last resort, so the list ends on CPU whatever happens.
// It returns the providers actually appended (cpu last) and whether a GPU
// provider is among them.
func sessionOptions(ps []ProviderConfig, who string, skipGPU bool) (*ort.SessionOptions, []string, bool, error) {
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, nil, false, fmt.Errorf("session options: %w", err)
	}
	intra, inter := 1, 0
	var used []string
	gpu := false
	for _, p := range ps {
		if p.Name == "cpu" {
			intra, inter = p.IntraOpThreads, p.InterOpThreads
			break // providers after cpu can never run
		}
		if skipGPU {
			continue
		}
		var aerr error
		switch p.Name {
		case "tensorrt":
			aerr = appendTensorRT(opts, p)
		case "cuda":
			aerr = appendCUDA(opts, p)
		}
		if aerr != nil {
			slog.Warn("infer: execution provider unavailable, trying the next one",
				"detector", who, "provider", p.Name, "device_id", p.DeviceID, "reason", aerr.Error())
			continue
		}
		used = append(used, p.Name)
		gpu = true
	}
	if intra <= 0 {
		intra = 1
	}
	if err := opts.SetIntraOpNumThreads(intra); err != nil {
		opts.Destroy()
		return nil, nil, false, fmt.Errorf("intra_op_threads %d: %w", intra, err)
	}
	if inter > 0 {
		if err := opts.SetInterOpNumThreads(inter); err != nil {
			opts.Destroy()
			return nil, nil, false, fmt.Errorf("inter_op_threads %d: %w", inter, err)
		}
	}
	return opts, append(used, "cpu"), gpu, nil
}

func appendTensorRT(opts *ort.SessionOptions, p ProviderConfig) error {
	to, err := ort.NewTensorRTProviderOptions()
	if err != nil {
		return err
	}
	defer to.Destroy()
	kv := map[string]string{
		"device_id":       strconv.Itoa(p.DeviceID),
		"trt_fp16_enable": strconv.FormatBool(p.FP16),
	}
	if p.EngineCache != "" {
		if err := os.MkdirAll(p.EngineCache, 0o755); err != nil {
			return fmt.Errorf("engine_cache %s: %w", p.EngineCache, err)
		}
		kv["trt_engine_cache_enable"] = "true"
		kv["trt_engine_cache_path"] = p.EngineCache
	}
	if p.TimingCache != "" {
		if err := os.MkdirAll(p.TimingCache, 0o755); err != nil {
			return fmt.Errorf("timing_cache %s: %w", p.TimingCache, err)
		}
		kv["trt_timing_cache_enable"] = "true"
		kv["trt_timing_cache_path"] = p.TimingCache
	}
	if p.Workspace > 0 {
		kv["trt_max_workspace_size"] = strconv.FormatInt(p.Workspace, 10)
	}
	if err := to.Update(kv); err != nil {
		return fmt.Errorf("options %v: %w", kv, err)
	}
	return opts.AppendExecutionProviderTensorRT(to)
}

func appendCUDA(opts *ort.SessionOptions, p ProviderConfig) error {
	co, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return err
	}
	defer co.Destroy()
	if err := co.Update(map[string]string{"device_id": strconv.Itoa(p.DeviceID)}); err != nil {
		return err
	}
	return opts.AppendExecutionProviderCUDA(co)
}

// newSession creates the ORT session with the provider list, retrying on CPU
// alone when a GPU provider was accepted but the session cannot be created
// with it (driver or library missing at run time). Go's signal handlers are
// saved before and restored after any GPU attempt (see signals.go).
func newSession(path string, data []byte, inNames, outNames []string, ins, outs []ort.Value, ps []ProviderConfig, who string) (*ort.AdvancedSession, *ort.SessionOptions, []string, error) {
	wantsGPU := false
	for _, p := range ps {
		if p.Name == "cpu" {
			break
		}
		wantsGPU = true
	}
	if wantsGPU {
		gpuSessionMu.Lock()
		defer gpuSessionMu.Unlock()
		sig := saveSignals()
		defer sig.restore()
	}
	opts, used, gpu, err := sessionOptions(ps, who, false)
	if err != nil {
		return nil, nil, nil, err
	}
	sess, err := ort.NewAdvancedSessionWithONNXData(data, inNames, outNames, ins, outs, opts)
	if err != nil && gpu {
		slog.Warn("infer: session with GPU providers failed, retrying on cpu",
			"detector", who, "providers", used, "reason", err.Error())
		opts.Destroy()
		if opts, used, _, err = sessionOptions(ps, who, true); err != nil {
			return nil, nil, nil, err
		}
		sess, err = ort.NewAdvancedSessionWithONNXData(data, inNames, outNames, ins, outs, opts)
	}
	if err != nil {
		opts.Destroy()
		return nil, nil, nil, err
	}
	var skipped []string
	for _, p := range ps {
		if p.Name == "cpu" {
			break
		}
		if !contains(used, p.Name) {
			skipped = append(skipped, p.Name)
		}
	}
	lvl := slog.LevelInfo
	if len(skipped) > 0 {
		lvl = slog.LevelWarn
	}
	slog.Log(context.Background(), lvl, "infer: session ready", "detector", who, "model", path,
		"provider", used[0], "providers", used, "unavailable", skipped)
	return sess, opts, used, nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
