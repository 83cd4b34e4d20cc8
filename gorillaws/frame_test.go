package gorillaws

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
)

// spec is one frame as a client would send it.
type spec struct {
	op     byte
	fin    bool
	masked bool
	ext    int // extended length bytes to use: 0, 2 or 8; -1 picks the shortest
	size   int // payload length
}

// encode writes f the way RFC 6455 lays it out, independently of
// frameCursor. A non-minimal ext (2 or 8 bytes for a short payload) is
// allowed: the cursor must follow the length field, not guess.
func encode(f spec) []byte {
	b0 := f.op & 0x0f
	if f.fin {
		b0 |= 0x80
	}
	var mask byte
	if f.masked {
		mask = 0x80
	}
	ext := f.ext
	if ext < 0 {
		switch {
		case f.size < 126:
			ext = 0
		case f.size <= 0xffff:
			ext = 2
		default:
			ext = 8
		}
	}
	out := []byte{b0}
	switch ext {
	case 0:
		out = append(out, mask|byte(f.size))
	case 2:
		out = append(out, mask|126)
		out = binary.BigEndian.AppendUint16(out, uint16(f.size))
	case 8:
		out = append(out, mask|127)
		out = binary.BigEndian.AppendUint64(out, uint64(f.size))
	}
	if f.masked {
		out = append(out, 0x12, 0x34, 0x56, 0x78)
	}
	for i := range f.size {
		out = append(out, byte('a'+i%26))
	}
	return out
}

// chunked is a net.Conn whose Read returns at most the next chunk size
// (cycling through sizes), from a fixed stream.
type chunked struct {
	net.Conn
	r     *bytes.Reader
	sizes []int
	i     int
}

func (c *chunked) Read(p []byte) (int, error) {
	if n := c.sizes[c.i%len(c.sizes)]; n > 0 && len(p) > n {
		p = p[:n]
	}
	c.i++
	return c.r.Read(p)
}

// readAll reads the stream through a frameConn with reads of the given
// buffer sizes (cycling) and checks that no read crosses the end of a
// frame and that the cursor stands at a boundary exactly at frame ends.
func readAll(t *testing.T, frames []spec, bufSizes, chunkSizes []int) {
	t.Helper()
	var stream []byte
	ends := map[int]bool{0: true}
	for _, f := range frames {
		stream = append(stream, encode(f)...)
		ends[len(stream)] = true
	}
	fc := &frameConn{Conn: &chunked{r: bytes.NewReader(stream), sizes: chunkSizes}}
	pos := 0
	for i := 0; pos < len(stream); i++ {
		if i > 4*len(stream)+16 {
			t.Fatalf("no progress at offset %d of %d", pos, len(stream))
		}
		buf := make([]byte, bufSizes[i%len(bufSizes)])
		n, err := fc.Read(buf)
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(buf[:n], stream[pos:pos+n]) {
			t.Fatalf("read at %d returned other bytes", pos)
		}
		for k := pos + 1; k < pos+n; k++ {
			if ends[k] {
				t.Fatalf("a read of %d bytes at offset %d passed the frame end at %d", n, pos, k)
			}
		}
		pos += n
		if got := fc.cur.atBoundary(); got != ends[pos] {
			t.Fatalf("at offset %d: atBoundary %v; frame end %v", pos, got, ends[pos])
		}
	}
	if n, err := fc.Read(make([]byte, 16)); n != 0 || err != io.EOF {
		t.Fatalf("after the stream: %d, %v; want 0, EOF", n, err)
	}
}

func TestFrameConnStopsAtFrameEnds(t *testing.T) {
	text := func(size int) spec { return spec{op: 1, fin: true, masked: true, ext: -1, size: size} }
	for _, tc := range []struct {
		name   string
		frames []spec
	}{
		{"one small message", []spec{text(20)}},
		{"empty payload", []spec{text(0), text(0), text(3)}},
		{"125 and 126 bytes", []spec{text(125), text(126)}},
		{"16-bit lengths", []spec{text(300), text(65535), text(7)}},
		{"64-bit length", []spec{text(65536), text(1)}},
		{"non-minimal lengths", []spec{{op: 1, fin: true, masked: true, ext: 2, size: 5}, {op: 1, fin: true, masked: true, ext: 8, size: 0}, text(4)}},
		{"unmasked frames", []spec{{op: 1, fin: true, ext: -1, size: 10}, {op: 2, fin: true, ext: -1, size: 200}}},
		{"fragments with a ping between", []spec{
			{op: 1, masked: true, ext: -1, size: 40},
			{op: 9, fin: true, masked: true, ext: -1, size: 4},
			{op: 0, masked: true, ext: -1, size: 0},
			{op: 0, fin: true, masked: true, ext: -1, size: 300},
		}},
		{"close after a message", []spec{text(12), {op: 8, fin: true, masked: true, ext: -1, size: 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, bufs := range [][]int{{1}, {2, 3}, {7}, {256}, {4096}, {125, 1, 9}} {
				for _, chunks := range [][]int{{0}, {1}, {3, 1, 5}, {64}} {
					readAll(t, tc.frames, bufs, chunks)
				}
			}
		})
	}
}

func TestFrameCursorLimit(t *testing.T) {
	var c frameCursor
	if got := c.limit(); got != 2 {
		t.Fatalf("limit at a boundary = %d; want 2 (the first header bytes)", got)
	}
	// A masked 5-byte payload: after the 2 header bytes, the mask key and
	// the payload may come in one read.
	c.advance([]byte{0x81, 0x85})
	if got := c.limit(); got != 4+5 {
		t.Fatalf("limit after the length byte = %d; want 9", got)
	}
	// A 16-bit length: the length field and the mask key first.
	c = frameCursor{}
	c.advance([]byte{0x81, 0x80 | 126})
	if got := c.limit(); got != 2+4 {
		t.Fatalf("limit before a 16-bit length = %d; want 6", got)
	}
	c.advance([]byte{0x01, 0x00})
	if got := c.limit(); got != 4+256 {
		t.Fatalf("limit after a 16-bit length of 256 = %d; want 260", got)
	}
	// The largest 64-bit length does not overflow.
	c = frameCursor{}
	c.advance([]byte{0x82, 0x80 | 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	if got := c.limit(); got == 0 {
		t.Fatal("limit wrapped around to 0")
	}
}

// FuzzFrameConn builds a stream of frames from the input (kinds, lengths,
// length encodings, masking) and reads it back through a frameConn in
// reads and chunks also chosen by the input.
func FuzzFrameConn(f *testing.F) {
	f.Add([]byte{0x81, 20, 0x00, 0x82, 0x7e, 0x01}, []byte{1, 7, 255})
	f.Add([]byte{0x01, 3, 0x89, 4, 0x80, 200}, []byte{2})
	f.Add([]byte{0x88, 2, 0x81, 0, 0x81, 130}, []byte{0, 3, 9})
	f.Fuzz(func(t *testing.T, desc, sizes []byte) {
		var frames []spec
		for len(desc) >= 2 && len(frames) < 32 {
			b, l := desc[0], int(desc[1])
			desc = desc[2:]
			s := spec{op: b & 0x0f, fin: b&0x80 != 0, masked: b&0x40 == 0, ext: -1, size: l}
			switch b & 0x30 {
			case 0x10:
				s.ext = 2
			case 0x20:
				s.ext = 8
			case 0x30:
				// Long enough for a 16-bit length.
				s.size = l * 300
			}
			if s.ext == 0 && s.size > 125 {
				s.ext = -1
			}
			frames = append(frames, s)
		}
		bufs, chunks := []int{1}, []int{0}
		if len(sizes) > 0 {
			bufs, chunks = nil, nil
			for i, b := range sizes {
				bufs = append(bufs, int(b)+1)
				chunks = append(chunks, int(sizes[len(sizes)-1-i]))
			}
		}
		readAll(t, frames, bufs, chunks)
	})
}
