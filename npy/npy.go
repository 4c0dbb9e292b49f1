// Package npy reads and writes NumPy .npy files, the format the SegAD
// reference code stores anomaly maps and segmentation masks in.
//
// Only plain (non-structured) numeric arrays are supported: float32 and
// float64 (returned as float32, the type the feature extractor and XGBoost
// use), and the integer and bool types label arrays come in. Both byte orders
// and Fortran order are accepted; data always comes back in C (row-major)
// order. The reader never trusts the header's size: memory grows only with
// bytes actually read, so a forged shape cannot trigger a huge allocation.
package npy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

// magic starts every .npy file.
const magic = "\x93NUMPY"

// MaxHeaderLen bounds the header dictionary. NumPy itself refuses headers
// over 10000 bytes by default; 64 KiB leaves room for hand-written files while
// keeping a forged length from allocating much.
const MaxHeaderLen = 64 << 10

// MaxElements bounds the element count a header may declare (2^31, e.g. a
// 46000x46000 map): far above any anomaly map, far below what would overflow
// size arithmetic.
const MaxElements = 1 << 31

// Kind says which Go slice of an Array holds its data.
type Kind int

const (
	// Float holds float32 and float64 files, in Array.Float32.
	Float Kind = iota
	// Int holds bool and integer files of any width, in Array.Int.
	Int
)

// Array is a decoded .npy array in C order.
type Array struct {
	// Shape is the array's shape; an empty shape is a scalar (one element).
	Shape []int
	// Descr is the dtype as the file wrote it, e.g. "<f4", "|u1", "<i8".
	Descr string
	// Kind says whether Float32 or Int holds the data.
	Kind Kind
	// Float32 holds float data (float64 files converted, rounding to nearest).
	Float32 []float32
	// Int holds integer and bool data widened to int64.
	Int []int64
}

// Map2D returns a float array as a 2-D map: the reference code stores
// anomaly maps as (H, W), (1, H, W) or (1, 1, H, W) float32 arrays.
func (a *Array) Map2D() (w, h int, data []float32, err error) {
	shape := a.Shape
	for len(shape) > 2 && shape[0] == 1 {
		shape = shape[1:]
	}
	if len(shape) != 2 {
		return 0, 0, nil, fmt.Errorf("shape %v: want a 2-D map (H, W)", a.Shape)
	}
	if a.Kind != Float || a.Float32 == nil {
		return 0, 0, nil, fmt.Errorf("dtype %s: want a float32 map", a.Descr)
	}
	return shape[1], shape[0], a.Float32, nil
}

// Len returns the number of elements the shape declares.
func (a *Array) Len() int {
	n := 1
	for _, d := range a.Shape {
		n *= d
	}
	return n
}

// Read decodes the .npy file at path. Errors name the file.
func Read(path string) (*Array, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read npy %s: %w", path, err)
	}
	defer f.Close()
	a, err := ReadFrom(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("read npy %s: %w", path, err)
	}
	return a, nil
}

// dtype describes one supported element type.
type dtype struct {
	kind  Kind
	size  int
	float bool
	sign  bool
}

var dtypes = map[byte]map[int]dtype{
	'f': {4: {Float, 4, true, true}, 8: {Float, 8, true, true}},
	'i': {1: {Int, 1, false, true}, 2: {Int, 2, false, true}, 4: {Int, 4, false, true}, 8: {Int, 8, false, true}},
	'u': {1: {Int, 1, false, false}, 2: {Int, 2, false, false}, 4: {Int, 4, false, false}, 8: {Int, 8, false, false}},
	'b': {1: {Int, 1, false, false}},
}

// ReadFrom decodes one .npy array from r.
func ReadFrom(r io.Reader) (*Array, error) {
	pre := make([]byte, 8)
	if _, err := io.ReadFull(r, pre); err != nil {
		return nil, fmt.Errorf("npy preamble: %w", noEOF(err))
	}
	if string(pre[:6]) != magic {
		return nil, errors.New("not a .npy file (bad magic)")
	}
	major := pre[6]
	var hlen int
	switch major {
	case 1:
		b := make([]byte, 2)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, fmt.Errorf("npy header length: %w", noEOF(err))
		}
		hlen = int(binary.LittleEndian.Uint16(b))
	case 2, 3:
		b := make([]byte, 4)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, fmt.Errorf("npy header length: %w", noEOF(err))
		}
		hlen64 := binary.LittleEndian.Uint32(b)
		if hlen64 > MaxHeaderLen {
			return nil, fmt.Errorf("npy header of %d bytes exceeds the %d byte limit", hlen64, MaxHeaderLen)
		}
		hlen = int(hlen64)
	default:
		return nil, fmt.Errorf("unsupported .npy format version %d.%d", pre[6], pre[7])
	}
	hdr := make([]byte, hlen)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, fmt.Errorf("npy header: %w", noEOF(err))
	}
	h, err := parseHeader(string(hdr))
	if err != nil {
		return nil, fmt.Errorf("npy header %q: %w", strings.TrimSpace(string(hdr)), err)
	}
	dt, order, err := parseDescr(h.descr)
	if err != nil {
		return nil, err
	}
	n := 1
	for _, d := range h.shape {
		if d < 0 {
			return nil, fmt.Errorf("npy shape %v has a negative dimension", h.shape)
		}
		if d > 0 && n > MaxElements/d {
			return nil, fmt.Errorf("npy shape %v exceeds %d elements", h.shape, MaxElements)
		}
		n *= d
	}
	want := int64(n) * int64(dt.size)
	// Read through a limit so the buffer grows with real bytes only: a forged
	// header cannot make us allocate what the file does not contain.
	raw, err := io.ReadAll(io.LimitReader(r, want))
	if err != nil {
		return nil, fmt.Errorf("npy data: %w", err)
	}
	if int64(len(raw)) != want {
		return nil, fmt.Errorf("npy data truncated: shape %v of %s needs %d bytes, file has %d", h.shape, h.descr, want, len(raw))
	}
	a := &Array{Shape: h.shape, Descr: h.descr, Kind: dt.kind}
	decode(a, dt, order, raw, n)
	if h.fortran && len(h.shape) > 1 {
		reorderFortran(a)
	}
	return a, nil
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

func parseDescr(descr string) (dtype, binary.ByteOrder, error) {
	if len(descr) < 3 {
		return dtype{}, nil, fmt.Errorf("unsupported npy dtype %q", descr)
	}
	var order binary.ByteOrder
	switch descr[0] {
	case '<', '|':
		order = binary.LittleEndian
	case '>':
		order = binary.BigEndian
	case '=':
		order = binary.LittleEndian // native: every target we build for is little-endian
	default:
		return dtype{}, nil, fmt.Errorf("unsupported npy dtype %q", descr)
	}
	size, err := strconv.Atoi(descr[2:])
	if err != nil {
		return dtype{}, nil, fmt.Errorf("unsupported npy dtype %q", descr)
	}
	dt, ok := dtypes[descr[1]][size]
	if !ok {
		return dtype{}, nil, fmt.Errorf("unsupported npy dtype %q (want float32/64, integers or bool)", descr)
	}
	return dt, order, nil
}

func decode(a *Array, dt dtype, order binary.ByteOrder, raw []byte, n int) {
	if dt.kind == Float {
		a.Float32 = make([]float32, n)
		for i := range a.Float32 {
			if dt.size == 4 {
				a.Float32[i] = math.Float32frombits(order.Uint32(raw[4*i:]))
			} else {
				a.Float32[i] = float32(math.Float64frombits(order.Uint64(raw[8*i:])))
			}
		}
		return
	}
	a.Int = make([]int64, n)
	for i := range a.Int {
		var v int64
		switch dt.size {
		case 1:
			if dt.sign {
				v = int64(int8(raw[i]))
			} else {
				v = int64(raw[i])
			}
		case 2:
			u := order.Uint16(raw[2*i:])
			if dt.sign {
				v = int64(int16(u))
			} else {
				v = int64(u)
			}
		case 4:
			u := order.Uint32(raw[4*i:])
			if dt.sign {
				v = int64(int32(u))
			} else {
				v = int64(u)
			}
		case 8:
			u := order.Uint64(raw[8*i:])
			if !dt.sign && u > math.MaxInt64 {
				v = math.MaxInt64 // saturate: no label or count can be that large anyway
			} else {
				v = int64(u)
			}
		}
		a.Int[i] = v
	}
}

// reorderFortran converts column-major data to row-major in place of the
// slices (allocating one copy).
func reorderFortran(a *Array) {
	nd := len(a.Shape)
	n := a.Len()
	// Column-major strides (in elements).
	fstride := make([]int, nd)
	s := 1
	for d := 0; d < nd; d++ {
		fstride[d] = s
		s *= a.Shape[d]
	}
	idx := make([]int, nd)
	// src is the column-major offset of the current row-major index idx.
	src := func() int {
		o := 0
		for d := 0; d < nd; d++ {
			o += idx[d] * fstride[d]
		}
		return o
	}
	next := func() {
		for d := nd - 1; d >= 0; d-- {
			idx[d]++
			if idx[d] < a.Shape[d] {
				return
			}
			idx[d] = 0
		}
	}
	if a.Kind == Float {
		out := make([]float32, n)
		for i := 0; i < n; i++ {
			out[i] = a.Float32[src()]
			next()
		}
		a.Float32 = out
		return
	}
	out := make([]int64, n)
	for i := 0; i < n; i++ {
		out[i] = a.Int[src()]
		next()
	}
	a.Int = out
}

// header is the parsed header dictionary.
type header struct {
	descr   string
	fortran bool
	shape   []int
}

// parseHeader reads the Python dict literal NumPy writes, e.g.
// {'descr': '<f4', 'fortran_order': False, 'shape': (256, 256), }
func parseHeader(s string) (header, error) {
	var h header
	p := &parser{s: strings.TrimSpace(s)}
	if !p.eat('{') {
		return h, errors.New("header is not a dict")
	}
	seen := map[string]bool{}
	for {
		p.ws()
		if p.eat('}') {
			break
		}
		key, err := p.str()
		if err != nil {
			return h, err
		}
		p.ws()
		if !p.eat(':') {
			return h, fmt.Errorf("missing ':' after key %q", key)
		}
		p.ws()
		switch key {
		case "descr":
			if p.peek() == '[' {
				return h, errors.New("structured dtypes are not supported")
			}
			h.descr, err = p.str()
		case "fortran_order":
			h.fortran, err = p.boolean()
		case "shape":
			h.shape, err = p.tuple()
		default:
			return h, fmt.Errorf("unknown header key %q", key)
		}
		if err != nil {
			return h, fmt.Errorf("key %q: %w", key, err)
		}
		seen[key] = true
		p.ws()
		if p.eat(',') {
			continue
		}
		p.ws()
		if p.eat('}') {
			break
		}
		return h, fmt.Errorf("unexpected %q after key %q", p.rest(), key)
	}
	for _, k := range []string{"descr", "fortran_order", "shape"} {
		if !seen[k] {
			return h, fmt.Errorf("header lacks key %q", k)
		}
	}
	return h, nil
}

type parser struct {
	s string
	i int
}

func (p *parser) ws() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n' || p.s[p.i] == '\r') {
		p.i++
	}
}

func (p *parser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *parser) eat(c byte) bool {
	if p.peek() == c && p.i < len(p.s) {
		p.i++
		return true
	}
	return false
}

func (p *parser) rest() string {
	r := p.s[p.i:]
	if len(r) > 20 {
		r = r[:20]
	}
	return r
}

func (p *parser) str() (string, error) {
	q := p.peek()
	if q != '\'' && q != '"' {
		return "", fmt.Errorf("expected a string at %q", p.rest())
	}
	p.i++
	j := strings.IndexByte(p.s[p.i:], q)
	if j < 0 {
		return "", errors.New("unterminated string")
	}
	v := p.s[p.i : p.i+j]
	p.i += j + 1
	return v, nil
}

func (p *parser) boolean() (bool, error) {
	switch {
	case strings.HasPrefix(p.s[p.i:], "True"):
		p.i += 4
		return true, nil
	case strings.HasPrefix(p.s[p.i:], "False"):
		p.i += 5
		return false, nil
	}
	return false, fmt.Errorf("expected True or False at %q", p.rest())
}

func (p *parser) tuple() ([]int, error) {
	if !p.eat('(') {
		return nil, fmt.Errorf("expected a tuple at %q", p.rest())
	}
	shape := []int{}
	for {
		p.ws()
		if p.eat(')') {
			return shape, nil
		}
		j := p.i
		for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
		}
		if j == p.i {
			return nil, fmt.Errorf("expected a dimension at %q", p.rest())
		}
		if p.i-j > 12 {
			return nil, fmt.Errorf("dimension %s too large", p.s[j:p.i])
		}
		d, _ := strconv.Atoi(p.s[j:p.i])
		p.eat('L') // Python 2 longs
		shape = append(shape, d)
		if len(shape) > 32 {
			return nil, errors.New("more than 32 dimensions")
		}
		p.ws()
		if p.eat(',') {
			continue
		}
		p.ws()
		if p.eat(')') {
			return shape, nil
		}
		return nil, fmt.Errorf("unexpected %q in shape", p.rest())
	}
}

// WriteFloat32 writes data with the given shape as a little-endian float32
// .npy file (format 1.0), atomically: a temporary file renamed into place, so
// readers never see half a file.
func WriteFloat32(path string, shape []int, data []float32) error {
	raw := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	return writeFile(path, "<f4", shape, len(data), raw)
}

// WriteUint8 writes data with the given shape as a uint8 .npy file, the type
// label masks are stored in.
func WriteUint8(path string, shape []int, data []uint8) error {
	return writeFile(path, "|u1", shape, len(data), data)
}

// WriteTo writes one array with the given dtype descr and raw little-endian
// payload to w. It is the primitive the typed writers use.
func WriteTo(w io.Writer, descr string, shape []int, raw []byte) error {
	var sb strings.Builder
	fmt.Fprintf(&sb, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr)
	for i, d := range shape {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(strconv.Itoa(d))
	}
	if len(shape) == 1 {
		sb.WriteString(",")
	}
	sb.WriteString("), }")
	// NumPy pads the header with spaces and a newline so that the data
	// starts on a 64-byte boundary.
	hl := sb.Len() + 1
	total := len(magic) + 2 + 2 + hl
	pad := (64 - total%64) % 64
	hdr := sb.String() + strings.Repeat(" ", pad) + "\n"
	if len(hdr) > math.MaxUint16 {
		return errors.New("npy header too long")
	}
	var buf bytes.Buffer
	buf.WriteString(magic)
	buf.Write([]byte{1, 0})
	var hb [2]byte
	binary.LittleEndian.PutUint16(hb[:], uint16(len(hdr)))
	buf.Write(hb[:])
	buf.WriteString(hdr)
	if _, err := w.Write(buf.Bytes()); err != nil {
		return err
	}
	_, err := w.Write(raw)
	return err
}

func writeFile(path, descr string, shape []int, n int, raw []byte) error {
	want := 1
	for _, d := range shape {
		if d < 0 {
			return fmt.Errorf("write npy %s: negative dimension in shape %v", path, shape)
		}
		want *= d
	}
	if want != n {
		return fmt.Errorf("write npy %s: shape %v holds %d elements, data has %d", path, shape, want, n)
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("write npy %s: %w", path, err)
	}
	w := bufio.NewWriter(f)
	err = WriteTo(w, descr, shape, raw)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write npy %s: %w", path, err)
	}
	return nil
}
