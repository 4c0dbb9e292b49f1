package capture

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Format is an image container the daemon accepts. Every accepted format
// has a header parser here, so an image's size is known (and checked
// against the limits) before OpenCV allocates anything for it.
type Format string

// The accepted formats. Anything else (JPEG 2000, OpenEXR, HDR, PFM, Sun
// raster, GIF, BigTIFF, ...) is refused with ErrUnsupported, so that no
// decoder without a header check here is ever reached.
const (
	FormatJPEG Format = "jpeg"
	FormatPNG  Format = "png"
	FormatBMP  Format = "bmp"
	FormatTIFF Format = "tiff" // classic TIFF, first page
	FormatWebP Format = "webp"
	FormatPNM  Format = "pnm" // PBM, PGM, PPM (P1..P6)
)

// AcceptedFormats names the accepted formats for error messages and docs.
const AcceptedFormats = "JPEG, PNG, BMP, TIFF, WebP or PNM (PBM/PGM/PPM)"

// maxSide is OpenCV's own per-side limit (CV_IO_MAX_IMAGE_WIDTH/HEIGHT):
// beyond it imdecode throws, so refuse first with a clear message.
const maxSide = 1 << 20

// maxJPEGScans bounds the scans of a progressive JPEG: libjpeg re-processes
// the whole coefficient buffer per scan, so thousands of tiny scans make a
// small file cost minutes of CPU. Real encoders write about ten.
const maxJPEGScans = 256

// ImageHeader is what an image's header declares, read without decoding.
type ImageHeader struct {
	Format Format
	Width  int
	Height int
	// SampleBytes is the decoded size the decoder will work with when the
	// format can say (TIFF: width x height x samples x bytes per sample);
	// 0 when it is bounded by the pixel count alone.
	SampleBytes int64
}

// Pixels is Width x Height.
func (h ImageHeader) Pixels() int64 { return int64(h.Width) * int64(h.Height) }

// ParseImageHeader recognises the container by its magic bytes, reads the
// declared width and height from the header, and checks that the file is
// complete (PNG up to IEND, JPEG up to EOI, BMP and binary PNM pixel data
// present, WebP RIFF size). Bytes after the end of a complete PNG or JPEG
// are ignored: some cameras append metadata there. It never decodes pixels
// and costs at most one pass over data. Errors wrap ErrEmptyFile,
// ErrUnsupported, ErrTruncated or ErrCorrupt.
func ParseImageHeader(data []byte) (ImageHeader, error) {
	var h ImageHeader
	var err error
	b := data
	switch {
	case len(b) == 0:
		return h, ErrEmptyFile
	case bytes.HasPrefix(b, []byte{0xFF, 0xD8, 0xFF}):
		h, err = parseJPEG(b)
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		h, err = parsePNG(b)
	case bytes.HasPrefix(b, []byte("BM")):
		h, err = parseBMP(b)
	case bytes.HasPrefix(b, []byte("II*\x00")), bytes.HasPrefix(b, []byte("MM\x00*")):
		h, err = parseTIFF(b)
	case len(b) >= 12 && bytes.HasPrefix(b, []byte("RIFF")) && string(b[8:12]) == "WEBP":
		h, err = parseWebP(b)
	case len(b) >= 2 && b[0] == 'P' && b[1] >= '1' && b[1] <= '6':
		h, err = parsePNM(b)
	default:
		return h, ErrUnsupported
	}
	if err != nil {
		return h, err
	}
	if h.Width <= 0 || h.Height <= 0 {
		return h, fmt.Errorf("%s header declares %dx%d pixels: %w", h.Format, h.Width, h.Height, ErrCorrupt)
	}
	return h, nil
}

func truncated(format Format, what string) error {
	return fmt.Errorf("%s: %s: %w", format, what, ErrTruncated)
}

func corrupt(format Format, what string) error {
	return fmt.Errorf("%s: %s: %w", format, what, ErrCorrupt)
}

// parsePNG walks the chunk list from IHDR to IEND. Walking (rather than
// looking for IEND at the very end) accepts bytes after IEND and still
// catches a file cut anywhere before it.
func parsePNG(b []byte) (ImageHeader, error) {
	h := ImageHeader{Format: FormatPNG}
	i := 8
	first := true
	for {
		if i+8 > len(b) {
			return h, truncated(FormatPNG, "chunk list ends before IEND")
		}
		n := binary.BigEndian.Uint32(b[i:])
		typ := string(b[i+4 : i+8])
		if n > 1<<31-1 {
			return h, corrupt(FormatPNG, fmt.Sprintf("chunk %q declares %d bytes", typ, n))
		}
		if int64(i)+12+int64(n) > int64(len(b)) {
			return h, truncated(FormatPNG, fmt.Sprintf("chunk %q cut short", typ))
		}
		data := b[i+8 : i+8+int(n)]
		if first {
			if typ != "IHDR" || n != 13 {
				return h, corrupt(FormatPNG, "first chunk is not a 13-byte IHDR")
			}
			w, ht := binary.BigEndian.Uint32(data), binary.BigEndian.Uint32(data[4:])
			if w > 1<<31-1 || ht > 1<<31-1 {
				return h, corrupt(FormatPNG, fmt.Sprintf("IHDR declares %dx%d", w, ht))
			}
			h.Width, h.Height = int(w), int(ht)
			first = false
		}
		i += 12 + int(n)
		if typ == "IEND" {
			return h, nil
		}
	}
}

// isSOF reports the start-of-frame markers (baseline, progressive,
// lossless, arithmetic); C4, C8 and CC are DHT, JPG and DAC.
func isSOF(m byte) bool {
	return m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC
}

// parseJPEG walks the marker segments and the entropy-coded data of every
// scan up to EOI. Segments are skipped by their length, so an EXIF
// thumbnail's own EOI is not mistaken for the image's; a file that ends
// before EOI is truncated (OpenCV would decode it as a grey-filled image
// without an error, and that image would be inspected as the part).
func parseJPEG(b []byte) (ImageHeader, error) {
	h := ImageHeader{Format: FormatJPEG}
	sawSOF := false
	scans := 0
	i := 2
	for {
		if i >= len(b) {
			return h, truncated(FormatJPEG, "no EOI marker")
		}
		if b[i] != 0xFF {
			return h, corrupt(FormatJPEG, fmt.Sprintf("expected a marker at offset %d", i))
		}
		for i < len(b) && b[i] == 0xFF { // fill bytes
			i++
		}
		if i >= len(b) {
			return h, truncated(FormatJPEG, "no EOI marker")
		}
		m := b[i]
		i++
		switch {
		case m == 0xD9: // EOI
			if !sawSOF || scans == 0 {
				return h, corrupt(FormatJPEG, "EOI before any frame or scan")
			}
			return h, nil
		case m == 0x01 || (m >= 0xD0 && m <= 0xD7): // TEM, RSTn: no length
			continue
		case m == 0x00 || m == 0xD8:
			return h, corrupt(FormatJPEG, fmt.Sprintf("unexpected marker 0x%02X at offset %d", m, i-1))
		}
		if i+2 > len(b) {
			return h, truncated(FormatJPEG, "segment length cut short")
		}
		n := int(binary.BigEndian.Uint16(b[i:]))
		if n < 2 {
			return h, corrupt(FormatJPEG, fmt.Sprintf("segment 0x%02X declares length %d", m, n))
		}
		if i+n > len(b) {
			return h, truncated(FormatJPEG, fmt.Sprintf("segment 0x%02X cut short", m))
		}
		seg := b[i+2 : i+n]
		i += n
		if isSOF(m) {
			if len(seg) < 6 {
				return h, corrupt(FormatJPEG, "start-of-frame segment too short")
			}
			if sawSOF {
				return h, corrupt(FormatJPEG, "more than one start-of-frame")
			}
			sawSOF = true
			h.Height = int(binary.BigEndian.Uint16(seg[1:]))
			h.Width = int(binary.BigEndian.Uint16(seg[3:]))
			if h.Height == 0 {
				// Height defined later by a DNL marker: libjpeg cannot
				// decode it either.
				return h, corrupt(FormatJPEG, "start-of-frame declares height 0 (DNL)")
			}
		}
		if m != 0xDA { // not SOS
			continue
		}
		if !sawSOF {
			return h, corrupt(FormatJPEG, "scan before start-of-frame")
		}
		scans++
		if scans > maxJPEGScans {
			return h, corrupt(FormatJPEG, fmt.Sprintf("more than %d scans (a decoder CPU bomb)", maxJPEGScans))
		}
		// Entropy-coded data runs to the next marker that is neither a
		// stuffed 0xFF00 nor a restart marker.
		for {
			k := bytes.IndexByte(b[i:], 0xFF)
			if k < 0 || i+k+1 >= len(b) {
				return h, truncated(FormatJPEG, "scan data without EOI")
			}
			i += k
			nx := b[i+1]
			if nx == 0x00 || (nx >= 0xD0 && nx <= 0xD7) {
				i += 2
				continue
			}
			if nx == 0xFF {
				i++
				continue
			}
			break
		}
	}
}

// parseBMP reads the DIB header (OS/2 core or Windows info header) and, for
// uncompressed bitmaps, checks that all rows are present.
func parseBMP(b []byte) (ImageHeader, error) {
	h := ImageHeader{Format: FormatBMP}
	if len(b) < 26 {
		return h, truncated(FormatBMP, "header cut short")
	}
	off := int64(binary.LittleEndian.Uint32(b[10:]))
	dib := binary.LittleEndian.Uint32(b[14:])
	var w, ht int64
	var bpp, compression uint32
	switch {
	case dib == 12:
		w = int64(binary.LittleEndian.Uint16(b[18:]))
		ht = int64(binary.LittleEndian.Uint16(b[20:]))
		bpp = uint32(binary.LittleEndian.Uint16(b[24:]))
	case dib >= 40 && dib <= 124:
		if len(b) < 14+40 {
			return h, truncated(FormatBMP, "info header cut short")
		}
		w = int64(int32(binary.LittleEndian.Uint32(b[18:])))
		ht = int64(int32(binary.LittleEndian.Uint32(b[22:])))
		bpp = uint32(binary.LittleEndian.Uint16(b[28:]))
		compression = binary.LittleEndian.Uint32(b[30:])
	default:
		return h, corrupt(FormatBMP, fmt.Sprintf("unknown DIB header size %d", dib))
	}
	if ht < 0 { // top-down bitmap
		ht = -ht
	}
	if w > 1<<31-1 || ht > 1<<31-1 {
		return h, corrupt(FormatBMP, fmt.Sprintf("header declares %dx%d", w, ht))
	}
	h.Width, h.Height = int(w), int(ht)
	// Uncompressed (BI_RGB, BI_BITFIELDS): rows are 4-byte aligned. Only
	// checked for sizes the pixel limit could let through, so the product
	// cannot overflow.
	if (compression == 0 || compression == 3) && w > 0 && ht > 0 && w <= maxSide && ht <= maxSide && bpp > 0 && bpp <= 32 {
		stride := (w*int64(bpp) + 31) / 32 * 4
		if off+stride*ht > int64(len(b)) {
			return h, truncated(FormatBMP, fmt.Sprintf("pixel data needs %d bytes, file has %d", off+stride*ht, len(b)))
		}
	}
	return h, nil
}

// parseTIFF reads the first IFD (the page OpenCV decodes): width, height,
// bits and samples per pixel. Truncated strips make libtiff fail the
// decode, which the guarded decoder reports as corrupt.
func parseTIFF(b []byte) (ImageHeader, error) {
	h := ImageHeader{Format: FormatTIFF}
	var bo binary.ByteOrder = binary.LittleEndian
	if b[0] == 'M' {
		bo = binary.BigEndian
	}
	if len(b) < 8 {
		return h, truncated(FormatTIFF, "header cut short")
	}
	ifd := int64(bo.Uint32(b[4:]))
	if ifd < 8 || ifd+2 > int64(len(b)) {
		return h, truncated(FormatTIFF, fmt.Sprintf("first IFD at offset %d is outside the %d-byte file", ifd, len(b)))
	}
	n := int64(bo.Uint16(b[ifd:]))
	if ifd+2+12*n > int64(len(b)) {
		return h, truncated(FormatTIFF, "first IFD cut short")
	}
	bps, spp := int64(1), int64(1)
	for k := int64(0); k < n; k++ {
		e := b[ifd+2+12*k:]
		tag, typ, count := bo.Uint16(e), bo.Uint16(e[2:]), bo.Uint32(e[4:])
		val := int64(0)
		switch typ {
		case 3: // SHORT
			val = int64(bo.Uint16(e[8:]))
			if count > 2 { // the values live elsewhere; the first one will do
				at := int64(bo.Uint32(e[8:]))
				if at+2 > int64(len(b)) {
					return h, truncated(FormatTIFF, fmt.Sprintf("tag %d points outside the file", tag))
				}
				val = int64(bo.Uint16(b[at:]))
			}
		case 4: // LONG
			val = int64(bo.Uint32(e[8:]))
		default:
			continue
		}
		switch tag {
		case 256:
			h.Width = int(min(val, 1<<31-1))
		case 257:
			h.Height = int(min(val, 1<<31-1))
		case 258:
			bps = max(val, 1)
		case 277:
			spp = max(val, 1)
		}
	}
	if h.Width == 0 || h.Height == 0 {
		return h, corrupt(FormatTIFF, "first IFD has no ImageWidth/ImageLength")
	}
	h.SampleBytes = h.Pixels() * spp * ((bps + 7) / 8)
	return h, nil
}

// parseWebP reads the canvas size from the first chunk (lossy VP8, lossless
// VP8L or extended VP8X) and checks the RIFF size against the file.
func parseWebP(b []byte) (ImageHeader, error) {
	h := ImageHeader{Format: FormatWebP}
	if len(b) < 30 {
		return h, truncated(FormatWebP, "header cut short")
	}
	if riff := int64(binary.LittleEndian.Uint32(b[4:])) + 8; riff > int64(len(b)) {
		return h, truncated(FormatWebP, fmt.Sprintf("RIFF declares %d bytes, file has %d", riff, len(b)))
	}
	switch string(b[12:16]) {
	case "VP8 ":
		if !bytes.Equal(b[23:26], []byte{0x9d, 0x01, 0x2a}) {
			return h, corrupt(FormatWebP, "VP8 start code missing")
		}
		h.Width = int(binary.LittleEndian.Uint16(b[26:]) & 0x3fff)
		h.Height = int(binary.LittleEndian.Uint16(b[28:]) & 0x3fff)
	case "VP8L":
		if b[20] != 0x2f {
			return h, corrupt(FormatWebP, "VP8L signature missing")
		}
		bits := binary.LittleEndian.Uint32(b[21:])
		h.Width = int(bits&0x3fff) + 1
		h.Height = int(bits>>14&0x3fff) + 1
	case "VP8X":
		h.Width = 1 + int(uint32(b[24])|uint32(b[25])<<8|uint32(b[26])<<16)
		h.Height = 1 + int(uint32(b[27])|uint32(b[28])<<8|uint32(b[29])<<16)
	default:
		return h, corrupt(FormatWebP, fmt.Sprintf("unknown first chunk %q", b[12:16]))
	}
	return h, nil
}

// parsePNM reads the ASCII header of P1..P6 and, for the binary variants,
// checks that the pixel data is all there.
func parsePNM(b []byte) (ImageHeader, error) {
	h := ImageHeader{Format: FormatPNM}
	kind := b[1]
	i := 2
	field := func() (int64, error) {
		for i < len(b) { // whitespace and # comments
			switch c := b[i]; {
			case c == '#':
				for i < len(b) && b[i] != '\n' && b[i] != '\r' {
					i++
				}
			case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f':
				i++
			default:
				goto number
			}
		}
		return 0, truncated(FormatPNM, "header cut short")
	number:
		var v int64
		digits := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			if digits++; digits > 10 {
				return 0, corrupt(FormatPNM, "header number too long")
			}
			v = v*10 + int64(b[i]-'0')
			i++
		}
		if digits == 0 {
			return 0, corrupt(FormatPNM, fmt.Sprintf("expected a number at offset %d", i))
		}
		return v, nil
	}
	w, err := field()
	if err != nil {
		return h, err
	}
	ht, err := field()
	if err != nil {
		return h, err
	}
	maxval := int64(1)
	if kind != '1' && kind != '4' {
		if maxval, err = field(); err != nil {
			return h, err
		}
		if maxval < 1 || maxval > 65535 {
			return h, corrupt(FormatPNM, fmt.Sprintf("maxval %d outside 1..65535", maxval))
		}
	}
	if w > 1<<31-1 || ht > 1<<31-1 {
		return h, corrupt(FormatPNM, fmt.Sprintf("header declares %dx%d", w, ht))
	}
	h.Width, h.Height = int(w), int(ht)
	if kind < '4' || w == 0 || ht == 0 || w > maxSide || ht > maxSide {
		return h, nil // ASCII variants: OpenCV reports a short file itself
	}
	// One whitespace byte separates the header from the raster.
	need := int64(i) + 1
	switch kind {
	case '4':
		need += (w + 7) / 8 * ht
	case '5', '6':
		c := int64(1)
		if kind == '6' {
			c = 3
		}
		bytesPer := int64(1)
		if maxval > 255 {
			bytesPer = 2
		}
		need += w * ht * c * bytesPer
	}
	if need > int64(len(b)) {
		return h, truncated(FormatPNM, fmt.Sprintf("raster needs %d bytes, file has %d", need, len(b)))
	}
	return h, nil
}
