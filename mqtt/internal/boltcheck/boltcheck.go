// Package boltcheck verifies a bbolt file before bbolt opens it, and reads
// what is still readable from a damaged one.
//
// Why: bbolt trusts its file. Opened for writing without a synced freelist
// (NoFreelistSync, which the outbox uses for speed), it rebuilds the freelist
// by walking every page, and any inconsistency it meets there is raised as a
// panic in a goroutine of its own: no recover can catch it, so one damaged
// page header crash-loops the daemon under systemd. Check walks the same
// structures itself with bounds-checked reads and returns an error instead.
//
// The layout read here is bbolt's on-disk format (version 2), in the byte
// order of the machine (bbolt writes its structs as they are in memory; all
// targets of this project are little-endian).
package boltcheck

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

const (
	magic          = 0xED0CDAED
	version        = 2
	pageHeaderSize = 16
	elemSize       = 16 // branch and leaf page elements are both 16 bytes
	bucketHdrSize  = 16 // root pgid + sequence
	branchFlag     = 0x01
	leafFlag       = 0x02
	freelistFlag   = 0x10
	bucketLeafFlag = 0x01
	noFreelist     = ^uint64(0)
	// maxProblems bounds the report: one damaged page can cascade.
	maxProblems = 10
)

var le = binary.LittleEndian

// ErrCorrupt is wrapped by every error that reports damage in the file
// (as opposed to an I/O error reading it).
var ErrCorrupt = errors.New("file is damaged")

// Report describes a checked file.
type Report struct {
	// Size is the file size in bytes.
	Size int64
	// PageSize is the page size read from the meta page (0 if none was valid).
	PageSize int
	// Problems lists the first damage found (at most 10); empty when intact.
	Problems []string
}

// OK reports whether no damage was found.
func (r Report) OK() bool { return len(r.Problems) == 0 }

// Check walks every structure of the bbolt file at path that bbolt reads at
// open (meta pages, every reachable page header, branch and leaf element
// bounds, page references, key order) and reports damage as an error that
// wraps ErrCorrupt. A missing or empty file is fine (bbolt creates it).
func Check(path string) (Report, error) {
	w, err := newWalker(path)
	if w != nil {
		defer w.f.Close()
	}
	if err != nil || w == nil {
		return w.report(), err
	}
	w.walkTree(w.rootPgid, nil, nil, treeRoot)
	if w.freelist != noFreelist {
		if buf, ok := w.page(w.freelist, "freelist"); ok && le.Uint16(buf[8:]) != freelistFlag {
			w.problem("freelist page %d has type %#x, want %#x", w.freelist, le.Uint16(buf[8:]), freelistFlag)
		}
	}
	r := w.report()
	if !r.OK() {
		return r, fmt.Errorf("%w: %s", ErrCorrupt, joinProblems(r.Problems))
	}
	return r, nil
}

// Salvage calls fn with every key/value pair of the top-level bucket that
// can still be read from the file at path: those on intact leaf pages
// reachable through intact branch pages. It returns how many it found.
// Damaged parts are skipped, so on a damaged file the count is a lower
// bound of what the file held.
func Salvage(path string, bucket []byte, fn func(k, v []byte)) (int, error) {
	w, err := newWalker(path)
	if w != nil {
		defer w.f.Close()
	}
	if err != nil && !errors.Is(err, ErrCorrupt) || w == nil {
		return 0, err
	}
	if w.pageSize == 0 {
		return 0, err // no valid meta page: nothing can be located
	}
	n := 0
	w.salvage = bucket
	w.collect = func(k, v []byte) {
		n++
		fn(k, v)
	}
	w.walkTree(w.rootPgid, nil, nil, treeRoot)
	return n, nil
}

func joinProblems(ps []string) string {
	var b bytes.Buffer
	for i, p := range ps {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p)
	}
	return b.String()
}

type walker struct {
	f        *os.File
	size     int64
	pageSize int
	hwm      uint64
	rootPgid uint64
	freelist uint64
	seen     map[uint64]bool
	problems []string
	dropped  int
	// salvage names the top-level bucket whose values collect receives.
	salvage []byte
	collect func(k, v []byte)
}

// tree says which tree a page belongs to: the root (whose elements are
// the top-level buckets), the bucket being salvaged, or any other.
type tree int

const (
	treeOther tree = iota
	treeRoot
	treeSalvaged
)

func (w *walker) report() Report {
	if w == nil {
		return Report{}
	}
	ps := w.problems
	if w.dropped > 0 {
		ps = append(ps[:len(ps):len(ps)], fmt.Sprintf("and %d more", w.dropped))
	}
	return Report{Size: w.size, PageSize: w.pageSize, Problems: ps}
}

func (w *walker) problem(format string, a ...any) {
	if len(w.problems) >= maxProblems {
		w.dropped++
		return
	}
	w.problems = append(w.problems, fmt.Sprintf(format, a...))
}

// newWalker opens path and picks the meta page bbolt would use. It returns
// (nil, nil) for a missing or empty file.
func newWalker(path string) (*walker, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("check %s: %w", path, err)
	}
	w := &walker{f: f, size: fi.Size(), seen: map[uint64]bool{}}
	if w.size == 0 {
		f.Close()
		return nil, nil
	}
	// Meta page 0 sits at offset 0 and names the page size; if it is bad,
	// look for meta page 1 where bbolt does (1 KiB .. 16 MiB).
	type meta struct {
		pageSize        uint32
		root, free, hwm uint64
		txid            uint64
	}
	readMeta := func(off int64) (meta, bool) {
		var buf [pageHeaderSize + 64]byte
		if n, _ := f.ReadAt(buf[:], off); n < len(buf) {
			return meta{}, false
		}
		m := buf[pageHeaderSize:]
		h := fnv.New64a()
		h.Write(m[:56])
		if le.Uint32(m[0:]) != magic || le.Uint32(m[4:]) != version || le.Uint64(m[56:]) != h.Sum64() {
			return meta{}, false
		}
		return meta{pageSize: le.Uint32(m[8:]), root: le.Uint64(m[16:]), free: le.Uint64(m[32:]),
			hwm: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}, true
	}
	m0, ok0 := readMeta(0)
	ps := int64(m0.pageSize)
	if !ok0 {
		for i := 0; i <= 14; i++ {
			pos := int64(1024) << i
			if pos >= w.size-1024 {
				break
			}
			if m, ok := readMeta(pos); ok {
				ps = int64(m.pageSize)
				break
			}
		}
	}
	if ps < 512 || ps > 1<<24 || ps&(ps-1) != 0 {
		w.problem("no valid meta page (both meta pages fail their checksum or magic)")
		return w, fmt.Errorf("%w: %s", ErrCorrupt, w.problems[0])
	}
	m1, ok1 := readMeta(ps)
	if !ok0 {
		w.problem("meta page 0 is invalid (bbolt falls back to meta page 1)")
	}
	if !ok1 {
		w.problem("meta page 1 is invalid (bbolt falls back to meta page 0)")
	}
	// Meta damage alone is survivable (bbolt uses the other copy), so it
	// is reported only when the tree is damaged too.
	metaProblems := len(w.problems)
	m := m0
	if !ok0 || ok1 && m1.txid > m0.txid {
		m = m1
	}
	if !ok0 && !ok1 {
		w.problem("no valid meta page")
		return w, fmt.Errorf("%w: %s", ErrCorrupt, joinProblems(w.problems))
	}
	w.pageSize, w.hwm, w.rootPgid, w.freelist = int(ps), m.hwm, m.root, m.free
	if maxPages := uint64(w.size) / uint64(ps); w.hwm > maxPages {
		w.problem("meta page says %d pages but the file holds %d (truncated file?)", w.hwm, maxPages)
	}
	w.seen[0], w.seen[1] = true, true
	if metaProblems > 0 && len(w.problems) == metaProblems {
		w.problems = w.problems[:0]
	}
	return w, nil
}

// page reads page id with its overflow pages, checking the header.
func (w *walker) page(id uint64, what string) ([]byte, bool) {
	if id < 2 || id >= w.hwm {
		w.problem("%s page %d is out of bounds (the file has pages 2..%d)", what, id, w.hwm-1)
		return nil, false
	}
	off := int64(id) * int64(w.pageSize)
	var hdr [pageHeaderSize]byte
	if _, err := w.f.ReadAt(hdr[:], off); err != nil {
		w.problem("%s page %d: cannot read its header: %v", what, id, err)
		return nil, false
	}
	if got := le.Uint64(hdr[0:]); got != id {
		w.problem("%s page %d: header names page %d", what, id, got)
		return nil, false
	}
	overflow := uint64(le.Uint32(hdr[12:]))
	if id+overflow >= w.hwm {
		w.problem("%s page %d: %d overflow pages run past the last page %d", what, id, overflow, w.hwm-1)
		return nil, false
	}
	for i := uint64(0); i <= overflow; i++ {
		if w.seen[id+i] {
			w.problem("%s page %d: page %d is referenced twice", what, id, id+i)
			return nil, false
		}
		w.seen[id+i] = true
	}
	buf := make([]byte, int(overflow+1)*w.pageSize)
	if n, err := w.f.ReadAt(buf, off); n < len(buf) && !(err == nil || err == io.EOF) {
		w.problem("%s page %d: %v", what, id, err)
		return nil, false
	} else if n < len(buf) {
		w.problem("%s page %d: file ends inside the page", what, id)
		return nil, false
	}
	return buf, true
}

// walkTree checks the B+tree under page id (keys in [min, max)); bucket
// elements are followed into their own trees, and the values of the
// salvaged bucket's intact leaf pages are collected. It returns the largest
// key it saw.
func (w *walker) walkTree(id uint64, min, max []byte, t tree) []byte {
	buf, ok := w.page(id, "tree")
	if !ok {
		return nil
	}
	switch flags := le.Uint16(buf[8:]); flags {
	case branchFlag:
		count := int(le.Uint16(buf[10:]))
		if pageHeaderSize+count*elemSize > len(buf) {
			w.problem("branch page %d: %d elements do not fit in %d bytes", id, count, len(buf))
			return nil
		}
		keys := make([][]byte, count)
		kids := make([]uint64, count)
		for i := 0; i < count; i++ {
			e := pageHeaderSize + i*elemSize
			pos, ksize := int(le.Uint32(buf[e:])), int(le.Uint32(buf[e+4:]))
			kids[i] = le.Uint64(buf[e+8:])
			if pos < 0 || ksize < 0 || e+pos+ksize > len(buf) || e+pos+ksize < e {
				w.problem("branch page %d: element %d points outside the page", id, i)
				return nil
			}
			keys[i] = buf[e+pos : e+pos+ksize]
		}
		running := min
		var last []byte
		for i := 0; i < count; i++ {
			if !w.keyInOrder(id, "branch", i, keys[i], running, max) {
				return nil
			}
			next := max
			if i < count-1 {
				next = keys[i+1]
			}
			last = w.walkTree(kids[i], keys[i], next, t)
			if last == nil {
				last = keys[i]
			}
			running = last
		}
		return last
	case leafFlag:
		return w.walkLeaf(buf, min, max, fmt.Sprintf("leaf page %d", id), t)
	default:
		w.problem("tree page %d has type %#x (not a branch or leaf page)", id, flags)
		return nil
	}
}

// walkLeaf checks a leaf page held in buf (a file page or an inline bucket).
func (w *walker) walkLeaf(buf []byte, min, max []byte, what string, t tree) []byte {
	if len(buf) < pageHeaderSize {
		w.problem("%s: too short for a page header", what)
		return nil
	}
	if f := le.Uint16(buf[8:]); f != leafFlag {
		w.problem("%s has type %#x, want a leaf page", what, f)
		return nil
	}
	count := int(le.Uint16(buf[10:]))
	if pageHeaderSize+count*elemSize > len(buf) {
		w.problem("%s: %d elements do not fit in %d bytes", what, count, len(buf))
		return nil
	}
	running := min
	for i := 0; i < count; i++ {
		e := pageHeaderSize + i*elemSize
		flags := le.Uint32(buf[e:])
		pos, ksize, vsize := int(le.Uint32(buf[e+4:])), int(le.Uint32(buf[e+8:])), int(le.Uint32(buf[e+12:]))
		end := e + pos + ksize + vsize
		if pos < 0 || ksize < 0 || vsize < 0 || end > len(buf) || end < e {
			w.problem("%s: element %d points outside the page", what, i)
			return nil
		}
		k := buf[e+pos : e+pos+ksize]
		v := buf[e+pos+ksize : end]
		if !w.keyInOrder(0, what, i, k, running, max) {
			return nil
		}
		running = k
		if flags&bucketLeafFlag == 0 {
			if t == treeSalvaged && w.collect != nil {
				w.collect(k, v)
			}
			continue
		}
		if len(v) < bucketHdrSize {
			w.problem("%s: bucket %q has a %d-byte header", what, k, len(v))
			continue
		}
		sub := treeOther
		if t == treeRoot && w.salvage != nil && bytes.Equal(k, w.salvage) {
			sub = treeSalvaged
		}
		if root := le.Uint64(v); root == 0 {
			w.walkLeaf(v[bucketHdrSize:], nil, nil, fmt.Sprintf("inline bucket %q", k), sub)
		} else {
			w.walkTree(root, nil, nil, sub)
		}
	}
	return running
}

func (w *walker) keyInOrder(id uint64, what string, i int, k, prev, max []byte) bool {
	where := what
	if id != 0 {
		where = fmt.Sprintf("%s page %d", what, id)
	}
	switch {
	case i == 0 && prev != nil && bytes.Compare(prev, k) > 0,
		i > 0 && bytes.Compare(prev, k) >= 0:
		w.problem("%s: key %d is out of order", where, i)
		return false
	case max != nil && bytes.Compare(k, max) >= 0:
		w.problem("%s: key %d is beyond its parent's range", where, i)
		return false
	}
	return true
}
