package config

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/segad-edge/segad-edge/mqtt/mqttconfig"
)

// The tests in this file keep the documentation from drifting away from the
// code: the defaults are written once (Defaults and the sections' own
// Defaults), the keys once (the yaml tags of Config and its sections), and
// config/example.yaml, README.md and docs/*.md are held against them.

// Markers in config/example.yaml. The rule (also in the file's header): a
// key shows its default unless its line comment says REQUIRED (a value the
// file must give) or EXAMPLE (an illustration, such as a station name or a
// user of the embedded broker). A marker covers everything nested under the
// key.
const (
	markRequired = "REQUIRED"
	markExample  = "EXAMPLE"
)

// TestExampleShowsDefaults holds every key config/example.yaml shows to
// the default value: the example parsed must equal, key by key, the
// configuration that keeps only its REQUIRED lines (which Parse completes
// with the defaults), except under keys marked REQUIRED or EXAMPLE.
func TestExampleShowsDefaults(t *testing.T) {
	const path = "/etc/segad/segad.yaml"
	full, err := Parse(path, Example)
	if err != nil {
		t.Fatalf("example: %v", err)
	}
	lines := strings.Split(string(Example), "\n")
	required := requiredOnly(lines)
	defaults, err := Parse(path, []byte(required))
	if err != nil {
		t.Fatalf("the example's REQUIRED lines alone do not make a valid configuration: %v\n%s", err, required)
	}
	marked := func(p string) string { // the marker on p or a key above it
		for ; p != "$"; p = parentPath(p) {
			if l := full.lines[p]; l > 0 {
				for _, m := range []string{markRequired, markExample} {
					if strings.Contains(lineComment(lines[l-1]), m) {
						return m
					}
				}
			}
		}
		return ""
	}
	checked := 0
	for _, p := range leafPaths(full.lines) {
		if marked(p) != "" {
			continue
		}
		got, err := valueAt(reflect.ValueOf(full).Elem(), pathTokens(p))
		if err != nil {
			t.Errorf("example.yaml:%d: %s: %v", full.lines[p], p, err)
			continue
		}
		want, err := valueAt(reflect.ValueOf(defaults).Elem(), pathTokens(p))
		if err != nil {
			t.Errorf("example.yaml:%d: %s has no default (%v): mark it %s or %s", full.lines[p], p, err, markRequired, markExample)
			continue
		}
		checked++
		if !reflect.DeepEqual(got.Interface(), want.Interface()) {
			t.Errorf("example.yaml:%d: %s shows %v, but the default is %v (fix the example, or mark the key %s or %s)",
				full.lines[p], strings.TrimPrefix(p, "$."), show(got), show(want), markRequired, markExample)
		}
	}
	if checked < 40 {
		t.Errorf("only %d keys checked: the example or this test lost its keys", checked)
	}
	if !strings.Contains(string(Example), markRequired) || !strings.Contains(string(Example), markExample) {
		t.Errorf("the example's header should explain the %s and %s markers", markRequired, markExample)
	}
}

// TestDocumentedKeysExist holds the keys that README.md and docs/*.md
// document (their YAML blocks of keys and defaults, and their tables'
// key columns) against the schema: every key must be a yaml tag in
// Config or one of its sections, found by walking the structs.
func TestDocumentedKeysExist(t *testing.T) {
	root := filepath.Join("..")
	docs := []struct {
		file    string
		section string // the section a table's relative keys are in
	}{
		{"README.md", ""},
		{"docs/capture.md", "capture"},
		{"docs/infer.md", "detectors"},
		{"docs/mqtt.md", "mqtt"},
		{"docs/limits.md", ""},
		{"docs/assurance.md", ""},
		{"docs/console.md", "console"},
		{"docs/segad.md", "segad.mask"},
	}
	schema := reflect.TypeOf(Config{})
	total := 0
	for _, d := range docs {
		text, err := os.ReadFile(filepath.Join(root, d.file))
		if err != nil {
			t.Fatal(err)
		}
		keys := map[string]int{} // dotted key -> line
		for _, b := range yamlBlocks(text) {
			f, err := parser.ParseBytes([]byte(b.text), 0)
			if err != nil {
				t.Errorf("%s:%d: YAML block does not parse: %v", d.file, b.line, err)
				continue
			}
			idx := map[string]int{}
			for _, doc := range f.Docs {
				ast.Walk(lineVisitor(idx), doc)
			}
			for p, l := range idx {
				keys[p] = b.line + l
			}
		}
		for k, l := range tableKeys(text, d.section) {
			keys["$."+k] = l
		}
		if len(keys) == 0 {
			t.Errorf("%s: no documented keys found: the test no longer reads this file", d.file)
		}
		for p, l := range keys {
			total++
			if err := typeAt(schema, pathTokens(p)); err != nil {
				t.Errorf("%s:%d: documents %s, which is not a configuration key: %v", d.file, l, strings.TrimPrefix(p, "$."), err)
			}
		}
	}
	t.Logf("%d documented keys checked", total)
	if total < 100 {
		t.Errorf("only %d documented keys found", total)
	}
}

// requiredOnly returns the YAML lines marked REQUIRED and the keys they
// are nested in.
func requiredOnly(lines []string) string {
	type entry struct {
		indent, line int
		required     bool // marked, or nested in a marked key
	}
	var stack []entry
	keep := make([]bool, len(lines))
	for i, l := range lines {
		trimmed := strings.TrimSpace(l)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		indent := len(l) - len(strings.TrimLeft(l, " "))
		for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
			stack = stack[:len(stack)-1]
		}
		req := strings.Contains(lineComment(l), markRequired) ||
			(len(stack) > 0 && stack[len(stack)-1].required)
		if req {
			keep[i] = true
			for _, e := range stack {
				keep[e.line] = true
			}
		}
		stack = append(stack, entry{indent, i, req})
	}
	var b strings.Builder
	for i, l := range lines {
		if keep[i] {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// lineComment is the comment at the end of a YAML line ("" if none): the
// text after the first " #" outside quotes.
func lineComment(l string) string {
	var quote rune
	for i, r := range l {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '"' || r == '\'':
			quote = r
		case r == '#' && (i == 0 || l[i-1] == ' '):
			return l[i:]
		}
	}
	return ""
}

// leafPaths are the paths of lines that are not parents of other paths.
func leafPaths(lines map[string]int) []string {
	var out []string
	for p := range lines {
		leaf := true
		for q := range lines {
			if strings.HasPrefix(q, p+".") || strings.HasPrefix(q, p+"[") {
				leaf = false
				break
			}
		}
		if leaf {
			out = append(out, p)
		}
	}
	return out
}

// parentPath strips the last element of a YAML path ("$.a.b[0]" -> "$.a.b").
func parentPath(p string) string {
	if i := strings.LastIndexAny(p, ".["); i > 0 {
		return p[:i]
	}
	return "$"
}

// pathTokens splits "$.a.b[0].c" into "a", "b", "[0]", "c".
func pathTokens(p string) []string {
	var out []string
	for _, part := range strings.Split(strings.TrimPrefix(p, "$."), ".") {
		for part != "" {
			i := strings.IndexByte(part, '[')
			switch {
			case i < 0:
				out, part = append(out, part), ""
			case i > 0:
				out, part = append(out, part[:i]), part[i:]
			default:
				j := strings.IndexByte(part, ']')
				out, part = append(out, part[:j+1]), part[j+1:]
			}
		}
	}
	return out
}

// yamlTag is a struct field's key ("" for none, "-" for skipped).
func yamlTag(f reflect.StructField) (name string, inline bool) {
	tag, ok := f.Tag.Lookup("yaml")
	if !ok {
		return "", false
	}
	name, opts, _ := strings.Cut(tag, ",")
	return name, strings.Contains(opts, "inline")
}

// fieldByKey finds the field with yaml key in struct type t (inlined
// structs included) and returns its index path.
func fieldByKey(t reflect.Type, key string) ([]int, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, inline := yamlTag(f)
		if inline {
			if sub, ok := fieldByKey(f.Type, key); ok {
				return append([]int{i}, sub...), true
			}
			continue
		}
		if name == key && name != "-" && name != "" {
			return []int{i}, true
		}
	}
	return nil, false
}

// unmarshaler reports whether t decodes itself (a scalar in the schema,
// whatever its Go shape).
func unmarshaler(t reflect.Type) bool {
	u := reflect.TypeOf((*yaml.BytesUnmarshaler)(nil)).Elem()
	return t.Implements(u) || reflect.PointerTo(t).Implements(u)
}

// typeAt checks that the key path exists in the schema.
func typeAt(t reflect.Type, toks []string) error {
	for n, tok := range toks {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if strings.HasPrefix(tok, "[") {
			if t.Kind() != reflect.Slice {
				return fmt.Errorf("%s is not a list", strings.Join(toks[:n], "."))
			}
			t = t.Elem()
			continue
		}
		if t.Kind() == reflect.Slice { // "detectors.model": a key of every element
			t = t.Elem()
			for t.Kind() == reflect.Pointer {
				t = t.Elem()
			}
		}
		if t.Kind() == reflect.Map { // "segad.mask.area.rubber": the user names the keys
			t = t.Elem()
			continue
		}
		if t.Kind() != reflect.Struct || unmarshaler(t) {
			return fmt.Errorf("%s takes a value, not keys", strings.Join(toks[:n], "."))
		}
		idx, ok := fieldByKey(t, tok)
		if !ok {
			return fmt.Errorf("no key %q in %s", tok, t)
		}
		t = t.FieldByIndex(idx).Type
	}
	return nil
}

// valueAt returns the value at the key path of v.
func valueAt(v reflect.Value, toks []string) (reflect.Value, error) {
	for n, tok := range toks {
		for v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return v, fmt.Errorf("%s is not set", strings.Join(toks[:n], "."))
			}
			v = v.Elem()
		}
		if strings.HasPrefix(tok, "[") {
			i, _ := strconv.Atoi(strings.Trim(tok, "[]"))
			if v.Kind() != reflect.Slice || i >= v.Len() {
				return v, fmt.Errorf("%s has no element %d", strings.Join(toks[:n], "."), i)
			}
			v = v.Index(i)
			continue
		}
		if v.Kind() != reflect.Struct {
			return v, fmt.Errorf("%s takes a value, not keys", strings.Join(toks[:n], "."))
		}
		idx, ok := fieldByKey(v.Type(), tok)
		if !ok {
			return v, fmt.Errorf("no key %q in %s", tok, v.Type())
		}
		v = v.FieldByIndex(idx)
	}
	return v, nil
}

type block struct {
	text string
	line int // the line before the block's first line
}

// yamlBlocks are the ```yaml fenced blocks of a Markdown text.
func yamlBlocks(md []byte) []block {
	var out []block
	var cur *block
	var b strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(md))
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		switch {
		case cur == nil && strings.TrimSpace(l) == "```yaml":
			cur = &block{line: n}
			b.Reset()
		case cur != nil && strings.TrimSpace(l) == "```":
			cur.text = b.String()
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			b.WriteString(l + "\n")
		}
	}
	return out
}

var backticked = regexp.MustCompile("`([a-z_][a-z0-9_.]*)`")

// tableKeys are the keys in the key columns of a Markdown text's tables
// (a column whose header starts with "key"), by dotted path. A key whose
// first element is not a top-level key is relative to section; a bare name
// after a dotted one in the same cell is that one's sibling
// ("`mqtt.outbox.max_results`, `max_bytes`").
func tableKeys(md []byte, section string) map[string]int {
	top := reflect.TypeOf(Config{})
	out := map[string]int{}
	col := -1
	for n, l := range strings.Split(string(md), "\n") {
		if !strings.HasPrefix(l, "|") {
			col = -1
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		if col < 0 {
			col = -2 // a table without a key column
			for i, c := range cells {
				if strings.HasPrefix(strings.TrimSpace(c), "key") {
					col = i
				}
			}
			continue
		}
		if col < 0 || col >= len(cells) {
			continue
		}
		parent := ""
		for _, m := range backticked.FindAllStringSubmatch(cells[col], -1) {
			k := m[1]
			first, _, dotted := strings.Cut(k, ".")
			if _, ok := fieldByKey(top, first); !ok {
				if !dotted && parent != "" {
					k = parent + "." + k
				} else if section != "" {
					k = section + "." + k
				}
			}
			if i := strings.LastIndexByte(k, '.'); i > 0 {
				parent = k[:i]
			}
			out[k] = n + 1
		}
	}
	return out
}

// TestDocumentedDefaults holds the YAML blocks that say they show the
// defaults (README's configuration reference, docs/capture.md) to the
// defaults, by the example's rule: a value is the default unless its key
// (or one above it) is marked REQUIRED or EXAMPLE.
func TestDocumentedDefaults(t *testing.T) {
	for _, file := range []string{"README.md", "docs/capture.md"} {
		text, err := os.ReadFile(filepath.Join("..", file))
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range yamlBlocks(text) {
			lines := strings.Split(b.text, "\n")
			shown, err := decodeWithDefaults(b.text)
			if err != nil {
				t.Errorf("%s:%d: %v", file, b.line, err)
				continue
			}
			defaults, err := decodeWithDefaults(requiredOnly(lines))
			if err != nil {
				t.Errorf("%s:%d: REQUIRED lines: %v", file, b.line, err)
				continue
			}
			for _, p := range leafPaths(shown.lines) {
				// fit: keys default to the paper's values, which live in
				// package fit (TestDocumentedFitDefaults there).
				if markedAt(shown.lines, lines, p) || strings.HasPrefix(p, "$.fit.") {
					continue
				}
				l := b.line + shown.lines[p]
				got, err := valueAt(reflect.ValueOf(shown).Elem(), pathTokens(p))
				if err != nil {
					t.Errorf("%s:%d: %s: %v", file, l, p, err)
					continue
				}
				want, err := valueAt(reflect.ValueOf(defaults).Elem(), pathTokens(p))
				if err != nil {
					t.Errorf("%s:%d: %s has no default (%v): mark it %s or %s", file, l, p, err, markRequired, markExample)
					continue
				}
				if !reflect.DeepEqual(got.Interface(), want.Interface()) {
					t.Errorf("%s:%d: %s shows %v, but the default is %v (fix the document, or mark the key %s or %s)",
						file, l, strings.TrimPrefix(p, "$."), show(got), show(want), markRequired, markExample)
				}
			}
		}
	}
}

// decodeWithDefaults decodes a YAML fragment as Parse does, without
// resolving paths or validating.
func decodeWithDefaults(text string) (*Config, error) {
	f, err := parser.ParseBytes([]byte(text), 0)
	if err != nil {
		return nil, err
	}
	c := &Config{MQTT: mqttconfig.Defaults()}
	if err := yaml.UnmarshalWithOptions([]byte(text), c, yaml.Strict()); err != nil {
		return nil, err
	}
	c.lines = lineIndex(f)
	c.Defaults()
	return c, nil
}

// markedAt reports whether the key at path p, or one above it, is marked
// REQUIRED or EXAMPLE in lines (indexed by lines, 1-based).
func markedAt(index map[string]int, lines []string, p string) bool {
	for ; p != "$"; p = parentPath(p) {
		if l := index[p]; l > 0 && l <= len(lines) {
			c := lineComment(lines[l-1])
			if strings.Contains(c, markRequired) || strings.Contains(c, markExample) {
				return true
			}
		}
	}
	return false
}

// show formats a value for an error, through pointers.
func show(v reflect.Value) string {
	for v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	return fmt.Sprintf("%v", v.Interface())
}
