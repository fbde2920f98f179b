// Package services runs the two servers a test network's exits reach: a web
// server and an authoritative DNS server for the zone chive.test, whose
// names nothing else on the machine can resolve. A client that loads
// http://www.chive.test/ through chive proves that the name was resolved by
// an exit, not locally.
package services

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Zone is the DNS zone the test network's resolver serves.
const Zone = "chive.test."

// WebHost is the name of the web server inside the zone.
const WebHost = "www.chive.test"

// PageText is what the front page says; browser tests look for it.
const PageText = "Hello from the chive test network"

// Page is the front page.
const Page = `<!DOCTYPE html>
<html><head><title>chive test network</title></head>
<body><h1 id="greeting">` + PageText + `</h1>
<p>This page was fetched through three chive relays. Its name, www.chive.test, is known only to the exits' resolver.</p>
</body></html>
`

// Body returns the n bytes that /size/n serves: a fixed pattern, so that a
// client can check a download byte for byte.
func Body(n int) []byte {
	b := make([]byte, n)
	FillBody(b, 0)
	return b
}

// FillBody writes the pattern for offsets off .. off+len(b).
func FillBody(b []byte, off int) {
	for i := range b {
		j := off + i
		b[i] = byte(j*7 + j>>8 + j>>16)
	}
}

// BodySHA256 is the hex SHA-256 of Body(n), computed without holding it.
func BodySHA256(n int) string {
	h := sha256.New()
	buf := make([]byte, 64<<10)
	for off := 0; off < n; off += len(buf) {
		chunk := buf[:min(len(buf), n-off)]
		FillBody(chunk, off)
		h.Write(chunk)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// MaxSize bounds /size/n.
const MaxSize = 1 << 30

// WebHandler serves / (Page), /size/N (N pattern bytes, streamed) and
// /echo-headers.
func WebHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, Page)
	})
	mux.HandleFunc("/size/", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/size/"))
		if err != nil || n < 0 || n > MaxSize {
			http.Error(w, "size must be 0 to 1 GiB", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(n))
		buf := make([]byte, 64<<10)
		for off := 0; off < n; off += len(buf) {
			chunk := buf[:min(len(buf), n-off)]
			FillBody(chunk, off)
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	return mux
}

// Records returns the zone's records, all pointing at webAddr.
func Records(webAddr netip.Addr) []dns.RR {
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			panic(fmt.Sprintf("services: bad built-in record %q: %v", s, err))
		}
		return r
	}
	recs := []dns.RR{
		rr(Zone + " 300 IN SOA ns.chive.test. hostmaster.chive.test. 1 3600 600 86400 60"),
		rr(Zone + " 300 IN NS ns.chive.test."),
		rr(Zone + " 300 IN MX 10 mail.chive.test."),
		rr(Zone + ` 300 IN TXT "chive test network"`),
		rr("www." + Zone + " 300 IN AAAA ::1"),
		rr("_http._tcp." + Zone + " 300 IN SRV 0 0 80 www.chive.test."),
		rr("big." + Zone + ` 300 IN TXT "` + strings.Repeat("x", 250) + `" "` + strings.Repeat("y", 250) + `" "` + strings.Repeat("z", 250) + `"`),
	}
	a := "A"
	if webAddr.Is6() {
		a = "AAAA"
	}
	for _, name := range []string{"www.", "ns.", "mail."} {
		recs = append(recs, rr(fmt.Sprintf("%s%s 300 IN %s %s", name, Zone, a, webAddr)))
	}
	return recs
}

// DNSHandler answers authoritatively for Zone from recs and refuses
// everything else.
func DNSHandler(recs []dns.RR) dns.Handler {
	return dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		if len(q.Question) != 1 {
			m.Rcode = dns.RcodeFormatError
			w.WriteMsg(m)
			return
		}
		qn := strings.ToLower(q.Question[0].Name)
		if !dns.IsSubDomain(Zone, qn) {
			m.Rcode = dns.RcodeRefused
			m.Authoritative = false
			w.WriteMsg(m)
			return
		}
		exists := false
		var soa dns.RR
		for _, r := range recs {
			if r.Header().Rrtype == dns.TypeSOA {
				soa = r
			}
			if strings.EqualFold(r.Header().Name, qn) {
				exists = true
				if r.Header().Rrtype == q.Question[0].Qtype || q.Question[0].Qtype == dns.TypeANY {
					m.Answer = append(m.Answer, dns.Copy(r))
				}
			}
		}
		if !exists {
			m.Rcode = dns.RcodeNameError
		}
		if len(m.Answer) == 0 && soa != nil {
			m.Ns = append(m.Ns, dns.Copy(soa))
		}
		w.WriteMsg(m)
	})
}

// Servers is a running web server and DNS server (UDP and TCP).
type Servers struct {
	Web netip.AddrPort // the web server
	DNS netip.AddrPort // the DNS server (UDP and TCP on the same port)

	web       *http.Server
	udp, tcp  *dns.Server
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// Start runs both servers. webListen and dnsListen are host:port (port 0
// picks one). The zone's names point at webAddr (the address exits use to
// reach the web server).
func Start(webListen, dnsListen string, webAddr netip.Addr) (*Servers, error) {
	wl, err := net.Listen("tcp", webListen)
	if err != nil {
		return nil, fmt.Errorf("web listener: %w", err)
	}
	s := &Servers{Web: netip.MustParseAddrPort(wl.Addr().String())}
	s.web = &http.Server{Handler: WebHandler(), ReadHeaderTimeout: 10 * time.Second}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.web.Serve(wl) }()

	host, port, err := net.SplitHostPort(dnsListen)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("DNS listen address: %w", err)
	}
	// UDP and TCP on one port: bind UDP first, then TCP on the port it got.
	// With port 0 the TCP port may be taken already: then try another.
	var pc net.PacketConn
	var tl net.Listener
	for attempt := 0; ; attempt++ {
		pc, err = net.ListenPacket("udp", net.JoinHostPort(host, port))
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("DNS UDP listener: %w", err)
		}
		tl, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if port != "0" || attempt == 20 {
			s.Close()
			return nil, fmt.Errorf("DNS TCP listener: %w", err)
		}
	}
	s.DNS = netip.MustParseAddrPort(pc.LocalAddr().String())
	h := DNSHandler(Records(webAddr))
	s.udp = &dns.Server{PacketConn: pc, Handler: h}
	s.tcp = &dns.Server{Listener: tl, Handler: h}
	started := make(chan struct{}, 2)
	s.udp.NotifyStartedFunc = func() { started <- struct{}{} }
	s.tcp.NotifyStartedFunc = func() { started <- struct{}{} }
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.udp.ActivateAndServe() }()
	go func() { defer s.wg.Done(); s.tcp.ActivateAndServe() }()
	for i := 0; i < 2; i++ {
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			s.Close()
			return nil, errors.New("DNS server did not start")
		}
	}
	return s, nil
}

// Close stops both servers and waits for them.
func (s *Servers) Close() error {
	s.closeOnce.Do(func() {
		if s.web != nil {
			s.web.Close()
		}
		if s.udp != nil {
			s.udp.Shutdown()
		}
		if s.tcp != nil {
			s.tcp.Shutdown()
		}
	})
	s.wg.Wait()
	return nil
}
