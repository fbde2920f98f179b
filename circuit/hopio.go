package circuit

import (
	"errors"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/chive-net/chive/cell"
)

// batchCells is how many cells one read or write moves at most. Reading and
// writing cells in batches is what makes forwarding cheap: one yamux frame,
// one lock and (through the link's coalescer) a share of one TLS record per
// batch instead of per cell.
const batchCells = 32

// batchLen is the size of a batch buffer.
const batchLen = batchCells * cell.CellLen

// batchPool holds batch buffers. A circuit takes one only while it has cells
// to move, so an idle circuit holds none.
var batchPool = sync.Pool{New: func() any { return new([batchLen]byte) }}

// writeTimeout bounds how long a circuit waits for its peer's window to open:
// a hop that reads nothing for this long gets the circuit destroyed.
const writeTimeout = 2 * time.Minute

// pollDeadline is a deadline in the past: a Read under it returns what is
// already buffered, or yamux.ErrTimeout at once.
var pollDeadline = time.Unix(1, 0)

// readBatches reads whole cells from s and calls fn with each batch: one or
// more cells back to back, which fn may modify in place. The batch is only
// valid during the call. readBatches returns when s fails or fn returns an
// error.
//
// An idle circuit blocks on a cell-sized array on its own stack; once a cell
// arrives, everything yamux has already buffered is drained into a pooled
// batch without blocking.
func readBatches(s *yamux.Stream, fn func(batch []byte) error) error {
	var first [cell.CellLen]byte
	for {
		if _, err := io.ReadFull(s, first[:]); err != nil {
			return err
		}
		bb := batchPool.Get().(*[batchLen]byte)
		n := copy(bb[:], first[:])
		s.SetReadDeadline(pollDeadline)
		for n < batchLen {
			m, err := s.Read(bb[n:])
			n += m
			if err != nil {
				break // nothing more buffered now (or a failure the next blocking read reports)
			}
		}
		s.SetReadDeadline(time.Time{})
		if r := n % cell.CellLen; r != 0 {
			// The rest of a partly read cell is on its way: wait for it.
			if _, err := io.ReadFull(s, bb[n:n+cell.CellLen-r]); err != nil {
				batchPool.Put(bb)
				return err
			}
			n += cell.CellLen - r
		}
		err := fn(bb[:n])
		batchPool.Put(bb)
		if err != nil {
			return err
		}
	}
}

// readCell reads one cell under a deadline.
func readCell(s *yamux.Stream, c *cell.Cell, deadline time.Time) error {
	s.SetReadDeadline(deadline)
	defer s.SetReadDeadline(time.Time{})
	_, err := io.ReadFull(s, c[:])
	return err
}

// hopWriter writes whole cells to one hop stream. Its mutex keeps concurrent
// writers from interleaving inside a batch; callers whose cells carry chained
// CGO state hold their own lock around encryption and write so that the
// cells leave in the order they were encrypted.
type hopWriter struct {
	mu       sync.Mutex // serialises writes; guards deadline
	s        *yamux.Stream
	deadline time.Time // the write deadline last set
}

func newHopWriter(s *yamux.Stream) *hopWriter { return &hopWriter{s: s} }

// write sends cells (a multiple of CellLen bytes) in one stream write.
func (w *hopWriter) write(cells []byte) error {
	if len(cells) == 0 {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	// Moving the deadline costs an allocation in yamux; move it only when
	// half of it has been used, so a write never has less than half of
	// writeTimeout to complete.
	if now := time.Now(); w.deadline.Sub(now) < writeTimeout/2 {
		w.deadline = now.Add(writeTimeout)
		w.s.SetWriteDeadline(w.deadline)
	}
	_, err := w.s.Write(cells)
	return err
}

// writeCell sends one cell.
func (w *hopWriter) writeCell(c *cell.Cell) error { return w.write(c[:]) }

// destroy sends a DESTROY cell (best effort, briefly) and closes the stream.
// A writer blocked on the peer's window is released by the short deadline.
func (w *hopWriter) destroy(reason cell.DestroyReason) {
	var c cell.Cell
	(&cell.Destroy{Reason: reason}).Encode(&c)
	// Set outside the lock: it releases a writer blocked on the window.
	w.s.SetWriteDeadline(time.Now().Add(time.Second))
	w.mu.Lock()
	w.s.Write(c[:])
	w.mu.Unlock()
	w.s.Close()
}

// closeQuietly closes the stream without a DESTROY (the peer sent one, or
// the link is gone).
func (w *hopWriter) closeQuietly() {
	w.s.SetWriteDeadline(time.Now())
	w.s.Close()
}

// isTimeout reports whether err is a stream deadline expiring.
func isTimeout(err error) bool {
	return errors.Is(err, yamux.ErrTimeout)
}
