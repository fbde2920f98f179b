package relay

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSampleConfigs loads every relaynode sample in configs/.
func TestSampleConfigs(t *testing.T) {
	paths, err := filepath.Glob("../configs/relaynode*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 2 {
		t.Fatalf("found %d relaynode samples in configs/, want at least 2", len(paths))
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			c, err := Load(p)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if c.DataDir == "" || !c.address.IsValid() || len(c.authorities) == 0 {
				t.Errorf("sample lacks data_dir, address or authorities: %+v", c)
			}
			if strings.Contains(p, "exit") != c.Exit.Enabled {
				t.Errorf("exit.enabled = %v for %s", c.Exit.Enabled, p)
			}
		})
	}
}

const minimal = "data_dir: /tmp/x\naddress: 203.0.113.5:9001\n"

func TestConfigDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal), "min.yaml")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"nickname", c.Nickname, "Unnamed"},
		{"listen", c.Listen, "0.0.0.0:9001"},
		{"metrics.listen", *c.Metrics.Listen, "127.0.0.1:9035"},
		{"publish_interval", c.PublishInterval, time.Hour},
		{"onion_key_rotation", c.OnionKeyRotation, 168 * time.Hour},
		{"bandwidth.advertised", c.Bandwidth.Advertised, ByteSize(1 << 20)},
		{"limits.max_circuits", c.Limits.MaxCircuits, 20000},
		{"link.stream_window", c.Link.StreamWindow, ByteSize(256 << 10)},
		{"classes", c.sortedClasses(), []uint8{0, 1, 2}},
		{"class 1 mean", c.classes[1].Mean, 5 * time.Millisecond},
		{"class 2 mean", c.classes[2].Mean, 250 * time.Millisecond},
		{"class 2 cap", c.classes[2].Cap, 2500 * time.Millisecond},
		{"exit.enabled", c.Exit.Enabled, false},
		{"exit.buffer_mib", c.Exit.BufferMiB, 256},
		{"exit policy default", c.exitPolicy.String(), strings.Join(DefaultExitPolicy, ", ")},
		{"testnet", c.Testnet, false},
	}
	for _, ch := range checks {
		if !equalAny(ch.got, ch.want) {
			t.Errorf("%s: got %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func equalAny(a, b any) bool {
	if as, ok := a.([]uint8); ok {
		bs := b.([]uint8)
		return string(as) == string(bs)
	}
	return a == b
}

func TestConfigOverrides(t *testing.T) {
	in := minimal + `
metrics:
  listen: ""
mixing:
  classes: []
bandwidth:
  rate: 2MiB
`
	c, err := Parse([]byte(in), "o.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if *c.Metrics.Listen != "" {
		t.Errorf("metrics.listen = %q, want disabled", *c.Metrics.Listen)
	}
	if got := c.sortedClasses(); len(got) != 1 || got[0] != 0 {
		t.Errorf("classes = %v, want [0] only", got)
	}
	if c.Bandwidth.Advertised != 2<<20 {
		t.Errorf("advertised = %v, want the rate 2MiB", c.Bandwidth.Advertised)
	}
	// Derived address from a specific listen address in a testnet.
	c, err = Parse([]byte("data_dir: /tmp/x\nlisten: 127.0.0.1:7001\ntestnet: true\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.address.String() != "127.0.0.1:7001" {
		t.Errorf("derived address %v, want 127.0.0.1:7001", c.address)
	}
}

// TestConfigErrors: each bad value gives an error naming its key (or line)
// and saying what to write instead.
func TestConfigErrors(t *testing.T) {
	const id = "f2AuG3/xyujANx28vGHPF9pLMSUieg2hy/98rtIKEqQ"
	cases := []struct {
		name, in string
		want     []string
	}{
		{"unknown key", minimal + "nicknmae: x\n", []string{"line 3", `unknown key "nicknmae"`}},
		{"unknown nested key", minimal + "exit:\n  enabeld: true\n", []string{"line 4", `unknown key "enabeld"`}},
		{"no data_dir", "address: 203.0.113.5:9001\n", []string{`"data_dir"`, "required"}},
		{"bad nickname", minimal + "nickname: my-relay\n", []string{`"nickname"`, "letters and digits"}},
		{"long nickname", minimal + "nickname: abcdefghijklmnopqrstu\n", []string{`"nickname"`, "1 to 19"}},
		{"no address", "data_dir: /tmp/x\n", []string{`"address"`, "public IPv4 address:port"}},
		{"address name", "data_dir: /tmp/x\naddress: relay.example.com:9001\n", []string{`"address"`, "no host names"}},
		{"address v6", "data_dir: /tmp/x\naddress: '[2001:db8::1]:9001'\n", []string{`"address"`, "IPv4"}},
		{"private address", "data_dir: /tmp/x\naddress: 10.1.2.3:9001\n", []string{`"address"`, "testnet: true"}},
		{"bad listen", minimal + "listen: 9001\n", []string{`"listen"`, "host:port"}},
		{"bad family", minimal + "family: [nope]\n", []string{`"family[0]"`, "relaynode keygen"}},
		{"bad size", minimal + "bandwidth:\n  rate: 10 furlongs\n", []string{"line 4", "byte size", "10MiB"}},
		{"advertised above rate", minimal + "bandwidth:\n  rate: 1MiB\n  advertised: 2MiB\n", []string{`"bandwidth.advertised"`, "at most"}},
		{"burst without rate", minimal + "bandwidth:\n  burst: 1MiB\n", []string{`"bandwidth.burst"`}},
		{"rate too low", minimal + "bandwidth:\n  rate: 100\n", []string{`"bandwidth.rate"`, "at least"}},
		{"duration without unit", minimal + "limits:\n  handshake_timeout: 10\n", []string{"line 4", "time.Duration"}},
		{"zero circuits", minimal + "limits:\n  max_circuits: -1\n", []string{`"limits.max_circuits"`}},
		{"small window", minimal + "link:\n  stream_window: 64KiB\n", []string{`"link.stream_window"`, "256KiB"}},
		{"class 0 listed", minimal + "mixing:\n  classes:\n    - {class: 0, mean: 1ms}\n", []string{`"mixing.classes[0].class"`, "always served"}},
		{"class without mean", minimal + "mixing:\n  classes:\n    - {class: 3}\n", []string{`"mixing.classes[0].mean"`, "5ms"}},
		{"class mean too large", minimal + "mixing:\n  classes:\n    - {class: 3, mean: 1m}\n", []string{`"mixing.classes[0]"`, "at most"}},
		{"class twice", minimal + "mixing:\n  classes:\n    - {class: 1, mean: 1ms}\n    - {class: 1, mean: 2ms}\n", []string{`"mixing.classes[1].class"`, "twice"}},
		{"bad policy rule", minimal + "exit:\n  policy: [\"accept *:80\", \"allow *:443\"]\n", []string{`"exit.policy[1]"`, "accept *:443"}},
		{"non-canonical rule", minimal + "exit:\n  policy: [\"accept 10.1.2.3/8:*\"]\n", []string{`"exit.policy[0]"`}},
		{"resolver name", minimal + "exit:\n  resolvers: [dns.example.com]\n", []string{`"exit.resolvers[0]"`, "IP:port"}},
		{"private dests without testnet", minimal + "exit:\n  allow_private_destinations: true\n", []string{`"exit.allow_private_destinations"`, "testnet: true"}},
		{"exit buffer too small", minimal + "exit:\n  buffer_mib: 8\n", []string{`"exit.buffer_mib"`, "at least 64"}},
		{"bad authority id", minimal + "authorities:\n  - {id: xyz, address: 192.0.2.1:7000}\n", []string{`"authorities[0].id"`}},
		{"bad authority address", minimal + "authorities:\n  - {id: " + id + ", address: 192.0.2.1}\n", []string{`"authorities[0].address"`, "host:port"}},
		{"authority twice", minimal + "authorities:\n  - {id: " + id + ", address: 192.0.2.1:7000}\n  - {id: " + id + ", address: 192.0.2.2:7000}\n", []string{`"authorities[1].id"`, "twice"}},
		{"short rotation", minimal + "onion_key_rotation: 1h\n", []string{`"onion_key_rotation"`, "testnet: true"}},
		{"publish interval", minimal + "publish_interval: 48h\n", []string{`"publish_interval"`, "between"}},
		{"bad metrics listen", minimal + "metrics:\n  listen: localhost\n", []string{`"metrics.listen"`, "disable"}},
		{"bad log level", minimal + "log:\n  level: loud\n", []string{`"log.level"`, "debug, info"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in), "bad.yaml")
			if err == nil {
				t.Fatalf("Parse accepted:\n%s", tc.in)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestConfigShortRotationInTestnet(t *testing.T) {
	c, err := Parse([]byte("data_dir: /tmp/x\nlisten: 127.0.0.1:0\ntestnet: true\nonion_key_rotation: 2s\npublish_interval: 1s\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.OnionKeyRotation != 2*time.Second {
		t.Errorf("rotation %v", c.OnionKeyRotation)
	}
}

func TestByteSize(t *testing.T) {
	cases := []struct {
		in   string
		want ByteSize
		ok   bool
	}{
		{"1048576", 1 << 20, true}, {"10MiB", 10 << 20, true}, {"500 KB", 500000, true},
		{"1GiB", 1 << 30, true}, {"7B", 7, true}, {"1.5MiB", 0, false}, {"-1", 0, false},
		{"MiB", 0, false}, {"99999999999GiB", 0, false},
	}
	for _, tc := range cases {
		got, err := ParseByteSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseByteSize(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	if s := ByteSize(256 << 10).String(); s != "256KiB" {
		t.Errorf("String = %q", s)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing file: %v", err)
	}
}
