// Package hostile makes hostile image files for tests, in code rather than
// as committed blobs: headers that claim gigapixels in a few dozen bytes,
// decompression bombs, truncated and padded files, garbage, and file names
// that must never become part IDs. Every generator is deterministic and
// cheap (the 30000x30000 bomb is built bit by bit, not compressed), so any
// package's tests can use them freely.
//
// Cases returns the standard set with what a guarded reader must say about
// each; the single generators serve tests that need one variant.
package hostile

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"strings"
)

// Case is one hostile (or tricky but valid) image file.
type Case struct {
	// Name is a short identifier for subtests, e.g. "png-header-100000x100000".
	Name string
	// File is a file name with the extension the content claims.
	File string
	// Data is the file's content.
	Data []byte
	// OK is true for files that are valid and must decode (e.g. a PNG with
	// bytes after IEND); false for files that must be refused.
	OK bool
	// Want is a lowercase substring the refusal's error text must contain
	// (capture's wording: "max_pixels", "truncated", "zero-byte",
	// "unsupported", "corrupt"); empty when OK.
	Want string
}

// Cases returns the standard hostile set: gigapixel headers in every
// accepted format that has one, a ~1 MB 30000x30000 PNG decompression
// bomb, truncated PNG/JPEG/BMP, a JPEG truncated and zero-padded, a
// zero-byte file, random garbage, garbage behind a PNG signature, an
// unsupported format, and two valid files with trailing bytes.
func Cases() []Case {
	png64 := PNG(64, 48)
	jpg64 := JPEG(64, 48)
	bmp64 := BMP(64, 48)
	return []Case{
		{Name: "png-header-100000x100000", File: "huge.png", Data: HugePNG(100000, 100000, false), Want: "max_pixels"},
		{Name: "gray-png-header-100000x100000", File: "huge-gray.png", Data: HugePNG(100000, 100000, true), Want: "max_pixels"},
		{Name: "jpeg-header-65500x65500", File: "huge.jpg", Data: HugeJPEG(65500, 65500), Want: "max_pixels"},
		{Name: "bmp-header-100000x100000", File: "huge.bmp", Data: HugeBMP(100000, 100000), Want: "max_pixels"},
		{Name: "tiff-header-100000x100000", File: "huge.tif", Data: HugeTIFF(100000, 100000), Want: "max_pixels"},
		{Name: "png-bomb-30000x30000", File: "bomb.png", Data: PNGBomb(30000, 30000), Want: "max_pixels"},
		{Name: "png-truncated", File: "cut.png", Data: Truncate(png64, len(png64)/2), Want: "truncated"},
		{Name: "png-iend-missing", File: "noiend.png", Data: Truncate(png64, len(png64)-12), Want: "truncated"},
		{Name: "jpeg-truncated", File: "cut.jpg", Data: Truncate(jpg64, len(jpg64)*2/3), Want: "truncated"},
		{Name: "jpeg-truncated-zero-padded", File: "padded.jpg", Data: append(Truncate(jpg64, len(jpg64)*2/3), make([]byte, 512)...), Want: "truncated"},
		{Name: "bmp-truncated", File: "cut.bmp", Data: Truncate(bmp64, len(bmp64)/2), Want: "truncated"},
		{Name: "zero-bytes", File: "empty.png", Data: []byte{}, Want: "zero-byte"},
		{Name: "garbage", File: "garbage.png", Data: Garbage(4096, 1), Want: "unsupported"},
		{Name: "png-signature-then-garbage", File: "fake.png", Data: append([]byte("\x89PNG\r\n\x1a\n"), Garbage(2048, 2)...), Want: "png"},
		{Name: "gif-unsupported", File: "anim.gif", Data: []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"), Want: "unsupported"},
		{Name: "png-trailing-bytes", File: "trailer.png", Data: WithTrailer(png64, 1000), OK: true},
		{Name: "jpeg-trailing-bytes", File: "trailer.jpg", Data: WithTrailer(jpg64, 1000), OK: true},
	}
}

// OddName is a watch-folder file name that is a legal Linux file name but
// not a legal part ID (or, for Valid, one that is).
type OddName struct {
	// Name is the file name (no directory).
	Name string
	// Valid says whether the name without extension is an acceptable part
	// ID (partid.Check); invalid ones must never reach a result.
	Valid bool
}

// OddNames returns file names that must not become part IDs: a newline, a
// tab, invalid UTF-8, an ANSI escape, DEL, 200 characters (over the
// 128-byte part-ID limit; Linux allows 255), plus two valid names (ASCII and
// non-ASCII UTF-8) that must be kept as they are.
func OddNames() []OddName {
	return []OddName{
		{Name: "part\nnewline.png"},
		{Name: "tab\there.png"},
		{Name: "bad-utf8-\xff\xfe.png"},
		{Name: "esc-\x1b[31mred.png"},
		{Name: "del-\x7f.png"},
		{Name: strings.Repeat("A", 200) + ".png"},
		{Name: "P-0001.png", Valid: true},
		{Name: "Teil-Ä-42.png", Valid: true},
	}
}

// testImage is a small textured image, so encoders produce real data.
func testImage(w, h int, gray bool) image.Image {
	if gray {
		g := image.NewGray(image.Rect(0, 0, w, h))
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				g.SetGray(x, y, color.Gray{Y: uint8((x*7 + y*13) % 256)})
			}
		}
		return g
	}
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m.SetRGBA(x, y, color.RGBA{R: uint8(x * 4), G: uint8(y * 4), B: uint8((x + y) * 2), A: 255})
		}
	}
	return m
}

// PNG returns a valid w x h RGB PNG.
func PNG(w, h int) []byte {
	var buf bytes.Buffer
	if err := png.Encode(&buf, testImage(w, h, false)); err != nil {
		panic("hostile: encode PNG: " + err.Error()) // in-memory encode of a valid image cannot fail
	}
	return buf.Bytes()
}

// JPEG returns a valid w x h baseline JPEG.
func JPEG(w, h int) []byte {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, testImage(w, h, false), &jpeg.Options{Quality: 90}); err != nil {
		panic("hostile: encode JPEG: " + err.Error())
	}
	return buf.Bytes()
}

// BMP returns a valid w x h 24-bit uncompressed BMP (bottom-up).
func BMP(w, h int) []byte {
	return bmp(int32(w), int32(h), true)
}

// HugeBMP returns a 24-bit BMP header declaring w x h with a few bytes of
// pixel data: small in the file, gigantic for a decoder that believes it.
func HugeBMP(w, h int32) []byte {
	return bmp(w, h, false)
}

func bmp(w, h int32, full bool) []byte {
	stride := (int64(w)*24 + 31) / 32 * 4
	pix := int64(64)
	if full {
		pix = stride * int64(h)
	}
	b := make([]byte, 54+pix)
	copy(b, "BM")
	binary.LittleEndian.PutUint32(b[2:], uint32(len(b)))
	binary.LittleEndian.PutUint32(b[10:], 54)
	binary.LittleEndian.PutUint32(b[14:], 40)
	binary.LittleEndian.PutUint32(b[18:], uint32(w))
	binary.LittleEndian.PutUint32(b[22:], uint32(h))
	binary.LittleEndian.PutUint16(b[26:], 1)
	binary.LittleEndian.PutUint16(b[28:], 24)
	binary.LittleEndian.PutUint32(b[34:], uint32(pix))
	for i := 54; i < len(b); i++ {
		b[i] = byte(i * 31)
	}
	return b
}

// HugePNG returns a small PNG (8x8 pixels of data, RGB or gray) whose IHDR
// declares w x h, with a correct CRC so decoders read on to the size check.
func HugePNG(w, h uint32, gray bool) []byte {
	var buf bytes.Buffer
	if err := png.Encode(&buf, testImage(8, 8, gray)); err != nil {
		panic("hostile: encode PNG: " + err.Error())
	}
	b := buf.Bytes()
	// IHDR is the first chunk: length at 8, type at 12, data at 16.
	binary.BigEndian.PutUint32(b[16:], w)
	binary.BigEndian.PutUint32(b[20:], h)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

// HugeJPEG returns a small valid JPEG (8x8 pixels of data) whose
// start-of-frame declares w x h (JPEG's maximum is 65535 a side).
func HugeJPEG(w, h uint16) []byte {
	b := JPEG(8, 8)
	// Walk the segments to SOF0 (Go's encoder writes baseline).
	for i := 2; i+4 <= len(b) && b[i] == 0xFF; {
		m := b[i+1]
		n := int(binary.BigEndian.Uint16(b[i+2:]))
		if m == 0xC0 {
			binary.BigEndian.PutUint16(b[i+5:], h)
			binary.BigEndian.PutUint16(b[i+7:], w)
			return b
		}
		i += 2 + n
	}
	panic("hostile: Go's JPEG encoder wrote no SOF0")
}

// TIFF returns a valid w x h 8-bit gray uncompressed TIFF (one strip).
func TIFF(w, h int) []byte {
	return tiff(uint32(w), uint32(h), w*h)
}

// HugeTIFF returns a little-endian TIFF whose first IFD declares w x h
// with 64 bytes of strip data.
func HugeTIFF(w, h uint32) []byte {
	return tiff(w, h, 64)
}

func tiff(w, h uint32, pix int) []byte {
	type entry struct {
		tag, typ uint16
		val      uint32
	}
	const nEntries = 9
	dataAt := uint32(8 + 2 + nEntries*12 + 4)
	entries := []entry{
		{256, 4, w},           // ImageWidth
		{257, 4, h},           // ImageLength
		{258, 3, 8},           // BitsPerSample
		{259, 3, 1},           // Compression: none
		{262, 3, 1},           // Photometric: black is zero
		{273, 4, dataAt},      // StripOffsets
		{277, 3, 1},           // SamplesPerPixel
		{278, 4, h},           // RowsPerStrip
		{279, 4, uint32(pix)}, // StripByteCounts
	}
	b := make([]byte, int(dataAt)+pix)
	copy(b, "II*\x00")
	binary.LittleEndian.PutUint32(b[4:], 8)
	binary.LittleEndian.PutUint16(b[8:], nEntries)
	for k, e := range entries {
		p := b[10+12*k:]
		binary.LittleEndian.PutUint16(p, e.tag)
		binary.LittleEndian.PutUint16(p[2:], e.typ)
		binary.LittleEndian.PutUint32(p[4:], 1)
		if e.typ == 3 {
			binary.LittleEndian.PutUint16(p[8:], uint16(e.val))
		} else {
			binary.LittleEndian.PutUint32(p[8:], e.val)
		}
	}
	for i := int(dataAt); i < len(b); i++ {
		b[i] = byte(i * 7)
	}
	return b
}

// PNGBomb returns a valid 8-bit gray PNG of w x h black pixels whose IDAT
// is one hand-built deflate block: a literal zero, then length-258
// distance-1 matches coded in 2 bits each (the deflate maximum, about
// 1:1032). 30000x30000 is about 870 KB on disk and 900 MB decoded. It is
// built directly, in milliseconds, without compressing anything.
func PNGBomb(w, h uint32) []byte {
	raw := int64(h) * (1 + int64(w)) // a filter byte (0) per row, then w gray bytes
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr, w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 0 // bit depth 8, colour type gray
	writeChunk(&b, "IHDR", ihdr)
	writeChunk(&b, "IDAT", zlibZeros(raw))
	writeChunk(&b, "IEND", nil)
	return b.Bytes()
}

func writeChunk(b *bytes.Buffer, typ string, data []byte) {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(data)))
	b.Write(n[:])
	crc := crc32.NewIEEE()
	crc.Write([]byte(typ))
	crc.Write(data)
	b.WriteString(typ)
	b.Write(data)
	binary.BigEndian.PutUint32(n[:], crc.Sum32())
	b.Write(n[:])
}

// bitWriter writes deflate's LSB-first bit stream.
type bitWriter struct {
	out   []byte
	acc   uint64
	nbits uint
}

func (bw *bitWriter) bits(v uint64, n uint) {
	bw.acc |= v << bw.nbits
	bw.nbits += n
	for bw.nbits >= 8 {
		bw.out = append(bw.out, byte(bw.acc))
		bw.acc >>= 8
		bw.nbits -= 8
	}
}

// code writes a Huffman code, which deflate packs most significant bit first.
func (bw *bitWriter) code(c uint64, n uint) {
	var r uint64
	for i := uint(0); i < n; i++ {
		r = r<<1 | (c>>i)&1
	}
	bw.bits(r, n)
}

// zeroBits appends n zero bits quickly (the matches of the bomb).
func (bw *bitWriter) zeroBits(n int64) {
	for n > 0 && bw.nbits != 0 {
		bw.bits(0, 1)
		n--
	}
	bw.out = append(bw.out, make([]byte, n/8)...)
	for i := int64(0); i < n%8; i++ {
		bw.bits(0, 1)
	}
}

func (bw *bitWriter) flush() []byte {
	if bw.nbits > 0 {
		bw.out = append(bw.out, byte(bw.acc))
		bw.acc, bw.nbits = 0, 0
	}
	return bw.out
}

// zlibZeros is a zlib stream inflating to n zero bytes, in one dynamic
// Huffman block whose literal/length code has three symbols (285: "0",
// literal 0: "10", end of block: "11") and whose distance code is the one
// symbol 0 ("0").
func zlibZeros(n int64) []byte {
	bw := &bitWriter{out: []byte{0x78, 0x01}}
	bw.bits(1, 1)  // BFINAL
	bw.bits(2, 2)  // BTYPE = dynamic Huffman
	bw.bits(29, 5) // HLIT: 286 literal/length codes
	bw.bits(0, 5)  // HDIST: 1 distance code
	bw.bits(14, 4) // HCLEN: 18 code-length codes
	// Code-length code lengths in deflate's order 16,17,18,0,8,7,9,6,10,5,
	// 11,4,12,3,13,2,14,1: symbol 18 gets 1 bit, symbols 1 and 2 get 2.
	for _, l := range []uint64{0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2} {
		bw.bits(l, 3)
	}
	// Canonical code-length codes: 18 -> 0, 1 -> 10, 2 -> 11.
	cl1 := func() { bw.code(0b10, 2) }
	cl2 := func() { bw.code(0b11, 2) }
	zeros := func(k uint64) { bw.code(0, 1); bw.bits(k-11, 7) } // symbol 18: 11..138 zeros
	cl2()                                                       // literal 0: length 2
	zeros(138)                                                  // literals 1..138
	zeros(117)                                                  // literals 139..255
	cl2()                                                       // 256 end of block: length 2
	zeros(28)                                                   // 257..284
	cl1()                                                       // 285 (length 258): length 1
	cl1()                                                       // distance 0 (distance 1): length 1
	if n > 0 {
		bw.code(0b10, 2) // literal 0, which the matches then copy
		matches := (n - 1) / 258
		bw.zeroBits(2 * matches) // each match: length code "0", distance code "0"
		for i := int64(0); i < (n-1)%258; i++ {
			bw.code(0b10, 2)
		}
	}
	bw.code(0b11, 2) // end of block
	out := bw.flush()
	// Adler-32 of n zero bytes: a stays 1, b grows by 1 per byte.
	adler := uint32(n%65521)<<16 | 1
	return binary.BigEndian.AppendUint32(out, adler)
}

// WithTrailer returns a copy of data followed by n bytes of non-zero
// filler, as cameras that append metadata after the image write.
func WithTrailer(data []byte, n int) []byte {
	out := append([]byte(nil), data...)
	for i := 0; i < n; i++ {
		out = append(out, byte('A'+i%26))
	}
	return out
}

// Truncate returns a copy of the first keep bytes of data (a file cut by a
// crashed writer or a dropped FTP connection).
func Truncate(data []byte, keep int) []byte {
	keep = max(0, min(keep, len(data)))
	return append([]byte(nil), data[:keep]...)
}

// Garbage returns n deterministic random bytes for the given seed.
func Garbage(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	return b
}
