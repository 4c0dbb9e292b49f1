package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"github.com/goccy/go-yaml/ast"
)

// Limits on a configuration file, checked before the YAML parser sees it.
// The parser's cost grows faster than the input on some shapes (deep flow
// nesting is quadratic: 200 KB of "[[[[" took 15 GB; an alias "billion
// laughs" is exponential), so a file that a technician could plausibly
// write passes and everything else is refused cheaply.
const (
	// MaxFileBytes bounds the file size. The complete commented example is
	// about 5 KB; a station with a thousand broker users and their ACLs
	// stays below.
	MaxFileBytes = 512 << 10
	// MaxLines bounds the number of lines.
	MaxLines = 10000
	// MaxDepth bounds the nesting of mappings, sequences and flow
	// collections. The deepest real key (mqtt.embedded.users[].acl[].topic)
	// is about 7 levels deep.
	MaxDepth = 32
	// MaxNodes bounds the number of YAML nodes, counted with every alias
	// expanded (that is what the decoder builds).
	MaxNodes = 20000
)

// fileKind names what a non-regular file is, for the error message.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	default:
		return "not a regular file"
	}
}

// readBounded reads a config file of at most MaxFileBytes. Only regular
// files are read: a FIFO would block, /dev/zero never ends, and a directory
// is a typo. The file is opened non-blocking, so a FIFO swapped in after
// the check cannot hang the open either.
func readBounded(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, &Error{File: path, Msg: fmt.Sprintf("is %s, not a regular file: give the path of the YAML configuration file", fileKind(st.Mode()))}
	}
	if st.Size() > MaxFileBytes {
		return nil, tooBig(path, st.Size())
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	if len(data) > MaxFileBytes { // grew while being read
		return nil, tooBig(path, int64(len(data)))
	}
	return data, nil
}

func tooBig(path string, n int64) error {
	return &Error{File: path, Msg: fmt.Sprintf("file is %d bytes: a configuration is at most %d bytes (%d KiB); is this the right file?", n, MaxFileBytes, MaxFileBytes>>10)}
}

// prescan checks size, line count and nesting depth on the raw text, before
// any YAML parsing. It is a conservative tokenizer: it knows comments,
// quoted scalars, block scalars (| and >), flow collections and block
// indentation, and over-estimates depth rather than under-estimating it.
func prescan(path string, data []byte) error {
	if len(data) > MaxFileBytes {
		return tooBig(path, int64(len(data)))
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return &Error{File: path, Line: 1 + bytes.Count(data[:i], []byte("\n")), Msg: "contains a NUL byte: a configuration is a text file (is this the right file?)"}
	}
	var (
		indents []int // block indentation stack
		depth   int   // block nesting of the current line
		flow    int   // flow collection nesting ([ and {)
		quote   byte  // open quoted scalar, which may span lines (' or ")
		blockAt = -1  // indentation of the line that opened a block scalar
		nodes   int
		lineNo  int
	)
	tooDeep := func() error {
		return &Error{File: path, Line: lineNo, Msg: fmt.Sprintf("nested %d levels deep: at most %d levels are allowed (a configuration is a few levels deep; check the indentation and brackets)", depth+flow, MaxDepth)}
	}
	for rest := data; len(rest) > 0; {
		var line []byte
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			line, rest = rest, nil
		}
		lineNo++
		if lineNo > MaxLines {
			return &Error{File: path, Line: lineNo, Msg: fmt.Sprintf("more than %d lines: a configuration is far shorter (is this the right file?)", MaxLines)}
		}
		line = bytes.TrimRight(line, "\r")
		indent := 0
		for indent < len(line) && line[indent] == ' ' {
			indent++
		}
		blank := indent == len(line) || line[indent] == '#'
		if blockAt >= 0 {
			if blank || indent > blockAt {
				continue // block scalar content: text, not structure
			}
			blockAt = -1
		}
		if blank && quote == 0 {
			continue
		}
		nodes++
		i := indent
		if quote == 0 && flow == 0 {
			// A new block line: its depth is the number of open
			// indentation levels (a continuation of a flow collection
			// or a quoted scalar keeps the depth it started at).
			for len(indents) > 0 && indents[len(indents)-1] >= indent {
				indents = indents[:len(indents)-1]
			}
			indents = append(indents, indent)
			depth = len(indents)
		} else if quote != 0 {
			i = 0
		}
		atValue := quote == 0 // where a collection, quote or "- " may start
		spaceAfter := func(i int) bool { return i+1 == len(line) || line[i+1] == ' ' || line[i+1] == '\t' }
		for ; i < len(line); i++ {
			ch := line[i]
			if quote != 0 {
				switch {
				case quote == '"' && ch == '\\':
					i++ // escaped character
				case quote == '\'' && ch == '\'' && i+1 < len(line) && line[i+1] == '\'':
					i++ // '' is a quote inside single quotes
				case ch == quote:
					quote, atValue = 0, false
				}
				continue
			}
			switch {
			case ch == ' ' || ch == '\t':
			case ch == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
				i = len(line) // a comment runs to the end of the line
			case atValue && (ch == '"' || ch == '\''):
				quote = ch
			case ch == '[' || ch == '{':
				if !atValue && flow == 0 {
					atValue = false // inside a plain scalar: not structure
					break
				}
				flow++
				nodes++
				atValue = true
				if depth+flow > MaxDepth {
					return tooDeep()
				}
			case (ch == ']' || ch == '}') && flow > 0:
				flow--
				atValue = false
			case ch == ',' && flow > 0:
				nodes++
				atValue = true
			case (ch == '-' || ch == '?') && atValue && flow == 0 && spaceAfter(i):
				// "- " and "? " open a nested collection on the same
				// line: "- - - x" is three sequences deep.
				depth++
				if depth+flow > MaxDepth {
					return tooDeep()
				}
			case ch == ':' && (spaceAfter(i) || (flow > 0 && i+1 < len(line) && strings.IndexByte(",]}", line[i+1]) >= 0)):
				atValue = true
			case (ch == '|' || ch == '>') && atValue && flow == 0:
				blockAt = indent // a block scalar: the lines below are text
				i = len(line)
			case (ch == '&' || ch == '!') && atValue:
				// An anchor or a tag comes before the value: skip its name.
				for i+1 < len(line) && line[i+1] != ' ' {
					i++
				}
			default:
				atValue = false
			}
		}
		if depth+flow > MaxDepth {
			return tooDeep()
		}
		if nodes > MaxNodes {
			return nodesErr(path, lineNo)
		}
	}
	return nil
}

func nodesErr(path string, line int) error {
	return &Error{File: path, Line: line, Msg: fmt.Sprintf("more than %d values (aliases counted expanded): a configuration is far smaller (is this the right file?)", MaxNodes)}
}

// errTooManyNodes stops the node counter early.
var errTooManyNodes = errors.New("too many nodes")

// nodeCounter counts the nodes the decoder would build: every node once,
// and for every alias (or merge key) the nodes of the anchor it names, so
// an alias "billion laughs" is refused before it is expanded.
type nodeCounter struct {
	anchors map[string]int
	n       int
	line    int
	err     error
}

func (c *nodeCounter) add(k int, at ast.Node) {
	c.n += k
	if c.n > MaxNodes && c.err == nil {
		c.err = errTooManyNodes
		if tk := at.GetToken(); tk != nil && tk.Position != nil {
			c.line = tk.Position.Line
		}
	}
}

func (c *nodeCounter) Visit(n ast.Node) ast.Visitor {
	if n == nil || c.err != nil {
		return nil
	}
	c.add(1, n)
	switch v := n.(type) {
	case *ast.AnchorNode:
		sub := &nodeCounter{anchors: c.anchors}
		if v.Value != nil {
			ast.Walk(sub, v.Value)
		}
		if v.Name != nil {
			c.anchors[v.Name.GetToken().Value] = sub.n
		}
		if sub.err != nil {
			c.err, c.line = sub.err, sub.line
			return nil
		}
		c.add(sub.n, n)
		return nil
	case *ast.AliasNode:
		if v.Value != nil {
			c.add(c.anchors[v.Value.GetToken().Value], n)
		}
		return nil
	}
	return c
}

// checkNodes counts the parsed file's nodes with aliases expanded.
func checkNodes(path string, docs []*ast.DocumentNode) error {
	c := &nodeCounter{anchors: map[string]int{}}
	for _, d := range docs {
		if d == nil {
			continue
		}
		ast.Walk(c, d)
		if c.err != nil {
			return nodesErr(path, c.line)
		}
	}
	return nil
}
