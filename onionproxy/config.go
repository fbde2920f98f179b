package onionproxy

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/chive-net/chive/internal/config"
	"github.com/chive-net/chive/internal/obs"
	"github.com/chive-net/chive/layercrypt"
)

// Default listener addresses (DESIGN.md section 1).
const (
	DefaultSOCKSAddr   = "127.0.0.1:9050"
	DefaultHTTPAddr    = "127.0.0.1:9080"
	DefaultDNSAddr     = "127.0.0.1:9053"
	DefaultControlAddr = "127.0.0.1:9036"
)

// Defaults for zero config fields.
const (
	DefaultPreemptive       = 2
	DefaultMaxDirtiness     = 10 * time.Minute
	DefaultBuildTimeout     = 10 * time.Second
	DefaultBuildAttempts    = 3
	DefaultStreamTimeout    = 10 * time.Second
	DefaultStreamRetries    = 2
	DefaultMaxCircuits      = 64
	DefaultPaddingMin       = 1500 * time.Millisecond
	DefaultPaddingMax       = 9500 * time.Millisecond
	DefaultCleanMaxAge      = time.Hour
	DefaultSampleSize       = 20
	DefaultPrimaryGuards    = 3
	DefaultGuardRetry       = time.Minute
	DefaultGuardRetryMax    = time.Hour
	DefaultGuardLifetime    = 120 * 24 * time.Hour
	DefaultRemoveUnlisted   = 20 * 24 * time.Hour
	DefaultRelayRetry       = 5 * time.Minute
	DefaultMaxConnections   = 1024
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultMaxHeaderBytes   = 8 << 10
	DefaultRefetchMin       = 10 * time.Second
	DefaultRefetchMax       = 10 * time.Minute
)

// Config is the onion proxy's configuration (YAML; see
// configs/onionproxy.yaml for a commented sample).
type Config struct {
	// DataDir holds the cached consensus and the guard state (0700).
	DataDir string `yaml:"data_dir"`
	// Authorities are the directory authorities: the only trust root.
	Authorities []AuthorityConfig `yaml:"authorities"`
	// SOCKSListeners are the SOCKS5 front-ends. Absent: one on
	// DefaultSOCKSAddr; an empty list: none.
	SOCKSListeners []ListenerConfig `yaml:"socks_listeners"`
	// HTTPConnectListeners are the HTTP CONNECT front-ends. Absent: one on
	// DefaultHTTPAddr; an empty list: none.
	HTTPConnectListeners []ListenerConfig `yaml:"http_connect_listeners"`
	// DNSListener is the DNS front-end (UDP and TCP on one address).
	DNSListener DNSListenerConfig `yaml:"dns_listener"`
	// ControlListener serves /metrics, /status and POST /newnym
	// (DefaultControlAddr).
	ControlListener string `yaml:"control_listener"`
	// Circuits tunes circuit building and use.
	Circuits CircuitsConfig `yaml:"circuits"`
	// Guards tunes the entry guards.
	Guards GuardsConfig `yaml:"guards"`
	// EnforceDistinctSubnets keeps two relays of one IPv4 /16 off the same
	// circuit (default true; loopback test networks turn it off).
	EnforceDistinctSubnets *bool `yaml:"enforce_distinct_subnets"`
	// Limits bound what clients of the front-ends can hold.
	Limits LimitsConfig `yaml:"limits"`
	// Log configures logging.
	Log obs.LogConfig `yaml:"log"`
}

// AuthorityConfig names one directory authority.
type AuthorityConfig struct {
	// ID is the authority's identity key (its RelayID text form).
	ID string `yaml:"id"`
	// Address is IP:port of its HTTP directory service; a literal, so that
	// reaching the directory never needs a DNS lookup.
	Address string `yaml:"address"`
}

// ListenerConfig is one SOCKS5 or HTTP CONNECT front-end.
type ListenerConfig struct {
	// Address is IP:port to listen on (port 0 picks one).
	Address string `yaml:"address"`
	// DelayClass is the mixing class of circuits for this listener's
	// streams (0: no added delay). A SOCKS username "class=N" or
	// "class=N:anything" overrides it per stream.
	DelayClass uint8 `yaml:"delay_class"`
}

// DNSListenerConfig is the DNS front-end.
type DNSListenerConfig struct {
	// Disabled turns the DNS front-end off.
	Disabled bool `yaml:"disabled"`
	// Address is IP:port for UDP and TCP (DefaultDNSAddr).
	Address string `yaml:"address"`
	// DelayClass is the mixing class of the circuits DNS queries use.
	DelayClass uint8 `yaml:"delay_class"`
	// CacheEntries bounds each isolation key's answer cache (negative: no
	// cache).
	CacheEntries int `yaml:"cache_entries"`
	// Timeout bounds one query over the network.
	Timeout time.Duration `yaml:"timeout"`
	// MaxInflight bounds queries waiting for the network at once.
	MaxInflight int `yaml:"max_inflight"`
	// MaxTCPConns bounds open DNS-over-TCP connections.
	MaxTCPConns int `yaml:"max_tcp_conns"`
}

// CircuitsConfig tunes the circuit manager.
type CircuitsConfig struct {
	// Preemptive is how many clean circuits are kept ready per delay class
	// in use (default 2; 0 takes the default, negative keeps none).
	Preemptive int `yaml:"preemptive"`
	// MaxDirtiness: a circuit first used longer ago than this takes no new
	// streams (default 10m, as Tor's MaxCircuitDirtiness).
	MaxDirtiness time.Duration `yaml:"max_dirtiness"`
	// BuildTimeout bounds building one circuit (default 10s).
	BuildTimeout time.Duration `yaml:"build_timeout"`
	// BuildAttempts is how many paths a stream tries before giving up
	// when builds fail (default 3).
	BuildAttempts int `yaml:"build_attempts"`
	// StreamTimeout bounds waiting for the exit's answer to one stream
	// attempt (default 10s); then the stream is retried on another circuit.
	StreamTimeout time.Duration `yaml:"stream_timeout"`
	// StreamRetries is how many more circuits a stream tries after its
	// circuit failed or timed out (default 2; negative: none).
	StreamRetries int `yaml:"stream_retries"`
	// MaxCircuits bounds open circuits (default 64).
	MaxCircuits int `yaml:"max_circuits"`
	// CleanMaxAge: a clean (never used) circuit older than this is
	// replaced (default 1h).
	CleanMaxAge time.Duration `yaml:"clean_max_age"`
	// RelayRetry: a relay that failed an extend is avoided for this long
	// when another choice exists (default 5m).
	RelayRetry time.Duration `yaml:"relay_retry"`
	// PaddingMin and PaddingMax: a circuit on which the client has sent
	// nothing for a random time drawn uniformly from this range gets a
	// DROP cell (long-range padding) to its last hop, so that an idle
	// circuit does not look idle along its whole length (defaults 1.5s and
	// 9.5s, Tor's padding interval; padding_max negative: no DROP padding).
	PaddingMin time.Duration `yaml:"padding_min"`
	PaddingMax time.Duration `yaml:"padding_max"`
}

// GuardsConfig tunes entry guards (Tor's guard-spec in miniature).
type GuardsConfig struct {
	// SampleSize is how many listed guards are kept sampled (default 20).
	SampleSize int `yaml:"sample_size"`
	// Primary is how many guards are tried first, in order (default 3).
	Primary int `yaml:"primary"`
	// RetryInitial is how long a guard that failed is left alone before it
	// is tried again; the wait doubles with each further failure up to
	// RetryMax (defaults 1m and 1h).
	RetryInitial time.Duration `yaml:"retry_initial"`
	RetryMax     time.Duration `yaml:"retry_max"`
	// Lifetime: a guard sampled longer ago than this is dropped (120 days).
	Lifetime time.Duration `yaml:"lifetime"`
	// RemoveUnlistedAfter: a guard missing from the consensus for this long
	// is dropped (20 days).
	RemoveUnlistedAfter time.Duration `yaml:"remove_unlisted_after"`
}

// LimitsConfig bounds front-end clients.
type LimitsConfig struct {
	// MaxConnections bounds open client connections per SOCKS or HTTP
	// listener (default 1024); beyond it new connections are closed at once.
	MaxConnections int `yaml:"max_connections"`
	// HandshakeTimeout bounds a SOCKS handshake or an HTTP request header
	// (default 10s).
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// MaxHeaderBytes bounds an HTTP CONNECT request header (default 8 KiB).
	MaxHeaderBytes int `yaml:"max_header_bytes"`
}

// LoadConfig reads a YAML config file strictly, fills in defaults and
// validates it.
func LoadConfig(path string) (*Config, error) {
	var c Config
	if err := config.Load(path, &c); err != nil {
		return nil, err
	}
	if err := c.Check(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Check fills in defaults and validates c, with errors naming the key.
func (c *Config) Check() error {
	c.setDefaults()
	return c.validate()
}

func (c *Config) setDefaults() {
	if c.SOCKSListeners == nil {
		c.SOCKSListeners = []ListenerConfig{{Address: DefaultSOCKSAddr}}
	}
	if c.HTTPConnectListeners == nil {
		c.HTTPConnectListeners = []ListenerConfig{{Address: DefaultHTTPAddr}}
	}
	if c.DNSListener.Address == "" {
		c.DNSListener.Address = DefaultDNSAddr
	}
	if c.ControlListener == "" {
		c.ControlListener = DefaultControlAddr
	}
	cc := &c.Circuits
	setInt(&cc.Preemptive, DefaultPreemptive)
	setDur(&cc.MaxDirtiness, DefaultMaxDirtiness)
	setDur(&cc.BuildTimeout, DefaultBuildTimeout)
	setInt(&cc.BuildAttempts, DefaultBuildAttempts)
	setDur(&cc.StreamTimeout, DefaultStreamTimeout)
	setInt(&cc.StreamRetries, DefaultStreamRetries)
	setInt(&cc.MaxCircuits, DefaultMaxCircuits)
	setDur(&cc.CleanMaxAge, DefaultCleanMaxAge)
	setDur(&cc.RelayRetry, DefaultRelayRetry)
	setDur(&cc.PaddingMin, DefaultPaddingMin)
	setDur(&cc.PaddingMax, DefaultPaddingMax)
	g := &c.Guards
	setInt(&g.SampleSize, DefaultSampleSize)
	setInt(&g.Primary, DefaultPrimaryGuards)
	setDur(&g.RetryInitial, DefaultGuardRetry)
	setDur(&g.RetryMax, DefaultGuardRetryMax)
	setDur(&g.Lifetime, DefaultGuardLifetime)
	setDur(&g.RemoveUnlistedAfter, DefaultRemoveUnlisted)
	if c.EnforceDistinctSubnets == nil {
		t := true
		c.EnforceDistinctSubnets = &t
	}
	l := &c.Limits
	setInt(&l.MaxConnections, DefaultMaxConnections)
	setDur(&l.HandshakeTimeout, DefaultHandshakeTimeout)
	setInt(&l.MaxHeaderBytes, DefaultMaxHeaderBytes)
}

func setInt(v *int, d int) {
	if *v == 0 {
		*v = d
	}
}

func setDur(v *time.Duration, d time.Duration) {
	if *v == 0 {
		*v = d
	}
}

func (c *Config) validate() error {
	if c.DataDir == "" {
		return config.Errorf("data_dir", "set a directory for the cached consensus and guard state, e.g. /var/lib/chive/onionproxy")
	}
	seen := map[layercrypt.RelayID]bool{}
	for i, a := range c.Authorities {
		key := fmt.Sprintf("authorities[%d]", i)
		id, err := layercrypt.ParseRelayID(a.ID)
		if err != nil {
			return config.Errorf(key+".id", "%q is not an authority identity key: copy it from the authority's identity file or its operator (%v)", a.ID, err)
		}
		if seen[id] {
			return config.Errorf(key+".id", "authority %s is listed twice", id.Short())
		}
		seen[id] = true
		if _, err := netip.ParseAddrPort(a.Address); err != nil {
			return config.Errorf(key+".address", "%q must be IP:port (a literal, so that the directory is reached without DNS)", a.Address)
		}
	}
	for i, l := range c.SOCKSListeners {
		if err := checkListenAddr(l.Address); err != nil {
			return config.Errorf(fmt.Sprintf("socks_listeners[%d].address", i), "%v", err)
		}
	}
	for i, l := range c.HTTPConnectListeners {
		if err := checkListenAddr(l.Address); err != nil {
			return config.Errorf(fmt.Sprintf("http_connect_listeners[%d].address", i), "%v", err)
		}
	}
	if !c.DNSListener.Disabled {
		if err := checkListenAddr(c.DNSListener.Address); err != nil {
			return config.Errorf("dns_listener.address", "%v", err)
		}
	}
	if err := checkListenAddr(c.ControlListener); err != nil {
		return config.Errorf("control_listener", "%v", err)
	}
	cc := c.Circuits
	switch {
	case cc.MaxDirtiness < 0:
		return config.Errorf("circuits.max_dirtiness", "must be positive, e.g. 10m")
	case cc.BuildTimeout < 0:
		return config.Errorf("circuits.build_timeout", "must be positive, e.g. 10s")
	case cc.BuildAttempts < 0:
		return config.Errorf("circuits.build_attempts", "must be at least 1")
	case cc.StreamTimeout < 0:
		return config.Errorf("circuits.stream_timeout", "must be positive, e.g. 10s")
	case cc.MaxCircuits < 0:
		return config.Errorf("circuits.max_circuits", "must be at least 1")
	case cc.CleanMaxAge < 0:
		return config.Errorf("circuits.clean_max_age", "must be positive, e.g. 1h")
	case cc.RelayRetry < 0:
		return config.Errorf("circuits.relay_retry", "must be positive, e.g. 5m")
	case cc.Preemptive > cc.MaxCircuits:
		return config.Errorf("circuits.preemptive", "%d is more than circuits.max_circuits (%d)", cc.Preemptive, cc.MaxCircuits)
	case cc.PaddingMin < 0:
		return config.Errorf("circuits.padding_min", "must be positive, e.g. 1.5s")
	case cc.PaddingMax > 0 && cc.PaddingMax < cc.PaddingMin:
		return config.Errorf("circuits.padding_max", "%v is below circuits.padding_min (%v); or make it negative to turn DROP padding off", cc.PaddingMax, cc.PaddingMin)
	}
	g := c.Guards
	switch {
	case g.SampleSize < 1:
		return config.Errorf("guards.sample_size", "must be at least 1")
	case g.Primary < 1:
		return config.Errorf("guards.primary", "must be at least 1")
	case g.Primary > g.SampleSize:
		return config.Errorf("guards.primary", "%d is more than guards.sample_size (%d)", g.Primary, g.SampleSize)
	case g.RetryInitial < 0:
		return config.Errorf("guards.retry_initial", "must be positive, e.g. 1m")
	case g.RetryMax < g.RetryInitial:
		return config.Errorf("guards.retry_max", "must be at least guards.retry_initial")
	case g.Lifetime < 0:
		return config.Errorf("guards.lifetime", "must be positive, e.g. 2880h")
	case g.RemoveUnlistedAfter < 0:
		return config.Errorf("guards.remove_unlisted_after", "must be positive, e.g. 480h")
	}
	l := c.Limits
	switch {
	case l.MaxConnections < 1:
		return config.Errorf("limits.max_connections", "must be at least 1")
	case l.HandshakeTimeout < 0:
		return config.Errorf("limits.handshake_timeout", "must be positive, e.g. 10s")
	case l.MaxHeaderBytes < 512:
		return config.Errorf("limits.max_header_bytes", "must be at least 512")
	}
	if _, err := obs.NewLogger(c.Log); err != nil {
		return config.Errorf("log", "%v", err)
	}
	return nil
}

// checkListenAddr requires an IP:port literal: a name would need a lookup.
func checkListenAddr(s string) error {
	if _, err := netip.ParseAddrPort(s); err != nil {
		return fmt.Errorf("%q must be IP:port, e.g. 127.0.0.1:9050", s)
	}
	return nil
}

func (c *Config) distinctSubnets() bool {
	return c.EnforceDistinctSubnets == nil || *c.EnforceDistinctSubnets
}
