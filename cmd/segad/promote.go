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
	"strconv"
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
	liveRaw, err := yamlScalar(data, "$.segad.bundle")
	if err != nil {
		return promotion{}, fmt.Errorf("%s: %w", cfgPath, err)
	}
	rec := promotion{At: now.UTC(), Who: who, Config: cfgPath, OldBundle: liveRaw.value}
	sh := cfg.SegAD.Shadow
	var shadowRaw *scalarAt
	if sh != nil {
		s, err := yamlScalar(data, "$.segad.shadow.bundle")
		if err != nil {
			return promotion{}, fmt.Errorf("%s: %w", cfgPath, err)
		}
		shadowRaw = &s
		rec.OldShadow = s.value
	}
	dir := filepath.Dir(cfgPath)
	resolve := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	edits := map[*scalarAt]string{}
	if !rollback {
		rec.Action = "promote"
		if sh == nil {
			return promotion{}, fmt.Errorf("%s: segad.shadow is not set: there is no candidate to promote", cfgPath)
		}
		if sh.OwnDetectors() {
			return promotion{}, fmt.Errorf("%s: the candidate has its own detectors (segad.shadow.detectors): promote switches bundles only; move the detectors to the top-level detectors yourself, in the same edit as segad.bundle", cfgPath)
		}
		rec.NewBundle, rec.NewShadow = shadowRaw.value, liveRaw.value
		edits[&liveRaw], edits[shadowRaw] = rec.NewBundle, rec.NewShadow
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
		if liveRaw.value != last.NewBundle {
			return promotion{}, fmt.Errorf("%s: segad.bundle is %s, but the last promotion (%s, %s) made %s live: the file was edited since; roll back by hand", cfgPath, liveRaw.value, last.At.Format(time.RFC3339), last.Who, last.NewBundle)
		}
		rec.NewBundle = last.OldBundle
		edits[&liveRaw] = rec.NewBundle
		if shadowRaw != nil && shadowRaw.value == last.OldBundle {
			rec.NewShadow = last.NewBundle
			edits[shadowRaw] = rec.NewShadow
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
	out := spliceScalars(data, edits)
	if _, err := config.Parse(cfgPath, out); err != nil {
		return promotion{}, fmt.Errorf("%s %s: the edited file would not be valid, nothing written: %w", rec.Action, cfgPath, err)
	}
	if err := writeIfUnchanged(cfgPath, data, out); err != nil {
		return promotion{}, err
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

// scalarAt is a scalar value in a YAML text: where its source text is.
type scalarAt struct {
	value      string
	line, from int // 0-based line, byte offset in the line where the text starts
	to         int // byte offset in the line where it ends
}

// yamlScalar finds the string scalar at path (goccy YAML path) in data.
func yamlScalar(data []byte, path string) (scalarAt, error) {
	f, err := parser.ParseBytes(data, parser.ParseComments)
	if err != nil {
		return scalarAt{}, err
	}
	p, err := yaml.PathString(path)
	if err != nil {
		return scalarAt{}, err
	}
	n, err := p.FilterFile(f)
	if err != nil || n == nil {
		return scalarAt{}, fmt.Errorf("%s not found", strings.TrimPrefix(path, "$."))
	}
	if _, ok := n.(*ast.StringNode); !ok {
		return scalarAt{}, fmt.Errorf("%s is not a plain string value", strings.TrimPrefix(path, "$."))
	}
	tk := n.GetToken()
	lines := bytes.Split(data, []byte("\n"))
	li := tk.Position.Line - 1
	if li < 0 || li >= len(lines) {
		return scalarAt{}, fmt.Errorf("%s: position out of the file", path)
	}
	line := string(lines[li])
	// The column is 1-based and counts bytes up to the token; a quoted
	// scalar's column points at its opening quote.
	from := tk.Position.Column - 1
	if from < 0 || from > len(line) {
		return scalarAt{}, fmt.Errorf("%s: position out of the line", path)
	}
	to := scalarEnd(line, &from)
	if to < 0 {
		return scalarAt{}, fmt.Errorf("%s: a value over several lines cannot be edited here; write it on one line", strings.TrimPrefix(path, "$."))
	}
	return scalarAt{value: n.(*ast.StringNode).Value, line: li, from: from, to: to}, nil
}

// scalarEnd finds where the scalar starting at *from ends on line (-1: not
// on this line). *from is moved to the value's first character.
func scalarEnd(line string, from *int) int {
	i := *from
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	*from = i
	if i >= len(line) {
		return -1
	}
	switch line[i] {
	case '"':
		for j := i + 1; j < len(line); j++ {
			if line[j] == '\\' {
				j++
				continue
			}
			if line[j] == '"' {
				return j + 1
			}
		}
		return -1
	case '\'':
		for j := i + 1; j < len(line); j++ {
			if line[j] == '\'' {
				if j+1 < len(line) && line[j+1] == '\'' {
					j++
					continue
				}
				return j + 1
			}
		}
		return -1
	}
	// Plain: up to a comment, or the end of a flow entry.
	j := i
	for j < len(line) {
		c := line[j]
		if c == ',' || c == '}' || c == ']' || (c == '#' && j > 0 && (line[j-1] == ' ' || line[j-1] == '\t')) {
			break
		}
		j++
	}
	for j > i && (line[j-1] == ' ' || line[j-1] == '\t') {
		j--
	}
	return j
}

// spliceScalars replaces each scalar's source text with its new value,
// double-quoted, leaving every other byte (comments, layout) as it was.
func spliceScalars(data []byte, edits map[*scalarAt]string) []byte {
	lines := strings.Split(string(data), "\n")
	// Right to left within a line, so earlier offsets stay valid.
	byLine := map[int][]*scalarAt{}
	for s := range edits {
		byLine[s.line] = append(byLine[s.line], s)
	}
	for li, ss := range byLine {
		for i := 0; i < len(ss); i++ {
			for j := i + 1; j < len(ss); j++ {
				if ss[j].from > ss[i].from {
					ss[i], ss[j] = ss[j], ss[i]
				}
			}
		}
		l := lines[li]
		for _, s := range ss {
			l = l[:s.from] + strconv.Quote(edits[s]) + l[s.to:]
		}
		lines[li] = l
	}
	return []byte(strings.Join(lines, "\n"))
}

// writeIfUnchanged replaces path with out atomically (a temporary file in
// the same folder renamed over it, mode kept), unless its content is no
// longer old (someone edited it meanwhile).
func writeIfUnchanged(path string, old, out []byte) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("write config %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".promote-*")
	if err != nil {
		return fmt.Errorf("write config %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(out); err != nil {
		tmp.Close()
		return fmt.Errorf("write config %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(st.Mode().Perm()); err != nil {
		tmp.Close()
		return fmt.Errorf("write config %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write config %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write config %s: %w", tmp.Name(), err)
	}
	now, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("write config %s: %w", path, err)
	}
	if !bytes.Equal(now, old) {
		return fmt.Errorf("write config %s: the file changed while it was being edited; nothing written, run the command again", path)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write config %s: %w", path, err)
	}
	return nil
}
