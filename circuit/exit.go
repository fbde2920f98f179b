package circuit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"
	"go.uber.org/zap"

	"github.com/chive-net/chive/cell"
	"github.com/chive-net/chive/internal/coalesce"
)

// ExitPolicy decides which destinations an exit connects to. It is asked
// after name resolution, so a name cannot smuggle a connection to an address
// the policy refuses.
type ExitPolicy interface {
	Allows(addr netip.Addr, port uint16) bool
}

// Resolver is the exit's name resolution: the configured upstream resolver,
// never the client's. LookupHost must wrap ErrNameNotFound when the name
// does not exist.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]netip.Addr, error)
	Exchange(ctx context.Context, query []byte) ([]byte, error)
}

// ErrNameNotFound is what a Resolver wraps for a name that does not exist.
var ErrNameNotFound = errors.New("circuit: name not found")

// ExitConfig configures a relay's exit role.
type ExitConfig struct {
	Policy   ExitPolicy
	Resolver Resolver
	// Dial opens destination connections (net.Dialer by default).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// ConnectTimeout bounds resolving plus connecting one stream.
	ConnectTimeout time.Duration
	// IdleTimeout closes a stream on which nothing moved for this long.
	IdleTimeout time.Duration
	// MaxStreamsPerCircuit and MaxStreams bound open streams on one
	// circuit and at this exit; beyond them streams get StatusExitLimit.
	MaxStreamsPerCircuit int
	MaxStreams           int
	// ResolveTTL is the TTL reported for RESOLVE answers (LookupHost gives
	// no TTL).
	ResolveTTL time.Duration
	// MaxBufferedBytes bounds the bytes the exit holds for all its
	// destinations: sent by clients, not yet read by the exit. Past it, the
	// circuit holding the most is destroyed with RESOURCELIMIT.
	MaxBufferedBytes int64
}

// Defaults for zero ExitConfig fields.
const (
	DefaultConnectTimeout       = 15 * time.Second
	DefaultIdleTimeout          = 5 * time.Minute
	DefaultMaxStreamsPerCircuit = 256
	DefaultMaxStreams           = 8192
	DefaultResolveTTL           = 60 * time.Second
	DefaultMaxBufferedBytes     = 256 << 20
	requestTimeout              = 30 * time.Second
)

// exitState is what all of a relay's exit circuits share.
type exitState struct {
	cfg      ExitConfig
	streams  atomic.Int64
	buffered atomic.Int64   // bytes held for destinations (see exitBuffers)
	wg       sync.WaitGroup // stream goroutines
}

func newExitState(cfg *ExitConfig) (*exitState, error) {
	c := *cfg
	if c.Policy == nil || c.Resolver == nil {
		return nil, errors.New("circuit: exit config needs a Policy and a Resolver")
	}
	if c.Dial == nil {
		var d net.Dialer
		c.Dial = d.DialContext
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxStreamsPerCircuit <= 0 {
		c.MaxStreamsPerCircuit = DefaultMaxStreamsPerCircuit
	}
	if c.MaxStreams <= 0 {
		c.MaxStreams = DefaultMaxStreams
	}
	if c.ResolveTTL <= 0 {
		c.ResolveTTL = DefaultResolveTTL
	}
	if c.MaxBufferedBytes <= 0 {
		c.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	return &exitState{cfg: c}, nil
}

// errEndReceived ends the exit's session when the client sends END.
var errEndReceived = errors.New("circuit: END received")

// exitSession is the exit end of a circuit's yamux session.
type exitSession struct {
	c       *relayCircuit
	pipe    *pipe
	bufs    *exitBuffers
	sess    *yamux.Session
	streams atomic.Int64
}

// exitSession returns the circuit's exit session, starting it on the first
// DATA. A relay that is not an exit refuses DATA.
func (c *relayCircuit) exitSession() (*exitSession, error) {
	if c.r.exit == nil {
		return nil, protocolErr("DATA at a relay that is not an exit")
	}
	c.exitMu.Lock()
	defer c.exitMu.Unlock()
	if c.exit != nil {
		return c.exit, nil
	}
	if c.ctx.Err() != nil {
		return nil, &destroyErr{reason: cell.DestroyDestroyed, detail: "circuit gone"}
	}
	e := &exitSession{c: c, bufs: newExitBuffers(c.r.exit)}
	e.pipe = newPipe(e.sendData)
	e.pipe.accepted = e.bufs.delivered
	conn := coalesce.New(e.pipe, 0, nil)
	conn.HoldACKs(ackHold)
	sess, err := yamux.Server(conn, sessionConfig(c.r.exit.cfg.MaxStreamsPerCircuit, uint8(c.class)))
	if err != nil {
		return nil, &destroyErr{reason: cell.DestroyInternal, detail: err.Error()}
	}
	e.sess = sess
	c.exit = e
	c.r.exit.wg.Add(1)
	go e.acceptLoop()
	return e, nil
}

// ackHold is how long the exit keeps a stream's ACK back for the stream's
// reply (sent once the destination answers), so that both travel in one
// cell: one cell fewer through every hop for each stream opened.
const ackHold = 5 * time.Millisecond

// sendData originates DATA cells toward the client.
func (e *exitSession) sendData(p []byte) error {
	for len(p) > 0 {
		bb := batchPool.Get().(*[batchLen]byte)
		cells, used := fillData(bb, p)
		err := e.c.r.waitBandwidth(e.c.ctx, len(cells))
		if err == nil {
			err = e.c.sendBackward(cells, true)
		}
		batchPool.Put(bb)
		if err != nil {
			go e.c.destroy(cell.DestroyChannelClosed, sidePrev)
			return err
		}
		p = p[used:]
	}
	return nil
}

func (e *exitSession) close() {
	e.sess.Close()
	e.pipe.closeRead(io.EOF)
	e.bufs.closeAll()
}

func (e *exitSession) acceptLoop() {
	x := e.c.r.exit
	defer x.wg.Done()
	for {
		st, err := e.sess.AcceptStream()
		if err != nil {
			return
		}
		x.wg.Add(1)
		go func() {
			defer x.wg.Done()
			e.serveStream(st)
		}()
	}
}

// serveStream answers one stream's request and, for CONNECT, splices it to
// the destination.
func (e *exitSession) serveStream(st *yamux.Stream) {
	defer st.Close()
	defer e.bufs.done(st.StreamID())
	rd := countingStream{readDeadliner: st, b: e.bufs, id: st.StreamID()}
	r := e.c.r
	x := r.exit
	st.SetReadDeadline(time.Now().Add(requestTimeout))
	req, err := cell.ReadStreamRequest(rd)
	st.SetReadDeadline(time.Time{})
	if err != nil {
		status := cell.StatusForRequestError(err)
		if !errors.Is(err, io.EOF) {
			e.reply(st, cell.StreamKind(0), &cell.StreamReply{Status: status})
		}
		return
	}
	if e.streams.Add(1) > int64(x.cfg.MaxStreamsPerCircuit) || x.streams.Add(1) > int64(x.cfg.MaxStreams) {
		e.streams.Add(-1)
		x.streams.Add(-1)
		e.countStream(req.Kind, cell.StatusExitLimit)
		e.reply(st, req.Kind, &cell.StreamReply{Status: cell.StatusExitLimit})
		return
	}
	defer e.streams.Add(-1)
	defer x.streams.Add(-1)

	ctx, cancel := context.WithTimeout(e.c.ctx, x.cfg.ConnectTimeout)
	defer cancel()
	switch req.Kind {
	case cell.StreamConnect:
		conn, bound, status := e.connect(ctx, req)
		e.countStream(req.Kind, status)
		if status != cell.StatusSucceeded {
			e.reply(st, req.Kind, &cell.StreamReply{Status: status})
			return
		}
		if err := e.reply(st, req.Kind, &cell.StreamReply{Addr: bound}); err != nil {
			conn.Close()
			return
		}
		cancel()
		splice(st, rd, conn, x.cfg.IdleTimeout)
	case cell.StreamResolve:
		addrs, status := e.resolve(ctx, req.Host)
		e.countStream(req.Kind, status)
		rep := &cell.StreamReply{Status: status}
		ttl := uint32(x.cfg.ResolveTTL / time.Second)
		for _, a := range addrs {
			if len(rep.Addrs) == cell.MaxResolvedAddrs {
				break
			}
			rep.Addrs = append(rep.Addrs, cell.ResolvedAddr{Addr: a, TTL: ttl})
		}
		e.reply(st, req.Kind, rep)
	case cell.StreamDNS:
		answer, err := x.cfg.Resolver.Exchange(ctx, req.DNS)
		if err != nil || len(answer) < cell.MinDNSLen || len(answer) > cell.MaxDNSLen {
			e.countStream(req.Kind, cell.StatusGeneralFailure)
			e.reply(st, req.Kind, &cell.StreamReply{Status: cell.StatusGeneralFailure})
			return
		}
		e.countStream(req.Kind, cell.StatusSucceeded)
		e.reply(st, req.Kind, &cell.StreamReply{DNS: answer})
	default:
		e.countStream(req.Kind, cell.StatusCommandNotSupported)
		e.reply(st, req.Kind, &cell.StreamReply{Status: cell.StatusCommandNotSupported})
	}
}

func (e *exitSession) reply(st *yamux.Stream, kind cell.StreamKind, rep *cell.StreamReply) error {
	st.SetWriteDeadline(time.Now().Add(requestTimeout))
	defer st.SetWriteDeadline(time.Time{})
	return cell.WriteStreamReply(st, kind, rep)
}

func (e *exitSession) countStream(kind cell.StreamKind, status cell.StreamStatus) {
	if m := e.c.r.m; m != nil {
		m.exitStreams.WithLabelValues(kind.String(), status.String()).Inc()
	}
}

// resolve returns host's addresses: the literal itself, or what the exit's
// resolver says.
func (e *exitSession) resolve(ctx context.Context, host string) ([]netip.Addr, cell.StreamStatus) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, cell.StatusSucceeded
	}
	addrs, err := e.c.r.exit.cfg.Resolver.LookupHost(ctx, host)
	switch {
	case err == nil && len(addrs) > 0:
		return addrs, cell.StatusSucceeded
	case err == nil || errors.Is(err, ErrNameNotFound):
		return nil, cell.StatusResolveFailed
	case errors.Is(err, context.DeadlineExceeded):
		return nil, cell.StatusTimeout
	default:
		return nil, cell.StatusResolveFailed
	}
}

// connect resolves, applies the exit policy to every address, and connects
// to the first allowed one that answers.
func (e *exitSession) connect(ctx context.Context, req *cell.StreamRequest) (net.Conn, netip.AddrPort, cell.StreamStatus) {
	x := e.c.r.exit
	addrs, status := e.resolve(ctx, req.Host)
	if status != cell.StatusSucceeded {
		return nil, netip.AddrPort{}, status
	}
	var allowed []netip.Addr
	for _, a := range addrs {
		if x.cfg.Policy.Allows(a, req.Port) {
			allowed = append(allowed, a)
		}
	}
	if len(allowed) == 0 {
		return nil, netip.AddrPort{}, cell.StatusNotAllowed
	}
	status = cell.StatusHostUnreachable
	for _, a := range allowed {
		ap := netip.AddrPortFrom(a, req.Port)
		conn, err := x.cfg.Dial(ctx, "tcp", ap.String())
		if err == nil {
			return conn, ap, cell.StatusSucceeded
		}
		status = dialStatus(ctx, err)
		e.c.r.log.Debug("exit connect failed", zap.Uint64("circ", e.c.seq), e.c.r.safeErr(fmt.Errorf("%s: %w", ap, err)))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, netip.AddrPort{}, status
}

// dialStatus maps a connect error to the status the client's SOCKS reply
// will carry.
func dialStatus(ctx context.Context, err error) cell.StreamStatus {
	var errno syscall.Errno
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || ctx.Err() != nil:
		return cell.StatusTimeout
	case errors.As(err, &errno):
		switch errno {
		case syscall.ECONNREFUSED:
			return cell.StatusConnectionRefused
		case syscall.ENETUNREACH:
			return cell.StatusNetworkUnreachable
		case syscall.EHOSTUNREACH:
			return cell.StatusHostUnreachable
		case syscall.ETIMEDOUT:
			return cell.StatusTimeout
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return cell.StatusTimeout
	}
	return cell.StatusGeneralFailure
}

// splice copies both ways until both directions end, or nothing moves for
// idle. The client's data is read through rd (st, counted for the exit's
// buffer budget); the destination's is written to st.
func splice(st *yamux.Stream, rd readDeadliner, conn net.Conn, idle time.Duration) {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		copyIdle(conn, rd, rd, &last, idle)
		closeWrite(conn)
	}()
	go func() {
		defer wg.Done()
		copyIdle(st, conn, conn, &last, idle)
		st.Close() // FIN: the client reads EOF after the data
	}()
	wg.Wait()
	conn.Close()
}

type readDeadliner interface {
	io.Reader
	SetReadDeadline(time.Time) error
}

// copyIdle copies src to dst; a read deadline that expires while the other
// direction moved recently is not idleness.
func copyIdle(dst io.Writer, src io.Reader, dl readDeadliner, last *atomic.Int64, idle time.Duration) {
	buf := make([]byte, 32<<10)
	for {
		dl.SetReadDeadline(time.Now().Add(idle))
		n, err := src.Read(buf)
		if n > 0 {
			last.Store(time.Now().UnixNano())
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if isDeadline(err) && time.Since(time.Unix(0, last.Load())) < idle {
				continue
			}
			return
		}
	}
}

func isDeadline(err error) bool {
	if errors.Is(err, yamux.ErrTimeout) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}
