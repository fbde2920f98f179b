package circuit

import (
	"errors"
	"io"
	"sync"

	"github.com/chive-net/chive/cell"
)

// maxPipeBuffer bounds the DATA bytes a circuit end holds before its yamux
// session reads them. yamux drains the pipe into per-stream buffers (bounded
// by the stream windows) at once, so only a peer ignoring those windows can
// fill it; that peer gets its circuit destroyed.
const maxPipeBuffer = 4 << 20

var errPipeOverflow = errors.New("circuit: peer overran the circuit's buffer")

// pipe is the byte pipe a circuit provides to the end-to-end yamux session
// between client and exit. Bytes written are cut into DATA messages and sent
// along the circuit by send; DATA messages that arrive are handed to deliver
// and read back in order.
type pipe struct {
	send func(p []byte) error // sends p as DATA cells, in order

	mu     sync.Mutex // guards the following fields
	cond   sync.Cond  // signalled on new data or close
	buf    []byte
	off    int   // bytes of buf already read
	rerr   error // returned once buf is drained (io.EOF after END)
	closed bool
}

func newPipe(send func([]byte) error) *pipe {
	p := &pipe{send: send}
	p.cond.L = &p.mu
	return p
}

// deliver appends DATA bytes that arrived on the circuit.
func (p *pipe) deliver(data []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.rerr != nil {
		return nil // the session is gone; late data is dropped with the circuit
	}
	if len(p.buf)-p.off+len(data) > maxPipeBuffer {
		return errPipeOverflow
	}
	if p.off > 0 && p.off == len(p.buf) {
		p.buf, p.off = p.buf[:0], 0
	} else if p.off > cap(p.buf)/2 {
		n := copy(p.buf, p.buf[p.off:])
		p.buf, p.off = p.buf[:n], 0
	}
	p.buf = append(p.buf, data...)
	p.cond.Signal()
	return nil
}

// closeRead makes Read return err once the buffered bytes are read.
func (p *pipe) closeRead(err error) {
	p.mu.Lock()
	if p.rerr == nil {
		p.rerr = err
	}
	p.cond.Broadcast()
	p.mu.Unlock()
}

// Read implements io.Reader for the yamux session.
func (p *pipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.off == len(p.buf) && p.rerr == nil && !p.closed {
		p.cond.Wait()
	}
	if p.off < len(p.buf) {
		n := copy(b, p.buf[p.off:])
		p.off += n
		if p.off == len(p.buf) && cap(p.buf) > 64<<10 {
			p.buf, p.off = nil, 0 // let a burst's buffer go once drained
		}
		return n, nil
	}
	if p.closed {
		return 0, io.ErrClosedPipe
	}
	return 0, p.rerr
}

// Write implements io.Writer for the yamux session.
func (p *pipe) Write(b []byte) (int, error) {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return 0, io.ErrClosedPipe
	}
	if err := p.send(b); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Close implements io.Closer: the session is done with the pipe.
func (p *pipe) Close() error {
	p.mu.Lock()
	p.closed = true
	p.buf, p.off = nil, 0
	p.cond.Broadcast()
	p.mu.Unlock()
	return nil
}

// fillData cuts p into DATA relay messages, one per cell of the batch
// buffer, and returns the cells filled and the bytes of p they hold.
// The RELAY command is set; tags are left for the crypto.
func fillData(bb *[batchLen]byte, p []byte) (cells []byte, used int) {
	n := 0
	for used < len(p) && n < batchCells {
		chunk := min(len(p)-used, cell.MaxRelayData)
		c := (*cell.Cell)(bb[n*cell.CellLen : (n+1)*cell.CellLen])
		c.SetCommand(cell.CommandRelay)
		cell.EncodeRelay(c.Body(), cell.RelayData, p[used:used+chunk])
		used += chunk
		n++
	}
	return bb[:n*cell.CellLen], used
}
