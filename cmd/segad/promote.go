package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/config"
)

// promotion is one line of FILE.promotions.jsonl: the audit record of a
// promotion or a rollback. Bundles are as written in the file (relative to
// its folder when the file says so).
type promotion struct {
	At        time.Time `json:"at"`
	Who       string    `json:"who"`
	Action    string    `json:"action"` // promote | rollback
	Config    string    `json:"config"`
	OldBundle string    `json:"old_bundle"`
	NewBundle string    `json:"new_bundle"`
	OldShadow string    `json:"old_shadow,omitempty"`
	NewShadow string    `json:"new_shadow,omitempty"`
	// OldForest and NewForest are the forests' content hashes, the
	// "bundle" field of every result each judged.
	OldForest string `json:"old_forest,omitempty"`
	NewForest string `json:"new_forest,omitempty"`
}

// promotionsFile is where a config's promotions are recorded: beside it,
// so it travels with the file and the bundles it names.
func promotionsFile(cfgPath string) string { return cfgPath + ".promotions.jsonl" }

// maxPromotionsBytes bounds the record file read back for a rollback.
const maxPromotionsBytes = 16 << 20

func readPromotions(path string) ([]promotion, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read promotions %s: %w", path, err)
	}
	defer f.Close()
	var out []promotion
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	n, size := 0, 0
	for sc.Scan() {
		n++
		size += len(sc.Bytes()) + 1
		if size > maxPromotionsBytes {
			return nil, fmt.Errorf("read promotions %s: larger than %d bytes", path, maxPromotionsBytes)
		}
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var p promotion
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			return nil, fmt.Errorf("read promotions %s:%d: %w (fix or move the line; promote and rollback need the file intact)", path, n, err)
		}
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read promotions %s: %w", path, err)
	}
	return out, nil
}

func appendPromotion(path string, p promotion) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("record promotion in %s: %w", path, err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("record promotion in %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("record promotion in %s: %w", path, err)
	}
	return f.Close()
}

// pendingPromotion is the newest promotion not rolled back yet.
func pendingPromotion(ps []promotion) (promotion, bool) {
	var stack []promotion
	for _, p := range ps {
		switch p.Action {
		case "promote":
			stack = append(stack, p)
		case "rollback":
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		}
	}
	if len(stack) == 0 {
		return promotion{}, false
	}
	return stack[len(stack)-1], true
}

// promoteConfig rewrites cfgPath: promote swaps segad.bundle and
// segad.shadow.bundle; rollback returns segad.bundle to the bundle live
// before the newest promotion not rolled back (and the shadow to the
// promoted one, when the swap is still in place). The new text is
// validated as a whole, written atomically (the daemon's watch sees one
// complete file) and only if the file did not change meanwhile; then the
// record is appended.
func promoteConfig(cfgPath, who string, rollback bool, now time.Time) (promotion, error) {
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		return promotion{}, fmt.Errorf("read config %s: %w", cfgPath, err)
	}
	cfg, err := config.Parse(cfgPath, data)
	if err != nil {
		return promotion{}, err
	}
	if cfg.SegAD.Bundle == "" {
		return promotion{}, fmt.Errorf("%s: segad.bundle is not set (the live forest is segad.model): promote and rollback switch bundles from segad fit", cfgPath)
	}
	if cfg.SegAD.Threshold != nil || cfg.SegAD.WarnThreshold != nil {
		// A threshold in the file belongs to the forest it was chosen for;
		// the bundle switched to would be judged against it, on another
		// score scale: a silent wrong verdict. The shadow judged the
		// candidate at its bundle's own threshold.
		again := "segad shadow promote"
		if rollback {
			again = "segad rollback"
		}
		return promotion{}, fmt.Errorf("%s: segad.threshold or segad.warn_threshold is set, and it was chosen for the live forest: remove them (each bundle then judges at its own suggested threshold, as the shadow did), then run %s again", cfgPath, again)
	}
	liveRaw, err := yamlString(data, "$.segad.bundle")
	if err != nil {
		return promotion{}, fmt.Errorf("%s: %w", cfgPath, err)
	}
	rec := promotion{At: now.UTC(), Who: who, Config: cfgPath, OldBundle: liveRaw}
	sh := cfg.SegAD.Shadow
	if sh != nil {
		if rec.OldShadow, err = yamlString(data, "$.segad.shadow.bundle"); err != nil {
			return promotion{}, fmt.Errorf("%s: %w", cfgPath, err)
		}
	}
	dir := filepath.Dir(cfgPath)
	resolve := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	var sets []config.Set
	if !rollback {
		rec.Action = "promote"
		if sh == nil {
			return promotion{}, fmt.Errorf("%s: segad.shadow is not set: there is no candidate to promote", cfgPath)
		}
		if sh.OwnDetectors() {
			return promotion{}, fmt.Errorf("%s: the candidate has its own detectors (segad.shadow.detectors): promote switches bundles only; move the detectors to the top-level detectors yourself, in the same edit as segad.bundle", cfgPath)
		}
		rec.NewBundle, rec.NewShadow = rec.OldShadow, liveRaw
		sets = []config.Set{{Key: "segad.bundle", Value: rec.NewBundle}, {Key: "segad.shadow.bundle", Value: rec.NewShadow}}
	} else {
		rec.Action = "rollback"
		ps, err := readPromotions(promotionsFile(cfgPath))
		if err != nil {
			return promotion{}, err
		}
		last, ok := pendingPromotion(ps)
		if !ok {
			return promotion{}, fmt.Errorf("%s: no promotion to roll back in %s", cfgPath, promotionsFile(cfgPath))
		}
		if liveRaw != last.NewBundle {
			return promotion{}, fmt.Errorf("%s: segad.bundle is %s, but the last promotion (%s, %s) made %s live: the file was edited since; roll back by hand", cfgPath, liveRaw, last.At.Format(time.RFC3339), last.Who, last.NewBundle)
		}
		rec.NewBundle = last.OldBundle
		sets = []config.Set{{Key: "segad.bundle", Value: rec.NewBundle}}
		if sh != nil && rec.OldShadow == last.OldBundle {
			// The swap is still in place: the promoted bundle goes back
			// to being the candidate.
			rec.NewShadow = last.NewBundle
			sets = append(sets, config.Set{Key: "segad.shadow.bundle", Value: rec.NewShadow})
		}
	}
	// The bundle going live must load (it stays on disk: nothing here
	// deletes a bundle), and so must the one it replaces, for the record.
	nb, err := bundle.Load(resolve(rec.NewBundle))
	if err != nil {
		return promotion{}, fmt.Errorf("%s %s: the bundle to make live: %w", rec.Action, cfgPath, err)
	}
	rec.NewForest = forestHash(nb)
	if ob, err := bundle.Load(resolve(rec.OldBundle)); err == nil {
		rec.OldForest = forestHash(ob)
	}
	// config.Edit: only these values' text changes (comments and layout
	// stay), the whole new text is validated, the write is atomic, and a
	// file edited since it was read here is refused.
	if _, _, err := config.Edit(cfgPath, config.RevisionOf(data), sets); err != nil {
		return promotion{}, fmt.Errorf("%s %s: %w", rec.Action, cfgPath, err)
	}
	if err := appendPromotion(promotionsFile(cfgPath), rec); err != nil {
		return rec, fmt.Errorf("%s done in %s, but %w", rec.Action, cfgPath, err)
	}
	return rec, nil
}

// forestHash is the hash results carry for a bundle's forest (model.Model.ForestHash).
func forestHash(b *bundle.Bundle) string {
	data, err := os.ReadFile(b.ModelPath)
	if err != nil {
		return ""
	}
	h := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(h[:])[:16]
}

// yamlString is the string value at path (a goccy YAML path) as written in
// the file (relative paths stay relative).
func yamlString(data []byte, path string) (string, error) {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return "", err
	}
	p, err := yaml.PathString(path)
	if err != nil {
		return "", err
	}
	n, err := p.FilterFile(f)
	if err != nil || n == nil {
		return "", fmt.Errorf("%s not found", strings.TrimPrefix(path, "$."))
	}
	sn, ok := n.(*ast.StringNode)
	if !ok {
		return "", fmt.Errorf("%s is not a plain string value", strings.TrimPrefix(path, "$."))
	}
	return sn.Value, nil
}
