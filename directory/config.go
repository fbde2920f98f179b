package directory

import (
	"fmt"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/chive-net/chive/internal/config"
	"github.com/chive-net/chive/internal/obs"
	"github.com/chive-net/chive/layercrypt"
	"github.com/chive-net/chive/link"
	"github.com/chive-net/chive/netdoc"
)

// Defaults for Config's zero values.
const (
	DefaultListen                  = ":7000"
	DefaultVotingPeriod            = time.Hour
	DefaultReachabilityTimeout     = link.DefaultHandshakeTimeout
	DefaultReachabilityConcurrency = 32
	DefaultRequestTimeout          = 30 * time.Second
	DefaultMaxDescriptors          = 20000
)

// MinVotingPeriod is the shortest voting period: the schedule splits a
// period into eighths (see the package documentation).
const MinVotingPeriod = time.Second

// Config is an authority's configuration file (YAML), plus two fields set
// by programs and tests.
type Config struct {
	// Nickname names this authority in logs (1-19 letters and digits).
	Nickname string `yaml:"nickname"`
	// DataDir holds the identity key, descriptors, votes and the last
	// consensus.
	DataDir string `yaml:"data_dir"`
	// Listen is the address of the HTTP API (default :7000).
	Listen string `yaml:"listen"`
	// Authorities lists every authority of the network, this one included,
	// in the same way in every authority's file (and in every client's).
	Authorities []AuthorityConfig `yaml:"authorities"`
	// VotingPeriod is how often a consensus is made (default 1h); whole
	// seconds, at least 1s. Every authority must use the same value.
	VotingPeriod time.Duration `yaml:"voting_period"`
	// InitialVotingPeriod is the voting period used while this authority
	// holds no usable consensus (netdoc.Consensus.Usable: valid now, at
	// least three Running relays, one a Running Exit), as C tor's
	// TestingV3AuthInitialVotingInterval: a new network gets its first
	// usable consensus within a few initial periods instead of one to two
	// voting periods. Whole seconds, at least 1s, dividing VotingPeriod;
	// default VotingPeriod (no separate initial schedule). Every
	// authority should use the same value, and each eighth of it must be
	// long enough for one request between authorities.
	InitialVotingPeriod time.Duration `yaml:"initial_voting_period"`
	// Testnet selects netdoc.TestnetFlagParams instead of
	// netdoc.DefaultFlagParams: private addresses are Valid and every
	// reachable relay is Fast, Stable and Guard.
	Testnet bool `yaml:"testnet"`
	// Flags overrides single flag thresholds; zero keeps the mode's value.
	Flags FlagConfig `yaml:"flags"`
	// Reachability configures the link tests of relays.
	Reachability ReachabilityConfig `yaml:"reachability"`
	// RequestTimeout bounds one request to another authority (it is also
	// cut to an eighth of the voting period).
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// MaxDescriptors bounds the relays this authority tracks; uploads for
	// new relays beyond it are refused.
	MaxDescriptors int `yaml:"max_descriptors"`
	// Log configures logging.
	Log obs.LogConfig `yaml:"log"`
	// MetricsListen, if set, is where cmd/directory serves /metrics
	// (e.g. 127.0.0.1:9037).
	MetricsListen string `yaml:"metrics_listen"`

	// Listener, if set, is used instead of listening on Listen.
	Listener net.Listener `yaml:"-"`
	// Registry receives the authority's metrics; nil means a private
	// registry.
	Registry prometheus.Registerer `yaml:"-"`
}

// AuthorityConfig is one authority in the authorities list.
type AuthorityConfig struct {
	Nickname string `yaml:"nickname"`
	// ID is the authority's identity, as printed by `directory keygen`.
	ID string `yaml:"id"`
	// Address is host:port of its HTTP API.
	Address string `yaml:"address"`
}

// FlagConfig overrides flag thresholds (see netdoc.FlagParams).
type FlagConfig struct {
	FastGuarantee           uint64        `yaml:"fast_guarantee"`            // bytes/s
	StableMinUptime         time.Duration `yaml:"stable_min_uptime"`         //
	GuardMinUptime          time.Duration `yaml:"guard_min_uptime"`          //
	GuardBandwidthGuarantee uint64        `yaml:"guard_bandwidth_guarantee"` // bytes/s
	MaxDescriptorAge        time.Duration `yaml:"max_descriptor_age"`        //
}

// ReachabilityConfig configures the link tests.
type ReachabilityConfig struct {
	// Timeout bounds one test (TCP, TLS, identity check); default 10s, and
	// never more than half the voting period.
	Timeout time.Duration `yaml:"timeout"`
	// Concurrency bounds tests running at once (default 32).
	Concurrency int `yaml:"concurrency"`
}

// LoadConfig reads, completes and validates an authority's config file.
func LoadConfig(path string) (*Config, error) {
	var c Config
	if err := config.Load(path, &c); err != nil {
		return nil, err
	}
	if err := c.Complete(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &c, nil
}

// Complete fills in defaults and validates c. Errors name the key.
func (c *Config) Complete() error {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.VotingPeriod == 0 {
		c.VotingPeriod = DefaultVotingPeriod
	}
	if c.InitialVotingPeriod == 0 {
		c.InitialVotingPeriod = c.VotingPeriod
	}
	if c.Reachability.Timeout == 0 {
		c.Reachability.Timeout = DefaultReachabilityTimeout
	}
	if c.Reachability.Concurrency == 0 {
		c.Reachability.Concurrency = DefaultReachabilityConcurrency
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.MaxDescriptors == 0 {
		c.MaxDescriptors = DefaultMaxDescriptors
	}
	return c.validate()
}

func (c *Config) validate() error {
	if !validNickname(c.Nickname) {
		return config.Errorf("nickname", "%q: use 1-%d ASCII letters and digits", c.Nickname, netdoc.MaxNicknameLen)
	}
	if c.DataDir == "" {
		return config.Errorf("data_dir", "required: a directory for the key, descriptors, votes and consensus (e.g. /var/lib/chive/directory)")
	}
	if c.Listener == nil {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			return config.Errorf("listen", "%q is not host:port (e.g. \":7000\")", c.Listen)
		}
	}
	if c.VotingPeriod < MinVotingPeriod || c.VotingPeriod > netdoc.MaxVotingPeriod || c.VotingPeriod%time.Second != 0 {
		return config.Errorf("voting_period", "%s: use whole seconds between %s and %s (1h on a public network, e.g. 10s in a testnet)",
			c.VotingPeriod, MinVotingPeriod, netdoc.MaxVotingPeriod)
	}
	if ip := c.InitialVotingPeriod; ip < MinVotingPeriod || ip%time.Second != 0 || ip > c.VotingPeriod || c.VotingPeriod%ip != 0 {
		return config.Errorf("initial_voting_period", "%s: use whole seconds, at least %s, that divide voting_period (%s), e.g. 1s in a testnet; leave it out to vote every voting_period from the start",
			ip, MinVotingPeriod, c.VotingPeriod)
	}
	if len(c.Authorities) == 0 {
		return config.Errorf("authorities", "required: list every authority (nickname, id, address), this one included")
	}
	if len(c.Authorities) > netdoc.MaxVoters {
		return config.Errorf("authorities", "%d authorities; at most %d", len(c.Authorities), netdoc.MaxVoters)
	}
	seen := make(map[layercrypt.RelayID]int)
	for i, a := range c.Authorities {
		key := fmt.Sprintf("authorities[%d]", i)
		if a.Nickname != "" && !validNickname(a.Nickname) {
			return config.Errorf(key+".nickname", "%q: use 1-%d ASCII letters and digits", a.Nickname, netdoc.MaxNicknameLen)
		}
		id, err := layercrypt.ParseRelayID(a.ID)
		if err != nil || id.IsZero() {
			return config.Errorf(key+".id", "%q is not an authority ID: use the 43-character ID printed by `directory keygen -data-dir DIR`", a.ID)
		}
		if j, dup := seen[id]; dup {
			return config.Errorf(key+".id", "the same ID as authorities[%d]; each authority has its own key", j)
		}
		seen[id] = i
		if _, _, err := net.SplitHostPort(a.Address); err != nil {
			return config.Errorf(key+".address", "%q is not host:port of the authority's HTTP API (e.g. \"192.0.2.10:7000\")", a.Address)
		}
	}
	if c.Reachability.Timeout < 0 {
		return config.Errorf("reachability.timeout", "must be positive")
	}
	if c.Reachability.Concurrency < 1 || c.Reachability.Concurrency > 1024 {
		return config.Errorf("reachability.concurrency", "%d: use 1-1024", c.Reachability.Concurrency)
	}
	if c.RequestTimeout < 0 {
		return config.Errorf("request_timeout", "must be positive")
	}
	if c.MaxDescriptors < 1 {
		return config.Errorf("max_descriptors", "%d: must be at least 1", c.MaxDescriptors)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"flags.stable_min_uptime", c.Flags.StableMinUptime},
		{"flags.guard_min_uptime", c.Flags.GuardMinUptime},
		{"flags.max_descriptor_age", c.Flags.MaxDescriptorAge},
	} {
		if d.v < 0 {
			return config.Errorf(d.key, "must not be negative")
		}
	}
	if c.Flags.FastGuarantee > netdoc.MaxBandwidth || c.Flags.GuardBandwidthGuarantee > netdoc.MaxBandwidth {
		return config.Errorf("flags", "bandwidth guarantees are at most %d bytes/s", uint64(netdoc.MaxBandwidth))
	}
	return nil
}

// FlagParams returns the flag thresholds: the mode's (testnet or public)
// with the configured overrides.
func (c *Config) FlagParams() netdoc.FlagParams {
	p := netdoc.DefaultFlagParams()
	if c.Testnet {
		p = netdoc.TestnetFlagParams()
	}
	f := c.Flags
	if f.FastGuarantee != 0 {
		p.FastGuarantee = f.FastGuarantee
	}
	if f.StableMinUptime != 0 {
		p.StableMinUptime = f.StableMinUptime
	}
	if f.GuardMinUptime != 0 {
		p.GuardMinUptime = f.GuardMinUptime
	}
	if f.GuardBandwidthGuarantee != 0 {
		p.GuardBandwidthGuarantee = f.GuardBandwidthGuarantee
	}
	if f.MaxDescriptorAge != 0 {
		p.MaxDescriptorAge = f.MaxDescriptorAge
	}
	return p
}

// peers returns the parsed authority list. Complete must have succeeded.
func (c *Config) peers() []peer {
	ps := make([]peer, len(c.Authorities))
	for i, a := range c.Authorities {
		id, _ := layercrypt.ParseRelayID(a.ID)
		name := a.Nickname
		if name == "" {
			name = id.Short()
		}
		ps[i] = peer{name: name, id: id, base: "http://" + a.Address}
	}
	return ps
}

func validNickname(s string) bool {
	if len(s) < 1 || len(s) > netdoc.MaxNicknameLen {
		return false
	}
	for _, r := range s {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			return false
		}
	}
	return true
}
