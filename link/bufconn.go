package link

import (
	"bufio"
	"net"
	"sync"
)

// bufConnSize is the read and write buffer under TLS: several 16 KiB TLS
// records per syscall.
const bufConnSize = 64 << 10

// bufConn sits between TLS and TCP. Reads are buffered, so one syscall
// brings in several TLS records. Once buffering is switched on (after the
// handshake, which must not wait), writes are buffered too and leave on
// Flush: the link's coalescer writes a whole batch of frames through TLS,
// record by record, then flushes them in one syscall.
type bufConn struct {
	net.Conn
	r *bufio.Reader

	mu        sync.Mutex // guards w and buffering; TLS may write from its read path too
	w         *bufio.Writer
	buffering bool
}

func newBufConn(c net.Conn) *bufConn {
	return &bufConn{Conn: c, r: bufio.NewReaderSize(c, bufConnSize), w: bufio.NewWriterSize(c, bufConnSize)}
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

func (b *bufConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.buffering {
		return b.Conn.Write(p)
	}
	return b.w.Write(p)
}

// startBuffering makes writes wait for Flush.
func (b *bufConn) startBuffering() {
	b.mu.Lock()
	b.buffering = true
	b.mu.Unlock()
}

// Flush sends what is buffered.
func (b *bufConn) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.w.Flush()
}

// Close flushes (best effort) and closes.
func (b *bufConn) Close() error {
	b.mu.Lock()
	b.w.Flush()
	b.mu.Unlock()
	return b.Conn.Close()
}
