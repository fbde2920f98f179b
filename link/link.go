// Package link is one authenticated connection between two chive nodes:
// TCP, then TLS 1.3 with the responder's Ed25519 identity pinned by the
// initiator, then a yamux session. Each yamux stream carries one circuit hop;
// the link never looks inside the streams.
//
// The responder's certificate is self-signed with its identity key, so the
// TLS handshake itself proves the identity: no CA and no hostname are
// involved. A relay that initiates a link presents its own certificate too,
// which lets the two relays reuse that link in both directions; clients
// present none and stay anonymous.
//
// Every link also carries a control stream (the first stream the initiator
// opens) on which both ends send a cell-sized PADDING frame whenever the link
// has been idle for a random while, so that an idle link does not look idle.
package link

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
	"go.uber.org/zap"

	"github.com/chive-net/chive/internal/coalesce"
	"github.com/chive-net/chive/layercrypt"
)

// Defaults for Config's zero values.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultStreamWindow is yamux's per-stream receive window, and so the
	// most a peer may have in flight on one circuit hop before it must wait:
	// the bound on one circuit's buffer memory per link. yamux refuses
	// anything below 256 KiB.
	DefaultStreamWindow = 256 << 10
	DefaultPaddingMin   = 1500 * time.Millisecond
	DefaultPaddingMax   = 9500 * time.Millisecond
	defaultBacklog      = 1024
	paddingFrameLen     = 510 // one cell: a PADDING frame looks like any cell
)

// Config configures both ends of links.
type Config struct {
	// Identity is this node's identity key. A responder must have one; an
	// initiator presents it when set (relays) and stays anonymous when nil
	// (clients).
	Identity *layercrypt.IdentityKey
	// HandshakeTimeout bounds TCP connect plus TLS handshake plus yamux setup.
	HandshakeTimeout time.Duration
	// StreamWindow is yamux's maximum per-stream receive window (>= 256 KiB).
	StreamWindow uint32
	// PaddingMin and PaddingMax bound the random idle time after which a
	// PADDING frame is sent. PaddingMax < 0 disables link padding.
	PaddingMin, PaddingMax time.Duration
	// AcceptBacklog bounds streams (circuit hops) opened by the peer and not
	// yet accepted.
	AcceptBacklog int
	// Dial replaces net.Dialer for the TCP connection (tests, namespaces).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Log receives link events; nil means no logging.
	Log *zap.Logger
	// UnsafeLogging allows peer addresses in log lines.
	UnsafeLogging bool
}

func (c *Config) withDefaults() Config {
	d := *c
	if d.HandshakeTimeout <= 0 {
		d.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if d.StreamWindow == 0 {
		d.StreamWindow = DefaultStreamWindow
	}
	if d.PaddingMin == 0 && d.PaddingMax == 0 {
		d.PaddingMin, d.PaddingMax = DefaultPaddingMin, DefaultPaddingMax
	}
	if d.AcceptBacklog <= 0 {
		d.AcceptBacklog = defaultBacklog
	}
	if d.Log == nil {
		d.Log = zap.NewNop()
	}
	if d.Dial == nil {
		var nd net.Dialer
		d.Dial = nd.DialContext
	}
	return d
}

func (c *Config) yamuxConfig() *yamux.Config {
	y := yamux.DefaultConfig()
	y.AcceptBacklog = c.AcceptBacklog
	y.MaxStreamWindowSize = c.StreamWindow
	y.LogOutput = io.Discard // yamux logs ordinary closes as errors; we log what matters
	y.StreamCloseTimeout = 30 * time.Second
	y.StreamOpenTimeout = c.HandshakeTimeout
	y.ConnectionWriteTimeout = 30 * time.Second
	y.KeepAliveInterval = 60 * time.Second
	return y
}

// Link is an authenticated, multiplexed connection to one peer.
type Link struct {
	peer      layercrypt.RelayID // zero when the peer is an anonymous client
	initiator bool
	conn      *coalesce.Conn
	sess      *yamux.Session
	control   net.Conn
	remote    net.Addr
	log       *zap.Logger

	paddingIn atomic.Int64 // padding bytes received on the control stream

	closeOnce sync.Once
	done      chan struct{} // closed when the padding goroutine has exited
}

// PaddingReceived returns how many padding bytes the peer has sent.
func (l *Link) PaddingReceived() int64 { return l.paddingIn.Load() }

// Peer returns the peer's identity, or the zero ID if it presented none.
func (l *Link) Peer() layercrypt.RelayID { return l.peer }

// RemoteAddr returns the peer's network address. Callers must not log it
// unless unsafe logging is on.
func (l *Link) RemoteAddr() net.Addr { return l.remote }

// Initiator reports whether this end dialed the link.
func (l *Link) Initiator() bool { return l.initiator }

// OpenStream opens a new stream (a circuit hop) to the peer.
func (l *Link) OpenStream() (*yamux.Stream, error) {
	s, err := l.sess.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("open stream: %w", err)
	}
	return s, nil
}

// AcceptStream waits for the peer to open a stream.
func (l *Link) AcceptStream() (*yamux.Stream, error) {
	return l.sess.AcceptStream()
}

// NumStreams returns the number of open streams, including the control stream.
func (l *Link) NumStreams() int { return l.sess.NumStreams() }

// CloseChan is closed when the link is closed, by either end.
func (l *Link) CloseChan() <-chan struct{} { return l.sess.CloseChan() }

// IsClosed reports whether the link has been closed.
func (l *Link) IsClosed() bool { return l.sess.IsClosed() }

// Close closes the link and every stream on it. It is idempotent and waits
// for the link's own goroutines.
func (l *Link) Close() error {
	var err error
	l.closeOnce.Do(func() {
		err = l.sess.Close()
		l.conn.Close()
	})
	<-l.done
	return err
}

// Dial connects to addr and authenticates the peer as expect. The whole
// handshake runs under cfg.HandshakeTimeout and ctx.
func Dial(ctx context.Context, addr string, expect layercrypt.RelayID, cfg *Config) (*Link, error) {
	c := cfg.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, c.HandshakeTimeout)
	defer cancel()

	var own *tls.Certificate
	if c.Identity != nil {
		cert, err := selfSignedCert(c.Identity, time.Now())
		if err != nil {
			return nil, err
		}
		own = &cert
	}
	raw, err := c.Dial(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("link: connect: %w", err)
	}
	bc := newBufConn(raw)
	tconn := tls.Client(bc, clientTLSConfig(expect, own))
	if err := tconn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("link: TLS handshake: %w", err)
	}
	if tconn.ConnectionState().NegotiatedProtocol != ALPN {
		raw.Close()
		return nil, ErrALPN
	}
	bc.startBuffering()
	co := coalesce.New(tconn, 0, bc.Flush)
	sess, err := yamux.Client(co, c.yamuxConfig())
	if err != nil {
		co.Close()
		return nil, fmt.Errorf("link: yamux: %w", err)
	}
	control, err := sess.OpenStream()
	if err != nil {
		sess.Close()
		co.Close()
		return nil, fmt.Errorf("link: open control stream: %w", err)
	}
	l := newLink(expect, true, co, sess, control, raw.RemoteAddr(), &c)
	return l, nil
}

func newLink(peer layercrypt.RelayID, initiator bool, co *coalesce.Conn, sess *yamux.Session, control net.Conn, remote net.Addr, c *Config) *Link {
	l := &Link{
		peer:      peer,
		initiator: initiator,
		conn:      co,
		sess:      sess,
		control:   control,
		remote:    remote,
		log:       c.Log,
		done:      make(chan struct{}),
	}
	go l.controlLoop(c.PaddingMin, c.PaddingMax)
	return l
}

// controlLoop discards the peer's padding and sends our own when the link has
// been idle. It exits when the link closes.
func (l *Link) controlLoop(lo, hi time.Duration) {
	defer close(l.done)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, paddingFrameLen)
		for {
			n, err := l.control.Read(buf)
			l.paddingIn.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		l.control.Close()
		<-readDone
	}()
	if hi < 0 {
		select {
		case <-l.sess.CloseChan():
		case <-readDone:
		}
		return
	}
	frame := make([]byte, paddingFrameLen) // command 0 (PADDING), zero body
	rnd := newRand()
	t := time.NewTimer(paddingDelay(rnd, lo, hi))
	defer t.Stop()
	for {
		select {
		case <-l.sess.CloseChan():
			return
		case <-readDone:
			return
		case <-t.C:
		}
		if idle := time.Since(l.conn.LastFlush()); idle >= lo {
			l.control.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := l.control.Write(frame); err != nil {
				return
			}
		}
		t.Reset(paddingDelay(rnd, lo, hi))
	}
}

func newRand() *mrand.Rand {
	var seed [16]byte
	rand.Read(seed[:])
	return mrand.New(mrand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:])))
}

// paddingDelay draws uniformly from [lo, hi], as Tor's channel padding does.
func paddingDelay(r *mrand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(r.Int64N(int64(hi-lo)+1))
}

// scrubErr logs err only when unsafe logging is on: network errors name the
// peer's address.
func scrubErr(err error, unsafe bool) zap.Field {
	if unsafe {
		return zap.Error(err)
	}
	return zap.String("error", "[scrubbed]")
}

// Listener accepts links. Handshakes run concurrently, each under the
// handshake deadline, so a slow or silent peer delays nobody else.
type Listener struct {
	ln  net.Listener
	cfg Config
	tls *tls.Config

	links chan *Link
	sem   chan struct{} // bounds concurrent handshakes

	ctx       context.Context // cancelled by Close; aborts handshakes in progress
	cancel    context.CancelFunc
	closeOnce sync.Once
	closed    chan struct{}
	wg        sync.WaitGroup
}

// maxConcurrentHandshakes bounds the goroutines and memory that unfinished
// handshakes can hold.
const maxConcurrentHandshakes = 128

// Listen starts accepting links on ln. cfg.Identity must be set.
func Listen(ln net.Listener, cfg *Config) (*Listener, error) {
	c := cfg.withDefaults()
	if c.Identity == nil {
		return nil, errors.New("link: a listener needs an identity key")
	}
	cert, err := selfSignedCert(c.Identity, time.Now())
	if err != nil {
		return nil, err
	}
	l := &Listener{
		ln:     ln,
		cfg:    c,
		tls:    serverTLSConfig(cert),
		links:  make(chan *Link),
		sem:    make(chan struct{}, maxConcurrentHandshakes),
		closed: make(chan struct{}),
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

// Addr returns the listening address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

func (l *Listener) acceptLoop() {
	defer l.wg.Done()
	for {
		select {
		case l.sem <- struct{}{}:
		case <-l.closed:
			return
		}
		raw, err := l.ln.Accept()
		if err != nil {
			<-l.sem
			select {
			case <-l.closed:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.cfg.Log.Warn("accept failed; listener stops", zap.Error(err))
			return
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer func() { <-l.sem }()
			lk, err := l.handshake(raw)
			if err != nil {
				l.cfg.Log.Debug("inbound link handshake failed", scrubErr(err, l.cfg.UnsafeLogging))
				return
			}
			select {
			case l.links <- lk:
			case <-l.closed:
				lk.Close()
			}
		}()
	}
}

func (l *Listener) handshake(raw net.Conn) (*Link, error) {
	deadline := time.Now().Add(l.cfg.HandshakeTimeout)
	raw.SetDeadline(deadline)
	bc := newBufConn(raw)
	tconn := tls.Server(bc, l.tls)
	ctx, cancel := context.WithDeadline(l.ctx, deadline)
	defer cancel()
	if err := tconn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	st := tconn.ConnectionState()
	if st.NegotiatedProtocol != ALPN {
		raw.Close()
		return nil, ErrALPN
	}
	var peer layercrypt.RelayID
	if len(st.PeerCertificates) > 0 {
		id, err := peerIdentity([][]byte{st.PeerCertificates[0].Raw})
		if err != nil {
			raw.Close()
			return nil, err
		}
		peer = id
	}
	bc.startBuffering()
	co := coalesce.New(tconn, 0, bc.Flush)
	sess, err := yamux.Server(co, l.cfg.yamuxConfig())
	if err != nil {
		co.Close()
		return nil, fmt.Errorf("yamux: %w", err)
	}
	// The initiator's first stream is the control stream.
	type accepted struct {
		s   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		s, err := sess.AcceptStream()
		ch <- accepted{s, err}
	}()
	var control net.Conn
	select {
	case a := <-ch:
		if a.err != nil {
			sess.Close()
			co.Close()
			return nil, fmt.Errorf("accept control stream: %w", a.err)
		}
		control = a.s
	case <-ctx.Done():
		sess.Close()
		co.Close()
		<-ch
		return nil, errors.New("peer opened no control stream in time")
	}
	raw.SetDeadline(time.Time{}) // authenticated: yamux keepalives take over
	return newLink(peer, false, co, sess, control, raw.RemoteAddr(), &l.cfg), nil
}

// Accept returns the next authenticated inbound link.
func (l *Listener) Accept(ctx context.Context) (*Link, error) {
	select {
	case lk := <-l.links:
		return lk, nil
	case <-l.closed:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close stops accepting, abandons handshakes in progress and waits for the
// listener's goroutines. Links already returned by Accept stay open.
func (l *Listener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.closed)
		l.cancel()
		err = l.ln.Close()
	})
	l.wg.Wait()
	return err
}
