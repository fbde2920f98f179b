package onionproxy

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"go.uber.org/zap"
)

// Errors of the HTTP CONNECT parsers.
var (
	errConnectTarget = errors.New("onionproxy: CONNECT target must be host:port")
	errProxyAuth     = errors.New("onionproxy: malformed Proxy-Authorization header")
)

// maxProxyAuth bounds a Proxy-Authorization value we decode.
const maxProxyAuth = 1024

// parseConnectTarget splits a CONNECT request's authority, "host:port" or
// "[v6]:port", into a host the exit understands and a non-zero port.
func parseConnectTarget(s string) (string, uint16, error) {
	host, ps, err := net.SplitHostPort(s)
	if err != nil || host == "" || ps == "" || len(ps) > 5 || strings.TrimLeft(ps, "0123456789") != "" {
		return "", 0, errConnectTarget
	}
	port, err := strconv.ParseUint(ps, 10, 16)
	if err != nil || port == 0 {
		return "", 0, errConnectTarget
	}
	if strings.IndexByte(host, ':') >= 0 || strings.IndexByte(host, '%') >= 0 {
		a, err := netip.ParseAddr(host)
		if err != nil || a.Zone() != "" {
			return "", 0, errConnectTarget
		}
		// "[::ffff:1.2.3.4]" is an IPv4 destination.
		host = a.Unmap().String()
	}
	return host, uint16(port), nil
}

// parseProxyAuth returns the credentials of a Proxy-Authorization header.
// "Basic" credentials are decoded (RFC 7617) so that their username can
// carry a delay class; any other scheme's value isolates as it is.
func parseProxyAuth(v string) (user, pass string, ok bool, err error) {
	if v == "" {
		return "", "", false, nil
	}
	if len(v) > maxProxyAuth {
		return "", "", false, fmt.Errorf("%w: longer than %d bytes", errProxyAuth, maxProxyAuth)
	}
	scheme, cred, found := strings.Cut(strings.TrimSpace(v), " ")
	if !strings.EqualFold(scheme, "Basic") {
		return v, "", true, nil
	}
	if !found {
		return "", "", false, fmt.Errorf("%w: Basic without credentials", errProxyAuth)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return "", "", false, fmt.Errorf("%w: credentials are not base64", errProxyAuth)
	}
	u, p, found := strings.Cut(string(raw), ":")
	if !found {
		return "", "", false, fmt.Errorf("%w: Basic credentials without a colon", errProxyAuth)
	}
	return u, p, true, nil
}

// httpFrontend is one HTTP CONNECT listener.
type httpFrontend struct {
	p     *Proxy
	ll    *limitListener
	addr  string
	class uint8
	log   *zap.Logger
	srv   *http.Server
	ctx   context.Context
	wg    sync.WaitGroup // tunnels
}

const onlyConnect = "chive: this is an HTTP CONNECT proxy; only the CONNECT method is supported (set https_proxy to it, or use the SOCKS5 port)\n"

func (f *httpFrontend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := f.p
	if r.Method != http.MethodConnect {
		w.Header().Set("Allow", http.MethodConnect)
		w.Header().Set("Connection", "close")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusMethodNotAllowed)
		io.WriteString(w, onlyConnect)
		p.m.rejected.WithLabelValues("http", "method").Inc()
		return
	}
	host, port, err := parseConnectTarget(r.URL.Host)
	if err != nil {
		f.fail(w, http.StatusBadRequest, "chive: the CONNECT target must be host:port")
		p.m.rejected.WithLabelValues("http", "bad_target").Inc()
		return
	}
	iso := isolation{listener: "http|" + f.addr, client: remoteIP(r.RemoteAddr), class: f.class}
	user, pass, ok, err := parseProxyAuth(r.Header.Get("Proxy-Authorization"))
	if err != nil {
		f.fail(w, http.StatusBadRequest, "chive: "+strings.TrimPrefix(err.Error(), "onionproxy: "))
		p.m.rejected.WithLabelValues("http", "bad_auth").Inc()
		return
	}
	if ok {
		iso.hasAuth, iso.user, iso.pass = true, user, pass
	}
	// The dial ends if the client goes away or the proxy shuts down.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(f.ctx, cancel)
	defer stop()
	stream, err := p.openStream(ctx, "http", iso, host, port)
	if err != nil {
		code, reason := httpFailure(err)
		f.fail(w, code, reason)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		stream.Close()
		f.fail(w, http.StatusInternalServerError, "chive: cannot take over the connection")
		return
	}
	client, brw, err := hj.Hijack()
	if err != nil {
		stream.Close()
		return
	}
	f.wg.Add(1)
	defer f.wg.Done()
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		client.Close()
		stream.Close()
		return
	}
	// Bytes the client sent after its header (a TLS ClientHello, say) are
	// already in the server's buffer.
	var early []byte
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ = brw.Reader.Peek(n)
		early = bytes.Clone(early)
	}
	splice(client, stream, early)
}

func (f *httpFrontend) fail(w http.ResponseWriter, code int, reason string) {
	w.Header().Set("Connection", "close")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	io.WriteString(w, reason+"\n")
}

func remoteIP(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

// httpFailure maps a stream failure to a status and a one-line reason.
func httpFailure(err error) (int, string) {
	switch socksCode(err) {
	case socksTTLExpired:
		return http.StatusGatewayTimeout, "chive: gateway timeout: no answer through the network in time"
	case socksConnectionRefused:
		return http.StatusBadGateway, "chive: bad gateway: the destination refused the connection"
	case socksNotAllowed:
		return http.StatusBadGateway, "chive: bad gateway: no exit allows this destination"
	case socksHostUnreachable, socksNetworkUnreachable:
		return http.StatusBadGateway, "chive: bad gateway: the destination is unreachable (or its name does not resolve)"
	}
	if errors.Is(err, ErrNoConsensus) {
		return http.StatusBadGateway, "chive: bad gateway: no valid consensus yet; the proxy cannot reach the directory authorities"
	}
	return http.StatusBadGateway, "chive: bad gateway: could not reach the destination through the network"
}

// splice copies both ways between a client connection and a stream,
// passing half-closes on, until both directions end; early is sent to the
// stream first.
func splice(client, stream net.Conn, early []byte) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var err error
		if len(early) > 0 {
			_, err = stream.Write(early)
		}
		if err == nil {
			io.Copy(stream, client)
		}
		closeWrite(stream)
	}()
	io.Copy(client, stream)
	closeWrite(client)
	wg.Wait()
	client.Close()
	stream.Close()
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}
