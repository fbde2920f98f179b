package onionproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	socks5 "github.com/armon/go-socks5"
	"go.uber.org/zap"

	"github.com/chive-net/chive/internal/obs"
)

// SOCKS5 wire constants this file parses itself (RFC 1928, RFC 1929).
const (
	socksVersion       = 5
	socksMethodNoAuth  = 0
	socksMethodUser    = 2
	socksMethodNone    = 0xFF
	userPassVersion    = 1
	maxSOCKSMethods    = 255
	maxUserPassField   = 255
	socksGreetingMax   = 2 + maxSOCKSMethods
	socksUserPassMax   = 3 + 2*maxUserPassField
	socksReplyMinBytes = 2 // VER REP ...
)

// Errors of the SOCKS parsers.
var (
	errSOCKSVersion  = errors.New("onionproxy: not a SOCKS5 client")
	errSOCKSNoMethod = errors.New("onionproxy: SOCKS5 greeting offers no method")
	errHTTPOnSOCKS   = errors.New("onionproxy: an HTTP request on the SOCKS port")
	errUserPassVer   = errors.New("onionproxy: SOCKS username/password sub-negotiation version is not 1")
)

// readGreeting reads a SOCKS5 method-selection message (VER NMETHODS
// METHODS) exactly, leaving what follows unread, and returns the methods.
func readGreeting(r io.Reader) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("SOCKS greeting: %w", err)
	}
	if hdr[0] != socksVersion {
		if isHTTPMethodStart(hdr[0]) {
			return nil, errHTTPOnSOCKS
		}
		return nil, fmt.Errorf("%w (version byte %d)", errSOCKSVersion, hdr[0])
	}
	if hdr[1] == 0 {
		return nil, errSOCKSNoMethod
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(r, methods); err != nil {
		return nil, fmt.Errorf("SOCKS greeting methods: %w", err)
	}
	return methods, nil
}

func isHTTPMethodStart(b byte) bool { return b >= 'A' && b <= 'Z' }

// chooseMethod picks username/password when offered (its credentials
// isolate streams), else no authentication, else none.
func chooseMethod(methods []byte) byte {
	switch {
	case slices.Contains(methods, socksMethodUser):
		return socksMethodUser
	case slices.Contains(methods, socksMethodNoAuth):
		return socksMethodNoAuth
	default:
		return socksMethodNone
	}
}

// readUserPass reads an RFC 1929 request: VER=1 ULEN UNAME PLEN PASSWD.
// Empty fields are accepted (some clients send an empty password).
func readUserPass(r io.Reader) (user, pass string, err error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return "", "", fmt.Errorf("SOCKS username/password: %w", err)
	}
	if hdr[0] != userPassVersion {
		return "", "", fmt.Errorf("%w (got %d)", errUserPassVer, hdr[0])
	}
	u := make([]byte, hdr[1])
	if _, err := io.ReadFull(r, u); err != nil {
		return "", "", fmt.Errorf("SOCKS username: %w", err)
	}
	if _, err := io.ReadFull(r, hdr[:1]); err != nil {
		return "", "", fmt.Errorf("SOCKS password length: %w", err)
	}
	p := make([]byte, hdr[0])
	if _, err := io.ReadFull(r, p); err != nil {
		return "", "", fmt.Errorf("SOCKS password: %w", err)
	}
	return string(u), string(p), nil
}

// userPassAuth accepts any username and password (they are isolation
// tokens, not secrets) and keeps both; the library's own authenticator
// would drop the password.
type userPassAuth struct{}

func (userPassAuth) GetCode() uint8 { return socks5.UserPassAuth }

func (userPassAuth) Authenticate(r io.Reader, w io.Writer) (*socks5.AuthContext, error) {
	if _, err := w.Write([]byte{socksVersion, socksMethodUser}); err != nil {
		return nil, err
	}
	user, pass, err := readUserPass(r)
	if err != nil {
		if errors.Is(err, errUserPassVer) {
			w.Write([]byte{userPassVersion, 1})
		}
		return nil, err
	}
	if _, err := w.Write([]byte{userPassVersion, 0}); err != nil {
		return nil, err
	}
	return &socks5.AuthContext{Method: socks5.UserPassAuth, Payload: map[string]string{"Username": user, "Password": pass}}, nil
}

// noResolve keeps names unresolved: the library then passes host:port to
// Dial, and the name goes to the exit. The default would ask the system's
// resolver: a local DNS lookup, which the proxy never does.
type noResolve struct{}

func (noResolve) Resolve(ctx context.Context, name string) (context.Context, net.IP, error) {
	return ctx, nil, nil
}

// socksConn is the client connection as the library sees it. It first
// serves the library a greeting that offers only the method we chose, and
// it rewrites the reply code of a failed request: the library picks codes
// by matching words in the dial error's text, which cannot express "not
// allowed" or "TTL expired".
type socksConn struct {
	net.Conn
	prefix []byte       // synthetic greeting not yet read by the library
	reply  atomic.Int32 // reply code for the next reply; -1 for none

	mu   sync.Mutex // guards req
	req  *socks5.Request
	auth bool
}

func (c *socksConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *socksConn) Write(p []byte) (int, error) {
	if code := c.reply.Swap(-1); code >= 0 && len(p) >= socksReplyMinBytes && p[0] == socksVersion {
		q := slices.Clone(p)
		q[1] = byte(code)
		return c.Conn.Write(q)
	}
	return c.Conn.Write(p)
}

// CloseWrite passes the library's half-close to the client connection.
func (c *socksConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// socksRules lets every command through to the library (which answers
// BIND and UDP ASSOCIATE with "command not supported") and keeps the
// request, with its credentials, for Dial.
type socksRules struct{ c *socksConn }

func (r socksRules) Allow(ctx context.Context, req *socks5.Request) (context.Context, bool) {
	r.c.mu.Lock()
	r.c.req = req
	r.c.mu.Unlock()
	return ctx, true
}

// socksFrontend is one SOCKS5 listener.
type socksFrontend struct {
	p     *Proxy
	ll    *limitListener
	addr  string
	class uint8
	log   *zap.Logger
	wg    sync.WaitGroup
}

var discardLog = log.New(io.Discard, "", 0)

func (f *socksFrontend) serve(ctx context.Context) {
	defer f.wg.Done()
	for {
		conn, err := f.ll.Accept()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer conn.Close()
			f.handle(ctx, conn)
		}()
	}
}

func (f *socksFrontend) handle(ctx context.Context, conn net.Conn) {
	p := f.p
	conn.SetDeadline(time.Now().Add(p.cfg.Limits.HandshakeTimeout))
	methods, err := readGreeting(conn)
	if err != nil {
		switch {
		case errors.Is(err, errHTTPOnSOCKS):
			io.WriteString(conn, "HTTP/1.0 501 Not Implemented\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"+
				"This is chive's SOCKS5 port, not an HTTP proxy. Configure your program for SOCKS5 here, or use the HTTP CONNECT port.\n")
			p.m.rejected.WithLabelValues("socks", "http_request").Inc()
		case errors.Is(err, errSOCKSNoMethod):
			conn.Write([]byte{socksVersion, socksMethodNone})
			p.m.rejected.WithLabelValues("socks", "bad_greeting").Inc()
		default:
			p.m.rejected.WithLabelValues("socks", "bad_greeting").Inc()
		}
		f.log.Debug("SOCKS handshake failed", obs.Err(err, p.unsafe))
		return
	}
	method := chooseMethod(methods)
	if method == socksMethodNone {
		conn.Write([]byte{socksVersion, socksMethodNone})
		p.m.rejected.WithLabelValues("socks", "no_acceptable_method").Inc()
		return
	}
	sc := &socksConn{Conn: conn, prefix: []byte{socksVersion, 1, method}}
	sc.reply.Store(-1)
	srv, err := socks5.New(&socks5.Config{
		AuthMethods: []socks5.Authenticator{socks5.NoAuthAuthenticator{}, userPassAuth{}},
		Resolver:    noResolve{},
		Rules:       socksRules{sc},
		Logger:      discardLog, // its messages name destinations
		Dial: func(_ context.Context, _, _ string) (net.Conn, error) {
			return f.dial(ctx, sc)
		},
	})
	if err != nil {
		f.log.Error("SOCKS server setup", zap.Error(err))
		return
	}
	if err := srv.ServeConn(sc); err != nil {
		sc.mu.Lock()
		reached := sc.req != nil
		sc.mu.Unlock()
		if !reached {
			p.m.rejected.WithLabelValues("socks", "bad_request").Inc()
		}
		f.log.Debug("SOCKS connection ended", obs.Err(err, p.unsafe))
	}
}

// dial opens the stream for a CONNECT request; on failure it arranges for
// the right reply code.
func (f *socksFrontend) dial(ctx context.Context, sc *socksConn) (net.Conn, error) {
	p := f.p
	sc.Conn.SetDeadline(time.Time{}) // handshake done; the stream has its own timeouts
	sc.mu.Lock()
	req := sc.req
	sc.mu.Unlock()
	if req == nil || req.DestAddr == nil {
		sc.reply.Store(socksGeneralFailure)
		return nil, errors.New("onionproxy: no request")
	}
	iso := isolation{listener: "socks|" + f.addr, client: clientIP(sc.RemoteAddr()), class: f.class}
	if a := req.AuthContext; a != nil && a.Method == socks5.UserPassAuth {
		iso.hasAuth = true
		iso.user = a.Payload["Username"]
		iso.pass = a.Payload["Password"]
	}
	host := req.DestAddr.FQDN
	if host == "" {
		host = req.DestAddr.IP.String()
	}
	port := uint16(req.DestAddr.Port)
	conn, err := p.openStream(ctx, "socks", iso, host, port)
	if err != nil {
		sc.reply.Store(int32(socksCode(err)))
		return nil, err
	}
	return conn, nil
}
