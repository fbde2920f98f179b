// Package dirclient is the client side of the directory: it fetches the
// consensus from the directory authorities, verifies it (valid signatures
// from more than half of the configured authorities, inside its validity
// window, never older than the one already held), caches it in the data
// directory and refreshes it before it expires. Relays use Publish to
// upload their signed descriptor to every authority.
//
// The HTTP API it speaks is in docs/DIRECTORY.md ("Authority protocol"):
//
//	GET  /chive/v1/consensus   the authority's latest consensus, all signatures
//	POST /chive/v1/descriptor  one signed descriptor; 200 "accepted\n" or 400 reason
//
// Refresh timing follows Tor's client: a consensus is fresh until
// fresh-until (one voting period after valid-after) and usable until
// valid-until (three periods). The client fetches a new one at a random
// moment in the first half of [fresh-until, valid-until] (soon, while the
// one it holds is not usable: netdoc.Consensus.Usable), retries with
// backoff when no authority has a newer one, and keeps using the one it
// holds until it expires, saying so in the log.
package dirclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/chive-net/chive/internal/fsutil"
	"github.com/chive-net/chive/layercrypt"
	"github.com/chive-net/chive/netdoc"
)

// HTTP paths of the directory API.
const (
	ConsensusPath  = "/chive/v1/consensus"
	DescriptorPath = "/chive/v1/descriptor"
)

// Defaults for Config's zero values.
const (
	DefaultRequestTimeout = 30 * time.Second
	DefaultRetryMin       = 5 * time.Second
	DefaultRetryMax       = 5 * time.Minute
)

// CacheFile is the name of the cached consensus in Config.CacheDir.
const CacheFile = "cached-consensus"

// maxReasonLen bounds the part of an error response quoted in errors.
const maxReasonLen = 300

var (
	// ErrNoConsensus is returned (wrapped, with the reason of each
	// authority) when no authority gave a verifiable consensus at least as
	// new as the one held.
	ErrNoConsensus = errors.New("dirclient: no fresh consensus available")
	// ErrRefused matches a *RefusedError: an authority answered a descriptor
	// upload with an error status.
	ErrRefused = errors.New("dirclient: authority refused the descriptor")
	// ErrOlder: an authority served a consensus older than the one held
	// (a rollback, or an authority that has fallen behind).
	ErrOlder = errors.New("dirclient: consensus older than the one held")
)

// Authority is one directory authority as clients and relays configure it.
type Authority struct {
	ID   layercrypt.RelayID // the authority's signing key
	Addr string             // host:port of its HTTP API (or an http:// URL)
}

func (a Authority) String() string { return "authority " + a.ID.Short() }

// baseURL returns the URL prefix of the authority's API.
func (a Authority) baseURL() string {
	if strings.Contains(a.Addr, "://") {
		return strings.TrimSuffix(a.Addr, "/")
	}
	return "http://" + a.Addr
}

// Config configures a Client.
type Config struct {
	// Authorities are all configured authorities; a consensus needs valid
	// signatures from more than half of them.
	Authorities []Authority
	// CacheDir holds the cached consensus (file CacheFile, mode 0600).
	// Empty: no cache.
	CacheDir string
	// HTTP is the client for requests; nil means a private one without
	// keep-alives (a fetch an hour needs no idle connections).
	HTTP *http.Client
	// Log receives fetch events; nil means none.
	Log *zap.Logger
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// RequestTimeout bounds one request to one authority.
	RequestTimeout time.Duration
	// RetryMin and RetryMax bound the backoff of Run between failed
	// refreshes.
	RetryMin, RetryMax time.Duration
}

// Client fetches, verifies and caches the consensus.
type Client struct {
	auths   []Authority
	ids     []layercrypt.RelayID
	cache   string // path of the cache file, or ""
	hc      *http.Client
	log     *zap.Logger
	now     func() time.Time
	timeout time.Duration
	retry   [2]time.Duration

	mu  sync.Mutex        // guards cur
	cur *netdoc.Consensus // newest verified consensus, possibly expired
}

// New checks cfg and returns a client. It creates CacheDir (mode 0700) if
// needed but reads nothing: see Cached.
func New(cfg Config) (*Client, error) {
	if len(cfg.Authorities) == 0 {
		return nil, errors.New("dirclient: no authorities configured; list every directory authority's ID and address")
	}
	c := &Client{
		auths:   append([]Authority(nil), cfg.Authorities...),
		hc:      cfg.HTTP,
		log:     cfg.Log,
		now:     cfg.Now,
		timeout: cfg.RequestTimeout,
		retry:   [2]time.Duration{cfg.RetryMin, cfg.RetryMax},
	}
	for i, a := range c.auths {
		if a.ID.IsZero() {
			return nil, fmt.Errorf("dirclient: authority %d has no ID", i+1)
		}
		if a.Addr == "" {
			return nil, fmt.Errorf("dirclient: %s has no address", a)
		}
		for _, id := range c.ids {
			if id == a.ID {
				return nil, fmt.Errorf("dirclient: %s is configured twice", a)
			}
		}
		c.ids = append(c.ids, a.ID)
	}
	if c.hc == nil {
		c.hc = defaultHTTPClient()
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.timeout <= 0 {
		c.timeout = DefaultRequestTimeout
	}
	if c.retry[0] <= 0 {
		c.retry[0] = DefaultRetryMin
	}
	if c.retry[1] <= 0 {
		c.retry[1] = DefaultRetryMax
	}
	c.retry[1] = max(c.retry[1], c.retry[0])
	if cfg.CacheDir != "" {
		if err := os.MkdirAll(cfg.CacheDir, 0o700); err != nil {
			return nil, fmt.Errorf("dirclient: cache directory: %w", err)
		}
		c.cache = filepath.Join(cfg.CacheDir, CacheFile)
	}
	return c, nil
}

func defaultHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 nil, // authorities are reached directly
		DisableKeepAlives:     true,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: DefaultRequestTimeout,
	}}
}

// Current returns the newest verified consensus if it is still valid
// (now <= valid-until), else nil.
func (c *Client) Current() *netdoc.Consensus {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil || c.now().After(c.cur.ValidUntil) {
		return nil
	}
	return c.cur
}

// held returns the newest verified consensus, valid or not.
func (c *Client) held() *netdoc.Consensus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

// adopt makes cons the held consensus unless one at least as new is held.
func (c *Client) adopt(cons *netdoc.Consensus) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil || cons.ValidAfter.After(c.cur.ValidAfter) {
		c.cur = cons
	}
}

// Cached loads the cached consensus, verified against the configured
// authorities and still valid, and makes it the current one if it is newer
// than what the client holds. A missing cache is an error matching
// fs.ErrNotExist.
func (c *Client) Cached() (*netdoc.Consensus, error) {
	if c.cache == "" {
		return nil, fmt.Errorf("cached consensus: no cache directory configured: %w", fs.ErrNotExist)
	}
	b, err := os.ReadFile(c.cache)
	if err != nil {
		return nil, fmt.Errorf("cached consensus: %w", err)
	}
	cons, err := netdoc.ParseConsensus(b, c.ids, c.now())
	if err != nil {
		return nil, fmt.Errorf("cached consensus %s: %w", c.cache, err)
	}
	c.adopt(cons)
	return cons, nil
}

// Fetch asks the authorities, in random order, for their consensus and
// returns the first one that verifies and is newer than the one held; if
// the authorities that answer only have the one held, it returns that one.
// Every request is bounded by the request timeout. A consensus older than
// the one held is refused (ErrOlder). On success the consensus is cached.
// If none answers with a usable consensus the error wraps ErrNoConsensus
// and lists each authority's failure.
func (c *Client) Fetch(ctx context.Context) (*netdoc.Consensus, error) {
	held := c.held()
	var fails []AuthorityError
	var same *netdoc.Consensus
	var sameRaw []byte
	for _, i := range rand.Perm(len(c.auths)) {
		a := c.auths[i]
		cons, raw, err := c.fetchFrom(ctx, a)
		if err == nil && held != nil && cons.ValidAfter.Before(held.ValidAfter) {
			err = fmt.Errorf("%w: it is valid after %s, the one held after %s",
				ErrOlder, cons.ValidAfter.Format(time.RFC3339), held.ValidAfter.Format(time.RFC3339))
		}
		if err != nil {
			fails = append(fails, AuthorityError{Authority: a, Err: err})
			c.log.Debug("consensus fetch failed", zap.String("authority", a.ID.Short()), zap.Error(err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if held != nil && cons.ValidAfter.Equal(held.ValidAfter) {
			if same == nil || len(cons.Signatures) > len(same.Signatures) {
				same, sameRaw = cons, raw
			}
			continue
		}
		c.store(raw)
		c.adopt(cons)
		return cons, nil
	}
	if same != nil {
		// Nothing newer anywhere: the held consensus is what the network
		// has. Keep the copy with the most signatures.
		if len(same.Signatures) > len(held.Signatures) {
			c.store(sameRaw)
			c.mu.Lock()
			if c.cur == held {
				c.cur = same
			}
			c.mu.Unlock()
		}
		return same, nil
	}
	return nil, &FetchError{Failures: fails, ctxErr: ctx.Err()}
}

// AuthorityError is one authority's failure in a Fetch.
type AuthorityError struct {
	Authority Authority
	Err       error
}

// FetchError is Fetch's error when no authority gave a usable consensus. It
// matches ErrNoConsensus and each authority's error (netdoc.ErrExpired,
// netdoc.ErrNotEnoughSignatures, ErrOlder, ...), and its text gives each
// authority's reason:
//
//	dirclient: no fresh consensus available: authority AbCdEfGh: netdoc: consensus expired at ...; authority ...
type FetchError struct {
	Failures []AuthorityError
	ctxErr   error // set if the caller's context ended first
}

func (e *FetchError) Error() string {
	var b strings.Builder
	b.WriteString(ErrNoConsensus.Error())
	b.WriteString(": ")
	for i, f := range e.Failures {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %v", f.Authority, f.Err)
	}
	if e.ctxErr != nil {
		if len(e.Failures) > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "gave up: %v", e.ctxErr)
	}
	return b.String()
}

// Unwrap returns ErrNoConsensus and every authority's error.
func (e *FetchError) Unwrap() []error {
	errs := []error{ErrNoConsensus}
	for _, f := range e.Failures {
		errs = append(errs, f.Err)
	}
	if e.ctxErr != nil {
		errs = append(errs, e.ctxErr)
	}
	return errs
}

// fetchFrom gets and verifies one authority's consensus.
func (c *Client) fetchFrom(ctx context.Context, a Authority) (*netdoc.Consensus, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.baseURL()+ConsensusPath, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, netdoc.MaxConsensusSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the consensus: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, reason(b))
	}
	cons, err := netdoc.ParseConsensus(b, c.ids, c.now())
	if err != nil {
		return nil, nil, err
	}
	return cons, b, nil
}

// store writes raw to the cache file, atomically and 0600. A failure is
// logged: the consensus is still good to use.
func (c *Client) store(raw []byte) {
	if c.cache == "" {
		return
	}
	if err := writeFileAtomic(c.cache, raw); err != nil {
		c.log.Warn("could not cache the consensus", zap.Error(err))
	}
}

// Run keeps the consensus fresh until ctx ends, calling onUpdate (from
// Run's goroutine) with every newer consensus, the cached one first if it
// is still valid. It fetches at a random moment in the first half of
// [fresh-until, valid-until] of the held consensus, at once when it holds
// none or an expired one, after RetryMin when the held one is not usable
// (netdoc.Consensus.Usable: too few Running relays; a network whose
// authorities are on their initial voting schedule soon has a better
// one), and retries with exponential backoff (RetryMin to RetryMax, but at
// least four times before the held one expires) while no authority has a
// newer one. Each failed attempt is logged: a warning "no fresh consensus
// available; keeping the cached one" while the held consensus is still
// valid and usable (debug while it is not), an error once it has expired.
// It returns ctx.Err().
func (c *Client) Run(ctx context.Context, onUpdate func(*netdoc.Consensus)) error {
	if onUpdate == nil {
		onUpdate = func(*netdoc.Consensus) {}
	}
	switch cons, err := c.Cached(); {
	case err == nil:
		c.log.Info("using the cached consensus",
			zap.Time("valid_after", cons.ValidAfter), zap.Time("valid_until", cons.ValidUntil), zap.Int("relays", len(cons.Relays)))
		onUpdate(cons)
	case errors.Is(err, fs.ErrNotExist):
	default:
		c.log.Info("cached consensus not usable; fetching a new one", zap.Error(err))
	}
	retry := c.retry[0]
	var wait time.Duration
	if h := c.held(); h != nil {
		wait = c.nextFetch(h, retry)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		before := c.held()
		cons, err := c.Fetch(ctx)
		if err == nil && (before == nil || cons.ValidAfter.After(before.ValidAfter)) {
			c.log.Info("new consensus",
				zap.Time("valid_after", cons.ValidAfter), zap.Time("valid_until", cons.ValidUntil),
				zap.Int("relays", len(cons.Relays)), zap.Int("signatures", len(cons.Signatures)))
			onUpdate(cons)
			retry = c.retry[0]
			timer.Reset(c.nextFetch(cons, retry))
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		same := err == nil // the authorities answered with the one held
		if same {
			err = fmt.Errorf("%w: the authorities still serve the consensus valid after %s",
				ErrNoConsensus, cons.ValidAfter.Format(time.RFC3339))
		}
		delay := retry
		retry = min(2*retry, c.retry[1])
		if cur := c.Current(); cur != nil && same && cur.Usable(c.now()) != nil {
			c.log.Debug("no usable consensus available yet; keeping the one held",
				zap.NamedError("held", cur.Usable(c.now())), zap.Duration("retry_in", delay), zap.Error(err))
		} else if cur != nil {
			c.log.Warn("no fresh consensus available; keeping the cached one",
				zap.Time("valid_until", cur.ValidUntil), zap.Duration("retry_in", delay), zap.Error(err))
			// Try a few more times before it expires.
			if left := cur.ValidUntil.Sub(c.now()) / 4; left > 0 && left < delay {
				delay = max(left, time.Second/10)
			}
		} else {
			c.log.Error("no fresh consensus available and none still valid; circuits cannot be built until one is fetched",
				zap.Duration("retry_in", delay), zap.Error(err))
		}
		timer.Reset(delay)
	}
}

// nextFetch returns how long Run waits before fetching the successor of
// cons: retry if cons is valid but not usable, else refreshDelay.
func (c *Client) nextFetch(cons *netdoc.Consensus, retry time.Duration) time.Duration {
	if err := cons.Usable(c.now()); errors.Is(err, netdoc.ErrUnusable) {
		return min(retry, c.refreshDelay(cons))
	}
	return c.refreshDelay(cons)
}

// refreshDelay returns how long to wait before fetching the successor of
// cons: until a random moment in the first half of [fresh-until,
// valid-until], or 0 if that moment has passed.
func (c *Client) refreshDelay(cons *netdoc.Consensus) time.Duration {
	span := cons.ValidUntil.Sub(cons.FreshUntil) / 2
	at := cons.FreshUntil
	if span > 0 {
		at = at.Add(rand.N(span))
	}
	return max(at.Sub(c.now()), 0)
}

// reason returns the first line of an error response, trimmed.
func reason(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	s := strings.TrimSpace(string(b))
	if len(s) > maxReasonLen {
		s = s[:maxReasonLen] + "..."
	}
	if s == "" {
		return "(no reason given)"
	}
	return s
}

// writeFileAtomic writes b to path, mode 0600, crash-safely.
func writeFileAtomic(path string, b []byte) error { return fsutil.WriteFileAtomic(path, b, 0o600) }
