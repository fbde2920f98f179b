package relay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/chive-net/chive/circuit"
	"github.com/chive-net/chive/exitpolicy"
	"github.com/chive-net/chive/internal/config"
	"github.com/chive-net/chive/internal/obs"
	"github.com/chive-net/chive/layercrypt"
	"github.com/chive-net/chive/link"
	"github.com/chive-net/chive/mix"
	"github.com/chive-net/chive/netdoc"
)

// Config is a relay's configuration file (configs/relaynode.yaml). Load
// decodes it strictly, fills in defaults and validates it; the comments of
// the sample files say what each key means.
type Config struct {
	// Nickname names the relay in the consensus (1-19 letters and digits).
	Nickname string `yaml:"nickname"`
	// DataDir holds the relay's keys; it must be private to the relay's user.
	DataDir string `yaml:"data_dir"`
	// Listen is where the relay accepts links (TLS).
	Listen string `yaml:"listen"`
	// Address is the IPv4 address:port the relay advertises in its
	// descriptor. Empty means derived from Listen when Listen names a
	// specific address.
	Address string `yaml:"address"`
	// Family lists the IDs of other relays run by the same operator.
	Family []string `yaml:"family"`

	Bandwidth BandwidthConfig `yaml:"bandwidth"`
	Limits    LimitsConfig    `yaml:"limits"`
	Link      LinkConfig      `yaml:"link"`
	Mixing    MixingConfig    `yaml:"mixing"`
	Exit      ExitConfig      `yaml:"exit"`

	// Testnet allows EXTEND2 to private and loopback addresses and a
	// private advertised address, and short key rotation periods: for local
	// test networks only.
	Testnet bool `yaml:"testnet"`

	// Authorities receive the relay's descriptor.
	Authorities []AuthorityConfig `yaml:"authorities"`
	// PublishInterval is how often the descriptor is re-published.
	PublishInterval time.Duration `yaml:"publish_interval"`
	// OnionKeyRotation is how long an onion key is current; the previous
	// key is accepted for one more period and then erased.
	OnionKeyRotation time.Duration `yaml:"onion_key_rotation"`
	// ShutdownTimeout bounds the graceful shutdown (destroying circuits).
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`

	Metrics MetricsConfig `yaml:"metrics"`
	Log     obs.LogConfig `yaml:"log"`

	// Derived by Load/Validate; not in the file.
	family       []layercrypt.RelayID
	authorities  []Authority
	classes      map[mix.Class]mix.ClassSpec
	exitPolicy   exitpolicy.Policy
	address      netip.AddrPort // zero until derivable
	listenAddrIP netip.Addr     // the listen host, if an IP literal
}

// BandwidthConfig is the relay's bandwidth: what it advertises and what it
// allows itself (a token bucket over cells in both directions).
type BandwidthConfig struct {
	// Advertised is the bandwidth (bytes/s) the descriptor claims; clients
	// weight path selection by it. Default: Rate if set, else 1 MiB/s.
	Advertised ByteSize `yaml:"advertised"`
	// Rate and Burst bound forwarded cells (bytes/s, bytes); 0 = unlimited.
	Rate  ByteSize `yaml:"rate"`
	Burst ByteSize `yaml:"burst"`
}

// LimitsConfig bounds circuits (abuse limits and per-circuit memory).
type LimitsConfig struct {
	MaxCircuits int `yaml:"max_circuits"`
	// CreateRate and CreateBurst bound CREATE2 per second from one client
	// address (relays that authenticate are not limited this way).
	CreateRate  float64 `yaml:"create_rate"`
	CreateBurst int     `yaml:"create_burst"`
	// HandshakeTimeout bounds waiting for CREATE2 on a new circuit hop and
	// for CREATED2 from a next hop.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// ExtendTimeout bounds one EXTEND2 (link setup plus handshake).
	ExtendTimeout time.Duration `yaml:"extend_timeout"`
}

// LinkConfig tunes links (TLS + yamux). StreamWindow is the per-circuit,
// per-link buffer bound: a circuit through this relay holds at most two
// windows (one per neighbour) plus two mix queues.
type LinkConfig struct {
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	StreamWindow     ByteSize      `yaml:"stream_window"`
	AcceptBacklog    int           `yaml:"accept_backlog"`
}

// MixingConfig says which delay classes the relay serves.
type MixingConfig struct {
	// Classes served besides class 0 (which is always served). Absent:
	// classes 1 (mean 5ms) and 2 (mean 250ms). An empty list serves only
	// class 0.
	Classes []ClassConfig `yaml:"classes"`
	// Resolution lets the scheduler batch departures this close together.
	Resolution time.Duration `yaml:"resolution"`
	// QueueCells bounds the cells one circuit-direction holds in the mix.
	QueueCells int `yaml:"queue_cells"`
	// BudgetCells is the mix's shared budget: past it, a circuit-direction
	// holding at least BudgetCells/8 cells waits for its own cells to leave
	// before adding more (backpressure), so large end-to-end windows cannot
	// park their excess in this relay.
	BudgetCells int `yaml:"budget_cells"`
	// MaxCells bounds the cells the whole relay holds in its mix; past it
	// the circuit holding the most is destroyed (RESOURCELIMIT).
	MaxCells int `yaml:"max_cells"`
}

// ClassConfig is one served delay class.
type ClassConfig struct {
	Class uint8         `yaml:"class"`
	Mean  time.Duration `yaml:"mean"`
	Cap   time.Duration `yaml:"cap"` // 0: 10 x mean
}

// ExitConfig is the exit role.
type ExitConfig struct {
	Enabled bool `yaml:"enabled"`
	// Policy rules, first match wins ("accept *:443", "reject *:*"); a
	// final catch-all sets the default, otherwise the default is reject.
	// Absent: DefaultExitPolicy.
	Policy []string `yaml:"policy"`
	// AllowPrivateDestinations drops the rules that keep the exit from
	// private, loopback and link-local addresses and its own addresses.
	// Test networks only.
	AllowPrivateDestinations bool `yaml:"allow_private_destinations"`
	// Resolvers are the upstream DNS servers (IP or IP:port); empty means
	// the nameservers of /etc/resolv.conf.
	Resolvers       []string      `yaml:"resolvers"`
	ResolverTimeout time.Duration `yaml:"resolver_timeout"`
	ConnectTimeout  time.Duration `yaml:"connect_timeout"`
	IdleTimeout     time.Duration `yaml:"idle_timeout"`
	// MaxStreamsPerCircuit and MaxStreams bound open exit streams.
	MaxStreamsPerCircuit int `yaml:"max_streams_per_circuit"`
	MaxStreams           int `yaml:"max_streams"`
	// BufferMiB bounds the data the exit holds for all its destinations
	// (sent by clients, not yet taken by the destinations); past it the
	// circuit holding the most is destroyed. Default 256.
	BufferMiB int `yaml:"buffer_mib"`
}

// AuthorityConfig names one directory authority.
type AuthorityConfig struct {
	ID       string `yaml:"id"`
	Address  string `yaml:"address"` // host:port of its HTTP API
	Nickname string `yaml:"nickname"`
}

// Authority is a parsed AuthorityConfig.
type Authority struct {
	ID       layercrypt.RelayID
	Addr     string
	Nickname string
}

// name is how logs name the authority.
func (a Authority) name() string {
	if a.Nickname != "" {
		return a.Nickname + "/" + a.ID.Short()
	}
	return a.ID.Short()
}

// MetricsConfig is the local metrics server.
type MetricsConfig struct {
	// Listen is where /metrics and /status are served; "" disables them.
	// Absent: 127.0.0.1:9035.
	Listen *string `yaml:"listen"`
	// PProf also serves Go's profiler under /debug/pprof/ (for profiling a
	// relay under load; off by default).
	PProf bool `yaml:"pprof"`
}

// Defaults.
const (
	DefaultNickname            = "Unnamed"
	DefaultListen              = "0.0.0.0:9001"
	DefaultMetricsListen       = "127.0.0.1:9035"
	DefaultPublishInterval     = time.Hour
	DefaultOnionKeyRotation    = 7 * 24 * time.Hour
	DefaultShutdownTimeout     = 10 * time.Second
	DefaultAdvertisedBandwidth = 1 << 20
	DefaultResolverTimeout     = 5 * time.Second
	// DefaultMixBudgetCells is mixing.budget_cells: 16 MiB of cells, room
	// for about 400 MB/s through a 5 ms-mean class (cells spend ~40 ms in
	// the mix at full speed).
	DefaultMixBudgetCells     = 32768
	MinPublicOnionKeyRotation = 24 * time.Hour
	MinPublishInterval        = time.Second
	MaxPublishInterval        = 18 * time.Hour // descriptors expire after netdoc.DefaultDescriptorMaxAge
	minTimeout                = 10 * time.Millisecond
)

// DefaultExitPolicy is an exit's policy when the config gives none: like
// Tor's default, it accepts everything but ports commonly abused (mail,
// NetBIOS/SMB, file sharing).
var DefaultExitPolicy = []string{
	"reject *:25", "reject *:119", "reject *:135-139", "reject *:445", "reject *:563",
	"reject *:1214", "reject *:4661-4666", "reject *:6346-6429", "reject *:6699",
	"reject *:6881-6999", "accept *:*",
}

// Load reads, defaults and validates the config file at path.
func Load(path string) (*Config, error) {
	var c Config
	if err := config.Load(path, &c); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &c, nil
}

// Parse is Load for the bytes of a config file; name labels errors.
func Parse(b []byte, name string) (*Config, error) {
	var c Config
	if err := config.Decode(strings.NewReader(string(b)), name, &c); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", name, err)
	}
	return &c, nil
}

// setDefaults fills in every unset value.
func (c *Config) setDefaults() {
	if c.Nickname == "" {
		c.Nickname = DefaultNickname
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.PublishInterval == 0 {
		c.PublishInterval = DefaultPublishInterval
	}
	if c.OnionKeyRotation == 0 {
		c.OnionKeyRotation = DefaultOnionKeyRotation
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Metrics.Listen == nil {
		s := DefaultMetricsListen
		c.Metrics.Listen = &s
	}
	if c.Bandwidth.Advertised == 0 {
		c.Bandwidth.Advertised = DefaultAdvertisedBandwidth
		if c.Bandwidth.Rate > 0 {
			c.Bandwidth.Advertised = c.Bandwidth.Rate
		}
	}
	l := &c.Limits
	if l.MaxCircuits == 0 {
		l.MaxCircuits = 20000
	}
	if l.CreateRate == 0 {
		l.CreateRate = 20
	}
	if l.CreateBurst == 0 {
		l.CreateBurst = 100
	}
	if l.HandshakeTimeout == 0 {
		l.HandshakeTimeout = 10 * time.Second
	}
	if l.ExtendTimeout == 0 {
		l.ExtendTimeout = 15 * time.Second
	}
	k := &c.Link
	if k.HandshakeTimeout == 0 {
		k.HandshakeTimeout = link.DefaultHandshakeTimeout
	}
	if k.StreamWindow == 0 {
		k.StreamWindow = link.DefaultStreamWindow
	}
	if k.AcceptBacklog == 0 {
		k.AcceptBacklog = 256
	}
	m := &c.Mixing
	if m.Classes == nil {
		m.Classes = []ClassConfig{
			{Class: uint8(mix.ClassBalanced), Mean: mix.DefaultBalancedMean},
			{Class: uint8(mix.ClassHighLatency), Mean: mix.DefaultHighLatencyMean},
		}
	}
	if m.Resolution == 0 {
		m.Resolution = mix.DefaultResolution
	}
	if m.QueueCells == 0 {
		m.QueueCells = circuit.DefaultMixQueueCells
	}
	if m.MaxCells == 0 {
		m.MaxCells = circuit.DefaultMaxMixCells
	}
	if m.BudgetCells == 0 {
		m.BudgetCells = DefaultMixBudgetCells
	}
	e := &c.Exit
	if e.Policy == nil {
		e.Policy = DefaultExitPolicy
	}
	if e.ResolverTimeout == 0 {
		e.ResolverTimeout = DefaultResolverTimeout
	}
	if e.ConnectTimeout == 0 {
		e.ConnectTimeout = 15 * time.Second
	}
	if e.IdleTimeout == 0 {
		e.IdleTimeout = 5 * time.Minute
	}
	if e.MaxStreamsPerCircuit == 0 {
		e.MaxStreamsPerCircuit = 256
	}
	if e.MaxStreams == 0 {
		e.MaxStreams = 8192
	}
	if e.BufferMiB == 0 {
		e.BufferMiB = circuit.DefaultMaxBufferedBytes >> 20
	}
}

// Validate fills in defaults and checks every value; an error names the key
// and says how to fix it. Load calls it; call it after building a Config in
// code.
func (c *Config) Validate() error {
	c.setDefaults()
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(checkNickname(c.Nickname))
	if c.DataDir == "" {
		add(config.Errorf("data_dir", "required: set it to a directory only the relay's user can read, e.g. /var/lib/chive-relay (it is created 0700)"))
	}
	add(c.checkAddresses())
	c.family = c.family[:0]
	for i, s := range c.Family {
		id, err := layercrypt.ParseRelayID(s)
		if err != nil {
			add(config.Errorf(fmt.Sprintf("family[%d]", i), "%q is not a relay ID: copy the ID that `relaynode keygen` printed for that relay", s))
			continue
		}
		c.family = append(c.family, id)
	}
	if len(c.family) > netdoc.MaxFamily {
		add(config.Errorf("family", "lists %d relays; at most %d fit in a descriptor", len(c.family), netdoc.MaxFamily))
	}
	add(c.checkBandwidth())
	add(c.checkLimits())
	add(c.checkMixing())
	add(c.checkExit())
	c.authorities = c.authorities[:0]
	for i, a := range c.Authorities {
		key := fmt.Sprintf("authorities[%d]", i)
		id, err := layercrypt.ParseRelayID(a.ID)
		if err != nil {
			add(config.Errorf(key+".id", "%q is not an authority ID: copy it from the authority's own config or its operator", a.ID))
			continue
		}
		if _, _, err := net.SplitHostPort(a.Address); err != nil || a.Address == "" {
			add(config.Errorf(key+".address", "%q: write the authority's HTTP address as host:port, e.g. 192.0.2.10:7000", a.Address))
			continue
		}
		for _, prev := range c.authorities {
			if prev.ID == id {
				add(config.Errorf(key+".id", "authority %s is listed twice; remove one", id.Short()))
			}
		}
		c.authorities = append(c.authorities, Authority{ID: id, Addr: a.Address, Nickname: a.Nickname})
	}
	if c.PublishInterval < MinPublishInterval || c.PublishInterval > MaxPublishInterval {
		add(config.Errorf("publish_interval", "%v is out of range: use between %v and %v (default %v; a testnet uses e.g. 5s)",
			c.PublishInterval, MinPublishInterval, MaxPublishInterval, DefaultPublishInterval))
	}
	switch {
	case c.OnionKeyRotation < time.Second:
		add(config.Errorf("onion_key_rotation", "%v is too short: use a duration such as 168h (the default)", c.OnionKeyRotation))
	case c.OnionKeyRotation < MinPublicOnionKeyRotation && !c.Testnet:
		add(config.Errorf("onion_key_rotation", "%v is too short for a public relay: clients holding a consensus a few hours old would use an erased key; use at least %v, or set testnet: true",
			c.OnionKeyRotation, MinPublicOnionKeyRotation))
	}
	if c.ShutdownTimeout < 0 {
		add(config.Errorf("shutdown_timeout", "must not be negative; e.g. 10s"))
	}
	if *c.Metrics.Listen != "" {
		if _, _, err := net.SplitHostPort(*c.Metrics.Listen); err != nil {
			add(config.Errorf("metrics.listen", "%q: write host:port, e.g. %s, or \"\" to disable metrics", *c.Metrics.Listen, DefaultMetricsListen))
		}
	}
	switch c.Log.Level {
	case "", "debug", "info", "warn", "error":
	default:
		add(config.Errorf("log.level", "%q: use debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "", "console", "json":
	default:
		add(config.Errorf("log.format", "%q: use console or json", c.Log.Format))
	}
	return errors.Join(errs...)
}

func checkNickname(n string) error {
	ok := len(n) >= 1 && len(n) <= netdoc.MaxNicknameLen
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			ok = false
		}
	}
	if !ok {
		return config.Errorf("nickname", "%q: use 1 to %d ASCII letters and digits", n, netdoc.MaxNicknameLen)
	}
	return nil
}

// checkAddresses checks listen and address and derives the advertised
// address when it can.
func (c *Config) checkAddresses() error {
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return config.Errorf("listen", "%q: write host:port, e.g. %s", c.Listen, DefaultListen)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return config.Errorf("listen", "port %q is not a number from 0 to 65535", port)
	}
	c.listenAddrIP = netip.Addr{}
	if host != "" {
		if ip, err := netip.ParseAddr(host); err == nil {
			c.listenAddrIP = ip.Unmap()
		}
	}
	if c.Address == "" {
		ip := c.listenAddrIP
		if !ip.IsValid() || ip.IsUnspecified() || !ip.Is4() {
			return config.Errorf("address", "required when listen (%q) names no specific IPv4 address: set the public IPv4 address:port clients reach, e.g. 203.0.113.5:9001", c.Listen)
		}
		// Port 0 (an ephemeral port, in tests) is filled in once listening.
		p, _ := strconv.ParseUint(port, 10, 16)
		c.address = netip.AddrPortFrom(ip, uint16(p))
	} else {
		ap, err := netip.ParseAddrPort(c.Address)
		if err != nil || !ap.Addr().Unmap().Is4() || ap.Port() == 0 {
			return config.Errorf("address", "%q: write the public IPv4 address and port clients reach, e.g. 203.0.113.5:9001 (no host names)", c.Address)
		}
		c.address = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	if !c.Testnet && exitpolicy.IsPrivate(c.address.Addr()) {
		key := "address"
		if c.Address == "" {
			key = "listen"
		}
		return config.Errorf(key, "%v is not a public address, so clients elsewhere cannot reach the relay: advertise the public address, or set testnet: true for a local network", c.address.Addr())
	}
	return nil
}

func (c *Config) checkBandwidth() error {
	b := c.Bandwidth
	switch {
	case uint64(b.Advertised) > netdoc.MaxBandwidth:
		return config.Errorf("bandwidth.advertised", "%v is more than a descriptor can carry", b.Advertised)
	case b.Rate > 0 && b.Advertised > b.Rate:
		return config.Errorf("bandwidth.advertised", "%v is more than bandwidth.rate (%v): advertise at most what the relay allows itself", b.Advertised, b.Rate)
	case b.Rate > 0 && b.Rate < 2*cellBatch:
		return config.Errorf("bandwidth.rate", "%v is too low to forward cells: use at least %v, or 0 for unlimited", b.Rate, ByteSize(2*cellBatch))
	case b.Rate > 1<<40 || b.Burst > 1<<40:
		return config.Errorf("bandwidth.rate", "too large; use 0 for unlimited")
	case b.Burst > 0 && b.Rate == 0:
		return config.Errorf("bandwidth.burst", "has no effect without bandwidth.rate: set a rate or remove the burst")
	case b.Burst > 0 && b.Burst < b.Rate:
		return config.Errorf("bandwidth.burst", "%v is below bandwidth.rate (%v): set it at least as large (or leave it out: it defaults to the rate)", b.Burst, b.Rate)
	}
	return nil
}

// cellBatch is the most bytes the circuit layer asks the bandwidth bucket for
// at once (a batch of cells); smaller rates could never be served.
const cellBatch = 16 << 10

func (c *Config) checkLimits() error {
	l, k := c.Limits, c.Link
	switch {
	case l.MaxCircuits < 1:
		return config.Errorf("limits.max_circuits", "%d: must be at least 1 (default 20000)", l.MaxCircuits)
	case l.CreateRate <= 0:
		return config.Errorf("limits.create_rate", "%v: must be positive (circuits per second per client address; default 20)", l.CreateRate)
	case l.CreateBurst < 1:
		return config.Errorf("limits.create_burst", "%d: must be at least 1 (default 100)", l.CreateBurst)
	case l.HandshakeTimeout < minTimeout:
		return config.Errorf("limits.handshake_timeout", "%v is too short: use a duration with a unit, e.g. 10s", l.HandshakeTimeout)
	case l.ExtendTimeout < minTimeout:
		return config.Errorf("limits.extend_timeout", "%v is too short: use a duration with a unit, e.g. 15s", l.ExtendTimeout)
	case k.HandshakeTimeout < minTimeout:
		return config.Errorf("link.handshake_timeout", "%v is too short: use a duration with a unit, e.g. 10s", k.HandshakeTimeout)
	case k.StreamWindow < link.DefaultStreamWindow || k.StreamWindow > 16<<20:
		return config.Errorf("link.stream_window", "%v is out of range: yamux needs at least 256KiB; more than 16MiB lets one circuit hold too much memory", k.StreamWindow)
	case k.AcceptBacklog < 1:
		return config.Errorf("link.accept_backlog", "%d: must be at least 1 (default 256)", k.AcceptBacklog)
	}
	return nil
}

func (c *Config) checkMixing() error {
	m := c.Mixing
	if m.Resolution < 0 || m.Resolution > time.Second {
		return config.Errorf("mixing.resolution", "%v is out of range: use 0 to 1s (default %v)", m.Resolution, mix.DefaultResolution)
	}
	if m.QueueCells < 1 || m.QueueCells > 1<<16 {
		return config.Errorf("mixing.queue_cells", "%d is out of range: use 1 to 65536 (default %d)", m.QueueCells, circuit.DefaultMixQueueCells)
	}
	if m.MaxCells < m.QueueCells {
		return config.Errorf("mixing.max_cells", "%d is below mixing.queue_cells (%d): the relay could not hold even one full queue; the default is %d", m.MaxCells, m.QueueCells, circuit.DefaultMaxMixCells)
	}
	if m.BudgetCells < mix.FairShareDivisor || m.BudgetCells > m.MaxCells {
		return config.Errorf("mixing.budget_cells", "%d is out of range: use %d to mixing.max_cells (%d); the default is %d",
			m.BudgetCells, mix.FairShareDivisor, m.MaxCells, DefaultMixBudgetCells)
	}
	if len(m.Classes)+1 > netdoc.MaxDelayClasses {
		return config.Errorf("mixing.classes", "%d classes; a descriptor lists at most %d", len(m.Classes)+1, netdoc.MaxDelayClasses)
	}
	c.classes = make(map[mix.Class]mix.ClassSpec, len(m.Classes))
	for i, cc := range m.Classes {
		key := fmt.Sprintf("mixing.classes[%d]", i)
		if cc.Class == 0 {
			return config.Errorf(key+".class", "class 0 (no added delay) is always served; remove it from the list")
		}
		if _, dup := c.classes[mix.Class(cc.Class)]; dup {
			return config.Errorf(key+".class", "class %d is listed twice; remove one", cc.Class)
		}
		if cc.Mean <= 0 {
			return config.Errorf(key+".mean", "%v: a delay class needs a positive mean with a unit, e.g. 5ms", cc.Mean)
		}
		spec := mix.ClassSpec{Class: mix.Class(cc.Class), Mean: cc.Mean, Cap: cc.Cap}.WithDefaults()
		if err := spec.Validate(); err != nil {
			return config.Errorf(key, "%v: the mean must be at most %v and the cap between the mean and %v", err, mix.MaxMean, mix.MaxCap)
		}
		c.classes[spec.Class] = spec
	}
	return nil
}

func (c *Config) checkExit() error {
	e := c.Exit
	pol, err := exitpolicy.Parse(strings.Join(e.Policy, "\n"))
	if err != nil {
		for i, r := range e.Policy {
			if _, rerr := exitpolicy.ParseRule(strings.TrimSpace(r)); rerr != nil {
				return config.Errorf(fmt.Sprintf("exit.policy[%d]", i), "%v; write rules like \"accept *:443\", \"reject 10.0.0.0/8:*\", \"accept *:1000-2000\"", rerr)
			}
		}
		return config.Errorf("exit.policy", "%v; write one rule per list item, e.g. \"accept *:443\"", err)
	}
	c.exitPolicy = pol
	for i, s := range e.Resolvers {
		if _, err := netip.ParseAddr(s); err == nil {
			continue
		}
		if _, err := netip.ParseAddrPort(s); err == nil {
			continue
		}
		return config.Errorf(fmt.Sprintf("exit.resolvers[%d]", i), "%q: write an IP address or IP:port (e.g. 192.0.2.53 or 192.0.2.53:53); names would need a resolver themselves", s)
	}
	switch {
	case e.ResolverTimeout < minTimeout:
		return config.Errorf("exit.resolver_timeout", "%v is too short: use a duration with a unit, e.g. 5s", e.ResolverTimeout)
	case e.ConnectTimeout < minTimeout:
		return config.Errorf("exit.connect_timeout", "%v is too short: use a duration with a unit, e.g. 15s", e.ConnectTimeout)
	case e.IdleTimeout < minTimeout:
		return config.Errorf("exit.idle_timeout", "%v is too short: use a duration with a unit, e.g. 5m", e.IdleTimeout)
	case e.MaxStreamsPerCircuit < 1:
		return config.Errorf("exit.max_streams_per_circuit", "%d: must be at least 1 (default 256)", e.MaxStreamsPerCircuit)
	case e.MaxStreams < 1:
		return config.Errorf("exit.max_streams", "%d: must be at least 1 (default 8192)", e.MaxStreams)
	case e.BufferMiB < 64:
		return config.Errorf("exit.buffer_mib", "%d: must be at least 64 (default %d), as one stream of a delayed class may hold 64 MiB", e.BufferMiB, circuit.DefaultMaxBufferedBytes>>20)
	}
	if e.AllowPrivateDestinations && !c.Testnet {
		return config.Errorf("exit.allow_private_destinations", "lets clients reach this host's private network; it is only allowed together with testnet: true")
	}
	return nil
}

// ByteSize is a number of bytes (or bytes per second), written in YAML as a
// plain number or with a unit: B, KB, KiB, MB, MiB, GB, GiB.
type ByteSize uint64

var byteUnits = []struct {
	suffix string
	mult   uint64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"B", 1},
}

// ParseByteSize parses "10MiB", "500 KB", "1048576".
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	mult := uint64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			mult = u.mult
			s = strings.TrimSpace(strings.TrimSuffix(s, u.suffix))
			break
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || (n > 0 && mult > (1<<62)/n) {
		return 0, errors.New("not a byte size")
	}
	return ByteSize(n * mult), nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: expected a byte size such as 10MiB", n.Line)
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a byte size: write a whole number with an optional unit (B, KB, KiB, MB, MiB, GB, GiB), e.g. 10MiB", n.Line, n.Value)
	}
	*b = v
	return nil
}

// String writes the size with the largest binary unit that divides it.
func (b ByteSize) String() string {
	for _, u := range []struct {
		s string
		m uint64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && uint64(b)%u.m == 0 {
			return fmt.Sprintf("%d%s", uint64(b)/u.m, u.s)
		}
	}
	return fmt.Sprintf("%dB", uint64(b))
}

// sortedClasses returns the delay classes served (0 included), ascending.
func (c *Config) sortedClasses() []uint8 {
	out := []uint8{0}
	for cl := range c.classes {
		out = append(out, uint8(cl))
	}
	slices.Sort(out)
	return out
}
