// Package coalesce batches the writes of a yamux session into few writes on
// the connection beneath it.
//
// yamux writes every frame as two Write calls (its 12-byte header, then the
// body) from a single send loop. Over TLS each Write becomes at least one
// record and usually a syscall; over a circuit each would become at least one
// cell. Conn sits between yamux and the real connection: Write only appends to
// a buffer, and one flusher goroutine writes whatever has accumulated. Under
// load many frames leave in one write; when idle a frame leaves at once, with
// no added latency. A data header is kept back until its body arrives, so a
// frame is not split across two writes needlessly; it is never kept back
// longer than the next Write. Optionally (HoldACKs) a stream's ACK is kept
// back briefly for the same reason.
//
// Header recognition relies on yamux's framing (version 0; type 0 = data;
// big-endian length in bytes 8..12) and on the body following its header from
// the same send loop, which is how yamux v0.1 writes.
package coalesce

import (
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

const (
	yamuxHeaderLen = 12
	yamuxTypeData  = 0
	// DefaultMaxBuffer bounds what Write accepts before it blocks.
	DefaultMaxBuffer = 256 << 10
)

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("coalesce: connection closed")

// Conn wraps a connection so that its writes are batched by a flusher
// goroutine. Reads and the other methods pass through.
type Conn struct {
	io.ReadWriteCloser

	lastFlush atomic.Int64 // unix nanoseconds of the last completed write
	flush     func() error // called after each batch, if set

	mu    sync.Mutex // guards the following fields
	work  sync.Cond  // signalled when buf gains flushable bytes, or on close
	space sync.Cond  // signalled when buf is taken by the flusher, or on failure
	buf   []byte
	spare []byte
	held  bool // buf ends in a data header whose body has not arrived yet
	// ackHeld: buf is exactly one stream-accepting window update (yamux's
	// ACK), kept back for at most holdACK so that it leaves with the next
	// frame, normally the stream's first reply.
	ackHeld  bool
	holdACK  time.Duration
	ackTimer *time.Timer
	closed   bool
	err      error
	max      int

	done chan struct{} // closed when the flusher exits
}

// New wraps c. max bounds the buffered bytes (DefaultMaxBuffer if <= 0).
// flush, if not nil, is called after each batch is written to c (for a c
// that buffers underneath, such as TLS over a buffered TCP writer). If c has
// SetWriteDeadline, Close uses it to bound the final flush.
func New(c io.ReadWriteCloser, max int, flush func() error) *Conn {
	if max <= 0 {
		max = DefaultMaxBuffer
	}
	w := &Conn{ReadWriteCloser: c, max: max, flush: flush, done: make(chan struct{})}
	w.work.L = &w.mu
	w.space.L = &w.mu
	w.lastFlush.Store(time.Now().UnixNano())
	go w.flushLoop()
	return w
}

// Write queues p for the flusher. It blocks only while the buffer is full,
// and returns the error of an earlier failed flush.
func (w *Conn) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for !w.closed && w.err == nil && w.flushableLocked() > 0 && len(w.buf)+len(p) > w.max {
		w.space.Wait()
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, ErrClosed
	}
	if w.holdACK > 0 && len(w.buf) == 0 && isPureACK(p) {
		w.buf = append(w.buf, p...)
		w.ackHeld = true
		if w.ackTimer == nil {
			w.ackTimer = time.AfterFunc(w.holdACK, w.releaseACK)
		} else {
			w.ackTimer.Reset(w.holdACK)
		}
		return len(p), nil
	}
	if w.ackHeld {
		w.ackHeld = false // it leaves with p
		w.ackTimer.Stop()
	}
	wasHeld := w.held
	w.buf = append(w.buf, p...)
	w.held = !wasHeld && isDataHeaderWithBody(p)
	if !w.held {
		w.work.Signal()
	}
	return len(p), nil
}

// HoldACKs makes the window update that accepts a stream (yamux's ACK) wait
// up to d for the next frame, so that an answer written soon after accepting
// a stream leaves in the same write as the ACK: over a circuit, one cell
// instead of two through every hop. A stream's opener does not wait for the
// ACK (it may send at once), so holding it delays nothing. Call HoldACKs
// before the first Write.
func (w *Conn) HoldACKs(d time.Duration) { w.holdACK = d }

// releaseACK lets a held ACK go on its own once holdACK has passed.
func (w *Conn) releaseACK() {
	w.mu.Lock()
	if w.ackHeld {
		w.ackHeld = false
		w.work.Signal()
	}
	w.mu.Unlock()
}

// isPureACK reports whether p is a yamux window update header whose only
// flag is ACK (it may carry a window credit, which the opener needs only once
// it has the answer).
func isPureACK(p []byte) bool {
	const typeWindowUpdate, flagACK = 1, 2
	return len(p) == yamuxHeaderLen && p[0] == 0 && p[1] == typeWindowUpdate &&
		binary.BigEndian.Uint16(p[2:4]) == flagACK
}

func isDataHeaderWithBody(p []byte) bool {
	return len(p) == yamuxHeaderLen && p[0] == 0 && p[1] == yamuxTypeData &&
		binary.BigEndian.Uint32(p[8:12]) > 0
}

// flushableLocked is how many leading bytes of buf may leave now: all but a
// held header.
func (w *Conn) flushableLocked() int {
	if w.ackHeld {
		return 0
	}
	if w.held {
		return len(w.buf) - yamuxHeaderLen
	}
	return len(w.buf)
}

func (w *Conn) flushLoop() {
	defer close(w.done)
	for {
		w.mu.Lock()
		for !w.closed && w.flushableLocked() == 0 {
			w.work.Wait()
		}
		n := w.flushableLocked()
		if n == 0 || w.err != nil {
			w.mu.Unlock()
			return
		}
		out := w.buf[:n]
		w.buf = append(w.spare[:0], w.buf[n:]...) // keep a held header
		w.space.Broadcast()
		w.mu.Unlock()

		_, err := w.ReadWriteCloser.Write(out)
		if err == nil && w.flush != nil {
			err = w.flush()
		}
		w.lastFlush.Store(time.Now().UnixNano())

		w.mu.Lock()
		w.spare = out[:0]
		if err != nil {
			w.err = err
			w.closed = true
			w.space.Broadcast()
			w.mu.Unlock()
			w.ReadWriteCloser.Close()
			return
		}
		w.mu.Unlock()
	}
}

// LastFlush reports when data last left.
func (w *Conn) LastFlush() time.Time { return time.Unix(0, w.lastFlush.Load()) }

// Close sends what is queued (giving up after a second), closes the
// connection and waits for the flusher. It is idempotent.
func (w *Conn) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		<-w.done
		return w.ReadWriteCloser.Close()
	}
	w.closed = true
	w.held = false
	w.ackHeld = false
	if w.ackTimer != nil {
		w.ackTimer.Stop()
	}
	w.work.Broadcast()
	w.space.Broadcast()
	w.mu.Unlock()
	if d, ok := w.ReadWriteCloser.(interface{ SetWriteDeadline(time.Time) error }); ok {
		d.SetWriteDeadline(time.Now().Add(time.Second))
	}
	<-w.done
	return w.ReadWriteCloser.Close()
}
