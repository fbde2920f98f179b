package workload

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chive-net/chive/testnet/services"
)

// Web is the benchmark's web server. It serves /size/N, the same pattern
// bytes as the test network's own web server (services.FillBody), but from
// memory prepared once: the server must not spend the CPU that the
// networks under test are competing for.
type Web struct {
	Addr netip.AddrPort

	body []byte
	srv  *http.Server
	wg   sync.WaitGroup
	once sync.Once
}

// StartWeb listens on listen (host:port; port 0 picks one) and serves up
// to maxSize bytes.
func StartWeb(listen string, maxSize int) (*Web, error) {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("workload: web listener: %w", err)
	}
	w := &Web{Addr: netip.MustParseAddrPort(l.Addr().String()), body: make([]byte, maxSize)}
	services.FillBody(w.body, 0)
	w.srv = &http.Server{Handler: http.HandlerFunc(w.serve), ReadHeaderTimeout: 10 * time.Second}
	w.wg.Add(1)
	go func() { defer w.wg.Done(); w.srv.Serve(l) }()
	return w, nil
}

func (w *Web) serve(rw http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/size/"))
	if !strings.HasPrefix(r.URL.Path, "/size/") || err != nil || n < 0 || n > len(w.body) {
		http.Error(rw, fmt.Sprintf("want /size/N, N from 0 to %d", len(w.body)), http.StatusNotFound)
		return
	}
	rw.Header().Set("Content-Type", "application/octet-stream")
	rw.Header().Set("Content-Length", strconv.Itoa(n))
	// Large writes: the kernel's socket buffer, not our loop, sets the pace.
	const chunk = 1 << 20
	for off := 0; off < n; off += chunk {
		if _, err := rw.Write(w.body[off:min(off+chunk, n)]); err != nil {
			return
		}
	}
}

// Body is what /size/N serves: its first N bytes. Callers must not
// modify it.
func (w *Web) Body() []byte { return w.body }

// Close stops the server and waits for it.
func (w *Web) Close() error {
	w.once.Do(func() { w.srv.Close() })
	w.wg.Wait()
	return nil
}
