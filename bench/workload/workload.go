// Package workload runs the whole-network benchmark's workloads through any
// client that speaks SOCKS5 (and, for the DNS workloads, DNS): the same
// code measures C tor and chive.
//
// Every request names the web server by a host name that only the exits'
// resolver knows, so every stream's name is resolved at the exit. Streams
// are isolated by SOCKS username, as Tor (IsolateSOCKSAuth, on by default)
// and chive do: a new username is a new circuit, a reused one reuses its
// circuit. A Target's UserPrefix starts every username, which is how chive
// is asked for a delay class ("class=1:").
package workload

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/chive-net/chive/bench/procstat"
	"github.com/chive-net/chive/bench/socks5"
)

// Workload names.
const (
	Bulk1       = "bulk1"        // one stream carrying Config.BulkSize bytes
	BulkN       = "bulkN"        // Config.Streams streams at once, each on its own circuit
	TTFBReady   = "ttfb-ready"   // time to first byte of a page on a circuit already built
	TTFBFresh   = "ttfb-fresh"   // the same with new isolation credentials each time
	DNSCached   = "dns"          // DNS A query for a name the exit has resolved before
	DNSUncached = "dns-uncached" // DNS query for a new name each time (NXDOMAIN)
)

// All lists every workload in the order Run runs them.
var All = []string{TTFBReady, TTFBFresh, DNSCached, DNSUncached, Bulk1, BulkN}

// Units of the samples.
var Units = map[string]string{
	Bulk1: "MB/s", BulkN: "MB/s", TTFBReady: "ms", TTFBFresh: "ms", DNSCached: "ms", DNSUncached: "ms",
}

// Target is one client to measure.
type Target struct {
	Name       string // e.g. "C tor", "chive class 1"
	SOCKS      string // the client's SOCKS5 address
	DNS        string // its DNS front-end (UDP); empty skips the DNS workloads
	UserPrefix string // prefix of every SOCKS username
	// Procs are the network's processes; the bulk workloads read their CPU
	// time before and after each transfer.
	Procs []procstat.Proc
}

// Config is what the workloads fetch and how often.
type Config struct {
	// Host and Port name the web server as the exits reach it.
	Host string
	Port int
	// Body is what /size/N serves, at least BulkSize bytes; downloads are
	// compared with it byte for byte.
	Body []byte
	// BulkSize (100 MiB), PageSize (1 KiB) and Streams (4): sizes of the
	// transfers and the number of concurrent bulk streams.
	BulkSize, PageSize, Streams int
	// Reps is the number of measured repetitions of each workload (5).
	Reps int
	// BulkCap, if not zero, ends a bulk transfer that has run this long:
	// its rate is then taken over the bytes received so far, and the
	// sample is counted as capped. It keeps a very slow network from
	// stalling the run.
	BulkCap time.Duration
	// DNSName has an A record at the exits' resolver; DNSZone is a zone it
	// answers NXDOMAIN under.
	DNSName, DNSZone string
	// OpTimeout bounds one transfer or query (10 minutes).
	OpTimeout time.Duration
	// FreshPause is the wait before each fresh-circuit sample (1 s), so
	// that a client may restock the clean circuits it keeps ready, as it
	// would between a user's clicks.
	FreshPause time.Duration
	// Run is mixed into every username so that no two runs share a
	// circuit; empty picks a random one.
	Run string
	// Log receives a line per sample; nil discards them.
	Log io.Writer
}

func (c *Config) setDefaults() error {
	if c.Host == "" || c.Port == 0 {
		return errors.New("workload: Config.Host and Config.Port name the web server")
	}
	if c.BulkSize == 0 {
		c.BulkSize = 100 << 20
	}
	if c.PageSize == 0 {
		c.PageSize = 1 << 10
	}
	if c.Streams == 0 {
		c.Streams = 4
	}
	if c.Reps == 0 {
		c.Reps = 5
	}
	if len(c.Body) < max(c.BulkSize, c.PageSize) {
		return fmt.Errorf("workload: Config.Body has %d bytes, fewer than the %d to fetch", len(c.Body), max(c.BulkSize, c.PageSize))
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = 10 * time.Minute
	}
	if c.FreshPause == 0 {
		c.FreshPause = time.Second
	}
	if c.Run == "" {
		var b [4]byte
		rand.Read(b[:])
		c.Run = hex.EncodeToString(b[:])
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	return nil
}

// Measurement is the samples of one workload.
type Measurement struct {
	Workload string    `json:"workload"`
	Unit     string    `json:"unit"`
	Samples  []float64 `json:"samples"`
	// Failures describes each failed attempt; a failed attempt has no
	// sample.
	Failures []string `json:"failures,omitempty"`
	// Capped counts bulk samples cut short by Config.BulkCap.
	Capped int `json:"capped,omitempty"`
}

// CPUSample is the CPU time the network's processes used during one bulk
// transfer.
type CPUSample struct {
	Workload string `json:"workload"`
	Bytes    int64  `json:"bytes"` // carried to the client
	// CPU[i] is Target.Procs[i]'s CPU time in seconds, -1 if unreadable.
	CPU []float64 `json:"cpu_seconds"`
}

// Result is what Run measured.
type Result struct {
	Target       string                  `json:"target"`
	Measurements map[string]*Measurement `json:"measurements"`
	CPU          []CPUSample             `json:"cpu,omitempty"`
}

// Run runs the named workloads (nil: All) against t, each c.Reps times. A
// failed attempt is recorded and the next one runs; Run returns an error
// only for a bad configuration or when ctx ends.
func Run(ctx context.Context, t Target, c Config, workloads []string) (*Result, error) {
	if err := c.setDefaults(); err != nil {
		return nil, err
	}
	if workloads == nil {
		workloads = All
	}
	want := map[string]bool{}
	for _, w := range workloads {
		if _, ok := Units[w]; !ok {
			return nil, fmt.Errorf("workload: unknown workload %q (have %v)", w, All)
		}
		want[w] = true
	}
	r := &runner{t: t, c: c, res: &Result{Target: t.Name, Measurements: map[string]*Measurement{}}}
	for _, w := range All {
		if !want[w] {
			continue
		}
		if (w == DNSCached || w == DNSUncached) && t.DNS == "" {
			continue
		}
		r.m = &Measurement{Workload: w, Unit: Units[w], Samples: []float64{}}
		r.res.Measurements[w] = r.m
		var err error
		switch w {
		case TTFBReady:
			err = r.ttfbReady(ctx)
		case TTFBFresh:
			err = r.ttfbFresh(ctx)
		case DNSCached, DNSUncached:
			err = r.dns(ctx, w == DNSUncached)
		case Bulk1:
			err = r.bulk(ctx, Bulk1, 1)
		case BulkN:
			err = r.bulk(ctx, BulkN, c.Streams)
		}
		if err != nil {
			return r.res, err
		}
	}
	return r.res, nil
}

type runner struct {
	t   Target
	c   Config
	res *Result
	m   *Measurement // the workload running
}

func (r *runner) user(parts ...any) *socks5.Auth {
	u := r.t.UserPrefix + "bench-" + r.c.Run
	for _, p := range parts {
		u += "-" + fmt.Sprint(p)
	}
	return &socks5.Auth{User: u, Pass: "x"}
}

func (r *runner) sample(v float64) {
	r.m.Samples = append(r.m.Samples, v)
	fmt.Fprintf(r.c.Log, "  %s %s #%d: %.3f %s\n", r.t.Name, r.m.Workload, len(r.m.Samples), v, r.m.Unit)
}

// fail records a failed attempt; it returns ctx's error if ctx has ended,
// which stops the run.
func (r *runner) fail(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	r.m.Failures = append(r.m.Failures, strings.ReplaceAll(err.Error(), "\n", "; "))
	fmt.Fprintf(r.c.Log, "  %s %s: failed: %v\n", r.t.Name, r.m.Workload, err)
	return nil
}

// Timing is one HTTP GET through the proxy.
type Timing struct {
	Start     time.Time // before connecting to the proxy
	Connected time.Time // the proxy reported the stream open
	FirstByte time.Time // the first byte of the response arrived
	End       time.Time // the last byte of the body arrived
	Bytes     int64     // body bytes
	Capped    bool      // the transfer was cut short at its time cap
}

// TTFB is the time from connecting to the proxy to the response's first
// byte.
func (t Timing) TTFB() time.Duration { return t.FirstByte.Sub(t.Start) }

// MBps is the body's size over the whole request's time, in 10^6 bytes
// per second.
func (t Timing) MBps() float64 { return float64(t.Bytes) / t.End.Sub(t.Start).Seconds() / 1e6 }

// Get fetches /size/size from the web server through the proxy with the
// given credentials and checks the body against want (the first size
// bytes of the pattern).
func Get(ctx context.Context, proxy string, auth *socks5.Auth, host string, port, size int, want []byte, timeout time.Duration) (Timing, error) {
	d := socks5.Dialer{Proxy: proxy, Auth: auth}
	return get(ctx, d.DialContext, net.JoinHostPort(host, strconv.Itoa(port)), host, port, size, want, timeout, 0)
}

// GetDirect is Get without a proxy: it connects to addr itself and names
// host in the request. It measures the machine's loopback ceiling.
func GetDirect(ctx context.Context, addr, host string, size int, want []byte, timeout time.Duration) (Timing, error) {
	_, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return Timing{}, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return Timing{}, err
	}
	var d net.Dialer
	return get(ctx, d.DialContext, addr, host, port, size, want, timeout, 0)
}

func get(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error),
	addr, host string, port, size int, want []byte, timeout, capAfter time.Duration) (Timing, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var t Timing
	t.Start = time.Now()
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return t, err
	}
	defer conn.Close()
	t.Connected = time.Now()
	if capAfter > 0 {
		conn.SetReadDeadline(t.Start.Add(capAfter))
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	req := fmt.Sprintf("GET /size/%d HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: chive-netbench\r\nConnection: close\r\n\r\n", size, host, port)
	if _, err := io.WriteString(conn, req); err != nil {
		return t, ctxErr(ctx, fmt.Errorf("send request: %w", err))
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	if _, err := br.Peek(1); err != nil {
		return t, ctxErr(ctx, fmt.Errorf("wait for the response: %w", err))
	}
	t.FirstByte = time.Now()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return t, ctxErr(ctx, fmt.Errorf("read response header: %w", err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return t, fmt.Errorf("response status %s", resp.Status)
	}
	if resp.ContentLength != int64(size) {
		return t, fmt.Errorf("Content-Length %d, want %d", resp.ContentLength, size)
	}
	buf := make([]byte, 256<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if t.Bytes+int64(n) > int64(size) || !bytes.Equal(buf[:n], want[t.Bytes:t.Bytes+int64(n)]) {
				return t, fmt.Errorf("body differs from the served pattern within bytes %d-%d", t.Bytes, t.Bytes+int64(n))
			}
			t.Bytes += int64(n)
		}
		if err == io.EOF {
			break
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() && capAfter > 0 && ctx.Err() == nil && t.Bytes > 0 {
			t.End, t.Capped = time.Now(), true
			return t, nil
		}
		if err != nil {
			return t, ctxErr(ctx, fmt.Errorf("read body after %d of %d bytes: %w", t.Bytes, size, err))
		}
	}
	t.End = time.Now()
	if t.Bytes != int64(size) {
		return t, fmt.Errorf("body of %d bytes, want %d", t.Bytes, size)
	}
	return t, nil
}

// ctxErr prefers the context's error: a read that failed because the
// context closed the connection timed out, it did not break.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

func (r *runner) get(ctx context.Context, auth *socks5.Auth, size int) (Timing, error) {
	return Get(ctx, r.t.SOCKS, auth, r.c.Host, r.c.Port, size, r.c.Body[:size], r.c.OpTimeout)
}

// getBulk is get with the bulk time cap.
func (r *runner) getBulk(ctx context.Context, auth *socks5.Auth) (Timing, error) {
	d := socks5.Dialer{Proxy: r.t.SOCKS, Auth: auth}
	return get(ctx, d.DialContext, net.JoinHostPort(r.c.Host, strconv.Itoa(r.c.Port)), r.c.Host, r.c.Port,
		r.c.BulkSize, r.c.Body[:r.c.BulkSize], r.c.OpTimeout, r.c.BulkCap)
}

// warm builds the circuit of auth's isolation group by fetching a page.
func (r *runner) warm(ctx context.Context, auth *socks5.Auth) error {
	if _, err := r.get(ctx, auth, r.c.PageSize); err != nil {
		return fmt.Errorf("warm-up fetch: %w", err)
	}
	return nil
}

func (r *runner) ttfbReady(ctx context.Context) error {
	auth := r.user("ready")
	if err := r.warm(ctx, auth); err != nil {
		// Without a ready circuit the samples would measure something else.
		return r.fail(ctx, err)
	}
	for range r.c.Reps {
		t, err := r.get(ctx, auth, r.c.PageSize)
		if err != nil {
			if err := r.fail(ctx, err); err != nil {
				return err
			}
			continue
		}
		r.sample(ms(t.TTFB()))
	}
	return nil
}

func (r *runner) ttfbFresh(ctx context.Context) error {
	for i := range r.c.Reps {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(r.c.FreshPause):
		}
		t, err := r.get(ctx, r.user("fresh", i), r.c.PageSize)
		if err != nil {
			if err := r.fail(ctx, err); err != nil {
				return err
			}
			continue
		}
		r.sample(ms(t.TTFB()))
	}
	return nil
}

// dns queries the DNS front-end over UDP: the zone's name (which the exit
// resolved before) or a new name each time (which it must ask the zone's
// server for, and which does not exist).
func (r *runner) dns(ctx context.Context, uncached bool) error {
	if r.c.DNSName == "" || (uncached && r.c.DNSZone == "") {
		return r.fail(ctx, errors.New("no DNS name configured"))
	}
	query := func(i int) error {
		name, wantRcode := dns.Fqdn(r.c.DNSName), dns.RcodeSuccess
		if uncached {
			name, wantRcode = fmt.Sprintf("nx-%s-%d.%s", r.c.Run, i, dns.Fqdn(r.c.DNSZone)), dns.RcodeNameError
		}
		q := new(dns.Msg)
		q.SetQuestion(name, dns.TypeA)
		cl := &dns.Client{Net: "udp", Timeout: r.c.OpTimeout}
		qctx, cancel := context.WithTimeout(ctx, r.c.OpTimeout)
		defer cancel()
		start := time.Now()
		resp, _, err := cl.ExchangeContext(qctx, q, r.t.DNS)
		el := time.Since(start)
		if err != nil {
			return fmt.Errorf("query %s: %w", name, err)
		}
		if resp.Rcode != wantRcode {
			return fmt.Errorf("query %s: rcode %s, want %s", name, dns.RcodeToString[resp.Rcode], dns.RcodeToString[wantRcode])
		}
		if !uncached && len(resp.Answer) == 0 {
			return fmt.Errorf("query %s: no answer", name)
		}
		if i >= 0 {
			r.sample(ms(el))
		}
		return nil
	}
	// One unmeasured query first: the client may need to build a circuit.
	if err := query(-1); err != nil {
		return r.fail(ctx, fmt.Errorf("warm-up: %w", err))
	}
	for i := range r.c.Reps {
		if err := query(i); err != nil {
			if err := r.fail(ctx, err); err != nil {
				return err
			}
		}
	}
	return nil
}

// bulk fetches BulkSize bytes over each of streams concurrent streams, each
// with its own credentials (so its own circuit, built beforehand), and
// samples the aggregate rate from the first request to the last byte.
func (r *runner) bulk(ctx context.Context, name string, streams int) error {
	for i := range r.c.Reps {
		auths := make([]*socks5.Auth, streams)
		errs := make([]error, streams)
		var wg sync.WaitGroup
		for s := range streams {
			auths[s] = r.user(name, i, s)
			wg.Go(func() { errs[s] = r.warm(ctx, auths[s]) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			if err := r.fail(ctx, err); err != nil {
				return err
			}
			continue
		}
		timings := make([]Timing, streams)
		before := procstat.Take(r.t.Procs)
		for s := range streams {
			wg.Go(func() { timings[s], errs[s] = r.getBulk(ctx, auths[s]) })
		}
		wg.Wait()
		after := procstat.Take(r.t.Procs)
		if err := errors.Join(errs...); err != nil {
			if err := r.fail(ctx, err); err != nil {
				return err
			}
			continue
		}
		start, end := timings[0].Start, timings[0].End
		var total int64
		capped := false
		for _, t := range timings {
			capped = capped || t.Capped
			if t.Start.Before(start) {
				start = t.Start
			}
			if t.End.After(end) {
				end = t.End
			}
			total += t.Bytes
		}
		cpu := make([]float64, len(r.t.Procs))
		for j, d := range procstat.CPUDelta(before, after) {
			cpu[j] = d.Seconds()
			if d < 0 {
				cpu[j] = -1
			}
		}
		r.res.CPU = append(r.res.CPU, CPUSample{Workload: name, Bytes: total, CPU: cpu})
		if capped {
			r.m.Capped++
			fmt.Fprintf(r.c.Log, "  %s %s: transfer cut at the %v cap\n", r.t.Name, name, r.c.BulkCap)
		}
		r.sample(float64(total) / end.Sub(start).Seconds() / 1e6)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
