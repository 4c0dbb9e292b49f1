package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Revision names the exact bytes of a config file ("sha256:<hex>"): an
// editor reads it with the file and hands it back with its edit, so that
// a file changed on disk in between is never overwritten.
type Revision string

// RevisionOf is the revision of config file bytes.
func RevisionOf(data []byte) Revision {
	sum := sha256.Sum256(data)
	return Revision("sha256:" + hex.EncodeToString(sum[:]))
}

// FileRevision is the revision of the config file at path.
func FileRevision(path string) (Revision, error) {
	data, err := readBounded(path)
	if err != nil {
		return "", err
	}
	return RevisionOf(data), nil
}

// Set is one key to set by Edit.
type Set struct {
	// Key is the dotted key, e.g. "segad.threshold" (mapping keys only).
	Key string
	// Value is a float64 or a string.
	Value any
}

// FileChange is one key Edit changed, as written in the file ("" Old for a
// key that was absent).
type FileChange struct {
	Key, Old, New string
}

// ConflictError is Edit refusing a file that changed on disk since its
// revision was read.
type ConflictError struct {
	// Path is the config file.
	Path string
	// Expected is the revision the edit was based on, Current the file's.
	Expected, Current Revision
}

// Error says what happened and what to do.
func (e *ConflictError) Error() string {
	return fmt.Sprintf("the config file %s changed on disk since it was read (read %s, now %s): reload and try again",
		e.Path, short(e.Expected), short(e.Current))
}

func short(r Revision) string {
	if len(r) > 19 {
		return string(r[:19])
	}
	return string(r)
}

// editMu serialises edits within the process, so two consoles applying at
// once are ordered and the second sees the first's revision (a conflict).
var editMu sync.Mutex

// Edit sets keys in the YAML config file at path and leaves every other
// byte as it was: comments, order, blank lines, quoting and indentation.
// A scalar's text is replaced in place; an absent key is inserted under its
// parent mapping with the siblings' indentation (parents are created as
// needed). expect, unless "", must be the file's current revision, else
// *ConflictError. The edited text must pass Parse (full validation) before
// it is written; it is written atomically (a temporary file in the same
// folder, fsync, rename; the file mode kept; a symlinked config has its
// target edited). On any error nothing is written. It returns the new
// revision and the keys whose text changed.
func Edit(path string, expect Revision, sets []Set) (Revision, []FileChange, error) {
	editMu.Lock()
	defer editMu.Unlock()
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", nil, fmt.Errorf("edit config %s: %w", path, err)
	}
	data, err := readBounded(target)
	if err != nil {
		return "", nil, err
	}
	cur := RevisionOf(data)
	if expect != "" && expect != cur {
		return "", nil, &ConflictError{Path: path, Expected: expect, Current: cur}
	}
	out, changes, err := applySets(path, data, sets)
	if err != nil {
		return "", nil, err
	}
	if len(changes) == 0 {
		return cur, nil, nil
	}
	if _, err := Parse(path, out); err != nil {
		return "", nil, fmt.Errorf("the edited config would not be valid, nothing was written: %w", err)
	}
	if err := writeAtomic(target, out, data); err != nil {
		if errors.As(err, new(*ConflictError)) {
			return "", nil, err
		}
		return "", nil, fmt.Errorf("write config %s: %w (nothing was changed)", path, err)
	}
	return RevisionOf(out), changes, nil
}

// writeAtomic replaces target with data unless it no longer holds was
// (an editor outside this process saved meanwhile).
func writeAtomic(target string, data, was []byte) error {
	st, err := os.Stat(target)
	if err != nil {
		return err
	}
	dir := filepath.Dir(target)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(target)+".segad-edit-*")
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Chmod(st.Mode().Perm()); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// The last look before the rename narrows the window for a writer
	// outside this process to the rename itself.
	now, err := readBounded(target)
	if err != nil {
		return err
	}
	if !bytes.Equal(now, was) {
		return &ConflictError{Path: target, Expected: RevisionOf(was), Current: RevisionOf(now)}
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		return err
	}
	done = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // the rename itself survives a power cut
		d.Close()
	}
	return nil
}

// applySets applies the sets one by one, re-parsing between them.
func applySets(path string, data []byte, sets []Set) ([]byte, []FileChange, error) {
	if len(sets) == 0 {
		return nil, nil, errors.New("edit config: nothing to set")
	}
	var changes []FileChange
	for _, s := range sets {
		text, err := formatValue(s.Value)
		if err != nil {
			return nil, nil, &Error{File: path, Key: s.Key, Msg: err.Error()}
		}
		out, old, err := setKey(data, s.Key, text)
		if err != nil {
			return nil, nil, &Error{File: path, Key: s.Key, Msg: err.Error()}
		}
		if old != text {
			changes = append(changes, FileChange{Key: s.Key, Old: old, New: text})
		}
		data = out
	}
	return data, changes, nil
}

// formatValue is the YAML text of a value: floats in Go's shortest form,
// strings plain when they read back as the same string, else quoted.
func formatValue(v any) (string, error) {
	switch x := v.(type) {
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return "", fmt.Errorf("%v is not a finite number", x)
		}
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case string:
		if !utf8.ValidString(x) {
			return "", errors.New("the value is not valid UTF-8")
		}
		if x != "" && !strings.ContainsAny(x, "\n\r\t#'\"") && !yaml11Word(x) {
			var back map[string]any
			if yaml.Unmarshal([]byte("v: "+x), &back) == nil {
				if s, ok := back["v"].(string); ok && s == x {
					return x, nil
				}
			}
		}
		return strconv.Quote(x), nil
	}
	return "", fmt.Errorf("value of type %T: want a number or a string", v)
}

// yaml11Word: words YAML 1.1 readers (PyYAML, older tools a plant may run
// on the file) take for booleans or null; quoted so every reader agrees.
func yaml11Word(s string) bool {
	switch strings.ToLower(s) {
	case "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~":
		return true
	}
	return false
}

// setKey sets the dotted key to text in data, returning the key's old text
// (decoded scalar value; "" when absent or empty).
func setKey(data []byte, key, text string) ([]byte, string, error) {
	parts := strings.Split(key, ".")
	for _, p := range parts {
		if p == "" || strings.ContainsAny(p, "[]: #") {
			return nil, "", fmt.Errorf("want a dotted key of mapping keys, like segad.threshold")
		}
	}
	f, err := parser.ParseBytes(data, parser.ParseComments)
	if err != nil {
		return nil, "", fmt.Errorf("the config file does not parse: %v", err)
	}
	if len(f.Docs) != 1 || f.Docs[0].Body == nil {
		return nil, "", errors.New("the config file should hold one YAML document")
	}
	root, ok := mappingOf(f.Docs[0].Body)
	if !ok {
		return nil, "", errors.New("the config file's top level is not a mapping")
	}
	lines := splitLines(data)
	m := root
	for i, p := range parts {
		mv := find(m, p)
		if mv == nil {
			return insert(data, lines, m, i == 0, parts[i:], text)
		}
		if i == len(parts)-1 {
			return replace(data, lines, mv, text)
		}
		next, ok := mappingOf(mv.Value)
		if !ok {
			return nil, "", fmt.Errorf("%s is not a mapping in the file: edit it by hand", strings.Join(parts[:i+1], "."))
		}
		if next.IsFlowStyle {
			return nil, "", fmt.Errorf("%s is written as a flow mapping {...}: edit it by hand, or write it as one key per line", strings.Join(parts[:i+1], "."))
		}
		m = next
	}
	return nil, "", errors.New("empty key")
}

// mappingOf is n as a mapping (a one-key mapping parses as a lone value).
func mappingOf(n ast.Node) (*ast.MappingNode, bool) {
	switch t := n.(type) {
	case *ast.MappingNode:
		return t, true
	case *ast.MappingValueNode:
		return &ast.MappingNode{BaseNode: t.BaseNode, Start: t.Start, Values: []*ast.MappingValueNode{t}}, true
	}
	return nil, false
}

func find(m *ast.MappingNode, key string) *ast.MappingValueNode {
	for _, mv := range m.Values {
		if mv.Key != nil && mv.Key.GetToken() != nil && mv.Key.GetToken().Value == key {
			return mv
		}
	}
	return nil
}

// line is one line of the file: its byte range without the newline.
type line struct{ start, end int }

func splitLines(data []byte) []line {
	var out []line
	start := 0
	for i, b := range data {
		if b == '\n' {
			out = append(out, line{start, i})
			start = i + 1
		}
	}
	if start < len(data) {
		out = append(out, line{start, len(data)})
	}
	return out
}

// offset is the byte offset of a token position (1-based line, 1-based
// column in characters).
func offset(data []byte, lines []line, p *token.Position) (int, error) {
	if p == nil || p.Line < 1 || p.Line > len(lines) {
		return 0, errors.New("the parser gave no position for the key")
	}
	l := lines[p.Line-1]
	off := l.start
	for col := 1; col < p.Column; col++ {
		if off >= l.end {
			return 0, errors.New("position beyond the end of its line")
		}
		_, size := utf8.DecodeRune(data[off:l.end])
		off += size
	}
	return off, nil
}

// replace puts text in place of mv's scalar value (or after its colon
// when the value is empty).
func replace(data []byte, lines []line, mv *ast.MappingValueNode, text string) ([]byte, string, error) {
	kt := mv.Key.GetToken()
	switch mv.Value.(type) {
	case *ast.IntegerNode, *ast.FloatNode, *ast.StringNode, *ast.NullNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
	default:
		return nil, "", fmt.Errorf("holds a %s, not a single value: edit it by hand", mv.Value.Type())
	}
	vt := mv.Value.GetToken()
	keyLine := lines[kt.Position.Line-1]
	start, err := offset(data, lines, vt.Position)
	if err != nil {
		return nil, "", err
	}
	if vt.Position.Line != kt.Position.Line || start >= keyLine.end || isCommentOrBlank(data[start:keyLine.end]) {
		// An empty value: insert after the colon that follows the key.
		ks, err := offset(data, lines, kt.Position)
		if err != nil {
			return nil, "", err
		}
		colon := bytes.IndexByte(data[ks:keyLine.end], ':')
		if colon < 0 {
			return nil, "", errors.New("no colon after the key on its line")
		}
		at := ks + colon + 1
		return splice(data, at, at, " "+text), "", nil
	}
	end, err := scalarEnd(data[start:keyLine.end])
	if err != nil {
		return nil, "", err
	}
	old := vt.Value
	if _, null := mv.Value.(*ast.NullNode); null {
		old = ""
	}
	return splice(data, start, start+end, text), old, nil
}

func isCommentOrBlank(b []byte) bool {
	t := bytes.TrimSpace(b)
	return len(t) == 0 || t[0] == '#'
}

// scalarEnd is the length of the one-line scalar at the start of b
// (quoted, or plain up to a comment or the end of the line).
func scalarEnd(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, errors.New("no value")
	}
	switch b[0] {
	case '"':
		for i := 1; i < len(b); i++ {
			switch b[i] {
			case '\\':
				i++
			case '"':
				return i + 1, nil
			}
		}
		return 0, errors.New("a quoted value that spans lines: edit it by hand")
	case '\'':
		for i := 1; i < len(b); i++ {
			if b[i] == '\'' {
				if i+1 < len(b) && b[i+1] == '\'' {
					i++
					continue
				}
				return i + 1, nil
			}
		}
		return 0, errors.New("a quoted value that spans lines: edit it by hand")
	case '|', '>', '[', '{', '&', '*', '!':
		return 0, errors.New("a block, flow, anchored or tagged value: edit it by hand")
	}
	end := len(b)
	if i := bytes.Index(b, []byte(" #")); i >= 0 {
		end = i
	}
	if i := bytes.Index(b, []byte("\t#")); i >= 0 && i < end {
		end = i
	}
	return len(bytes.TrimRight(b[:end], " \t\r")), nil
}

func splice(data []byte, from, to int, text string) []byte {
	out := make([]byte, 0, len(data)-(to-from)+len(text))
	out = append(out, data[:from]...)
	out = append(out, text...)
	return append(out, data[to:]...)
}

// insert adds the missing keys rest (the first missing under m) with
// text as the last one's value.
func insert(data []byte, lines []line, m *ast.MappingNode, top bool, rest []string, text string) ([]byte, string, error) {
	indent, at := 0, len(data)
	if !top {
		if m.IsFlowStyle {
			return nil, "", errors.New("its parent is written as a flow mapping {...}: edit it by hand")
		}
		first := m.Values[0].Key.GetToken().Position
		indent = first.Column - 1
		// After the last child whose value sits on its own key's line;
		// else just above the first child.
		at = -1
		for _, mv := range m.Values {
			if oneLine(data, lines, mv) {
				at = lines[mv.Key.GetToken().Position.Line-1].end + 1
			}
		}
		if at < 0 {
			at = lines[first.Line-1].start
		}
	}
	nl := "\n"
	if bytes.Contains(data, []byte("\r\n")) {
		nl = "\r\n" // a file saved on Windows keeps its line ends
	}
	var b strings.Builder
	if at == len(data) && len(data) > 0 && data[len(data)-1] != '\n' {
		b.WriteString(nl)
	}
	if at > len(data) { // the last line has no newline
		at = len(data)
		b.WriteString(nl)
	}
	for i, k := range rest {
		b.WriteString(strings.Repeat(" ", indent+2*i))
		b.WriteString(k)
		b.WriteByte(':')
		if i == len(rest)-1 {
			b.WriteString(" " + text)
		}
		b.WriteString(nl)
	}
	return splice(data, at, at, b.String()), "", nil
}

// oneLine: mv's value is a scalar written on the key's line.
func oneLine(data []byte, lines []line, mv *ast.MappingValueNode) bool {
	switch mv.Value.(type) {
	case *ast.IntegerNode, *ast.FloatNode, *ast.StringNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode, *ast.NullNode:
	default:
		return false
	}
	kl, vt := mv.Key.GetToken().Position.Line, mv.Value.GetToken()
	if vt.Position.Line != kl {
		return false
	}
	start, err := offset(data, lines, vt.Position)
	if err != nil {
		return false
	}
	l := lines[kl-1]
	if start >= l.end || isCommentOrBlank(data[start:l.end]) {
		return true // empty value
	}
	_, err = scalarEnd(data[start:l.end])
	return err == nil
}

// EditThresholds sets segad.threshold and/or segad.warn_threshold (nil
// leaves a key as it is) through Edit, after checking each value with a
// message that names the key: a finite number within ±MaxThreshold, and
// the warn threshold below the threshold (the file's other value counts
// when only one is given).
func EditThresholds(path string, expect Revision, threshold, warn *float64) (Revision, []FileChange, error) {
	if threshold == nil && warn == nil {
		return "", nil, errors.New("edit thresholds: neither segad.threshold nor segad.warn_threshold given")
	}
	check := func(key string, v *float64) error {
		if v == nil {
			return nil
		}
		if math.IsNaN(*v) || math.IsInf(*v, 0) {
			return &Error{File: path, Key: key, Msg: fmt.Sprintf("%v is not a finite number: give a score such as 0.5", *v)}
		}
		if math.Abs(*v) > MaxThreshold {
			return &Error{File: path, Key: key, Msg: fmt.Sprintf("%v out of range [%v, %v]: the score is the forest's margin, typically within ±20", *v, -MaxThreshold, MaxThreshold)}
		}
		return nil
	}
	if err := errors.Join(check("segad.threshold", threshold), check("segad.warn_threshold", warn)); err != nil {
		return "", nil, err
	}
	t, w := threshold, warn
	if t == nil || w == nil {
		cur, err := Load(path)
		if err != nil {
			return "", nil, fmt.Errorf("edit thresholds: read the current config: %w", err)
		}
		if t == nil {
			t = cur.SegAD.Threshold
		}
		if w == nil {
			w = cur.SegAD.WarnThreshold
		}
	}
	if t != nil && w != nil && !(*w < *t) {
		return "", nil, &Error{File: path, Key: "segad.warn_threshold",
			Msg: fmt.Sprintf("%v must be below segad.threshold %v (the warn band lies under the fail threshold)", *w, *t)}
	}
	var sets []Set
	if threshold != nil {
		sets = append(sets, Set{Key: "segad.threshold", Value: *threshold})
	}
	if warn != nil {
		sets = append(sets, Set{Key: "segad.warn_threshold", Value: *warn})
	}
	return Edit(path, expect, sets)
}
